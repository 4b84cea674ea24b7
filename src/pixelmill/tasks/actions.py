"""The operations a task can perform, what each one produces, and the lanes tasks run in."""

from __future__ import annotations

from enum import Enum


class Action(str, Enum):
    IMAGINE = "IMAGINE"
    UPSCALE = "UPSCALE"
    VARIATION = "VARIATION"
    REROLL = "REROLL"
    ZOOM = "ZOOM"
    PAN = "PAN"
    INPAINT = "INPAINT"
    BLEND = "BLEND"
    DESCRIBE = "DESCRIBE"
    SHORTEN = "SHORTEN"
    VIDEO = "VIDEO"

    @property
    def makes_grid(self) -> bool:
        """Whether a successful task of this action yields a 2×2 grid and four images."""
        return self in _GRID

    @property
    def makes_image(self) -> bool:
        """Whether its result holds images a follow-up operation can start from."""
        return self in _GRID or self is Action.UPSCALE


_GRID = frozenset({Action.IMAGINE, Action.VARIATION, Action.REROLL, Action.ZOOM, Action.PAN, Action.INPAINT, Action.BLEND})


class Lane(str, Enum):
    INTERACTIVE = "interactive"
    BATCH = "batch"
