"""The operations a task can perform, and the lane each one runs in by default."""

from __future__ import annotations

from enum import Enum


class Action(str, Enum):
    IMAGINE = "IMAGINE"
    UPSCALE = "UPSCALE"

    @property
    def makes_grid(self) -> bool:
        """Whether a successful task of this action yields a 2×2 grid and four images."""
        return self is Action.IMAGINE


class Lane(str, Enum):
    INTERACTIVE = "interactive"
    BATCH = "batch"
