"""The allowed values of every prompt parameter: one table, read by the prompt parser (``--s 100``)
and by the request models (``"stylize": 100``), so a flag and its body field can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

MAX_PROMPT_CHARS = 4000
#: Leading image URLs (image prompts), and URLs after --sref / --cref.
MAX_IMAGE_PROMPTS = 5
MAX_URL_CHARS = 2048

#: Model versions ``--v`` accepts, and niji versions ``--niji`` accepts. A version outside these
#: is refused, never mapped silently to another one.
#: The Literal types are what request models and mypy read; the tuples, what the parser checks.
VersionName = Literal["1", "2", "3", "4", "5", "5.1", "5.2", "6", "6.1", "7", "8", "8.1"]
VERSIONS: tuple[VersionName, ...] = get_args(VersionName)
NIJI_VERSIONS = ("4", "5", "6", "7")
#: ``--niji`` without a number means the current niji model; the canonical prompt always spells
#: the number out, so the choice is visible on the task.
DEFAULT_NIJI = "7"
#: The largest seed (a 32-bit unsigned integer, what image models take).
MAX_SEED = 2**32 - 1
QUALITIES = (0.25, 0.5, 1.0, 2.0, 4.0)
STYLES = ("raw",)
#: Speed tiers (``--relax`` / ``--fast`` / ``--turbo``): they pick a price key and a lane, never pixels.
SpeedName = Literal["relax", "fast", "turbo"]
SPEEDS: tuple[SpeedName, ...] = get_args(SpeedName)


@dataclass(frozen=True)
class Range:
    lo: float
    hi: float
    integer: bool

    def describe(self) -> str:
        kind = "a whole number" if self.integer else "a number"
        return f"{kind} {fmt_number(self.lo)}-{fmt_number(self.hi)}"


#: Numeric parameters by body-field name.
RANGES: dict[str, Range] = {
    "stylize": Range(0, 1000, True),
    "chaos": Range(0, 100, True),
    "weird": Range(0, 3000, True),
    "seed": Range(0, MAX_SEED, True),
    "iw": Range(0, 3, False),
    "repeat": Range(2, 40, True),
    "stop": Range(10, 100, True),
    "sw": Range(0, 1000, True),
    "cw": Range(0, 100, True),
    # Custom zoom (the /modal call of a zoom task): how far to zoom out.
    "zoom": Range(1, 2, False),
}

#: ``::`` weights of a multi-prompt; their sum must be positive.
WEIGHT_RANGE = Range(-10, 10, False)


def fmt_number(x: float) -> str:
    """Shortest exact spelling: 2.0 → "2", 0.25 → "0.25", -0.0 → "0"."""
    x = x + 0.0
    text = repr(float(x))
    return text.removesuffix(".0")
