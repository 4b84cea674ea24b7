"""Which price key a task bills under (``midjourney@<action>[-<variant>]``), and the default units
of each key. What a key actually costs in a deployment is the price table's (``billing/prices.py``)."""

from __future__ import annotations

from pixelmill.prompts.params import NIJI_VERSIONS
from pixelmill.tasks.actions import Action

DEFAULT_PRICES: dict[str, int] = {
    "midjourney@imagine": 1,
    "midjourney@upscale": 1,
    "midjourney@upscale-subtle": 1,
    "midjourney@upscale-creative": 1,
    **{f"midjourney@{a}": 1 for a in ("variation", "reroll", "zoom", "pan", "inpaint", "blend", "describe", "shorten")},
    # niji models are billed under their own keys (seed 004: midjourney@imagine-niji7).
    **{f"midjourney@imagine-niji{v}": 1 for v in NIJI_VERSIONS},
    # Video is billed per clip: batch_size × the key (seed 004).
    "midjourney@video": 1,
    "midjourney@video-720p": 2,
}


def price_key(action: Action, niji: str | None = None, variant: str | None = None) -> str:
    """``midjourney@imagine``, ``midjourney@imagine-niji7``, ``midjourney@video-720p``, ..."""
    key = f"midjourney@{action.value.lower()}"
    key = f"{key}-niji{niji}" if niji else key
    return f"{key}-{variant}" if variant else key
