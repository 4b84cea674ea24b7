"""The image detector interface: what screening needs from a model, and what a model finds.

A detector returns labelled regions with scores; ``safety/screening.py`` turns them into verdicts
with per-tenant rules. The one implementation is NudeNet's model (``safety/nudenet.py``); tests
may pass any object with these two methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image


@dataclass(frozen=True)
class Finding:
    label: str
    score: float
    #: x, y, width, height in the picture's pixels.
    box: tuple[int, int, int, int] = (0, 0, 0, 0)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "score": round(self.score, 3), "box": list(self.box)}


class Detector(Protocol):
    name: str

    def load(self) -> None:
        """Load the model now (readiness, worker start); ``detect`` loads it when needed anyway."""

    def detect(self, images: Sequence[Image.Image]) -> list[list[Finding]]:
        """The findings of each image, in one batched model call where the model allows."""
