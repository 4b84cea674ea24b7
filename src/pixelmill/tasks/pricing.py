"""What each task costs, in quota units, by price key (``midjourney@<action>``)."""

from __future__ import annotations

from pixelmill.tasks.actions import Action

DEFAULT_PRICES: dict[str, int] = {
    "midjourney@imagine": 1,
    "midjourney@upscale": 1,
}


def price_key(action: Action) -> str:
    return f"midjourney@{action.value.lower()}"


def price_of(action: Action, prices: dict[str, int] = DEFAULT_PRICES) -> int:
    return prices[price_key(action)]
