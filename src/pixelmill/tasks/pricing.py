"""What each task costs, in quota units, by price key (``midjourney@<action>[-<variant>]``)."""

from __future__ import annotations

from pixelmill.prompts.params import NIJI_VERSIONS
from pixelmill.tasks.actions import Action

DEFAULT_PRICES: dict[str, int] = {
    "midjourney@imagine": 1,
    "midjourney@upscale": 1,
    # niji models are billed under their own keys (seed 004: midjourney@imagine-niji7).
    **{f"midjourney@imagine-niji{v}": 1 for v in NIJI_VERSIONS},
}


def price_key(action: Action, niji: str | None = None) -> str:
    key = f"midjourney@{action.value.lower()}"
    return f"{key}-niji{niji}" if niji else key


def price_of(key: str, prices: dict[str, int] = DEFAULT_PRICES) -> int:
    return prices[key]
