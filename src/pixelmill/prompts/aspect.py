"""Aspect ratios and the pixel size they map to.

Rule: a W:H ratio is reduced (32:18 → 16:9) and keeps the pixel count of a ``base``-square
image: width = sqrt(base² · W/H), height = sqrt(base² · H/W), each rounded to a multiple of 8
(what image models need). 1:1 at base 512 → 512×512; 16:9 → 680×384; 2:3 → 416×624.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from pixelmill.exceptions import ValidationError

MAX_RATIO = 4.0
_RATIO_RE = re.compile(r"^\s*(\d{1,5})\s*:\s*(\d{1,5})\s*$")


@dataclass(frozen=True)
class AspectRatio:
    w: int
    h: int

    def __str__(self) -> str:
        return f"{self.w}:{self.h}"

    @classmethod
    def parse(cls, text: str, field: str = "aspect_ratio", label: str = "") -> AspectRatio:
        """``label`` names the flag (``--ar``) when the ratio came from a prompt."""
        needs = f"{label} needs" if label else "needs"
        m = _RATIO_RE.match(text)
        if not m:
            raise ValidationError(field, f"{needs} a ratio W:H like 16:9, got {text!r}")
        w, h = int(m.group(1)), int(m.group(2))
        if w == 0 or h == 0:
            raise ValidationError(field, f"{needs} both sides of the ratio above 0, got {text!r}")
        if max(w / h, h / w) > MAX_RATIO:
            must = f"{label} must" if label else "must"
            raise ValidationError(field, f"{must} be within 1:{MAX_RATIO:g} and {MAX_RATIO:g}:1, got {text!r}")
        g = math.gcd(w, h)
        return cls(w // g, h // g)

    def size(self, base: int) -> tuple[int, int]:
        area = base * base
        width = math.sqrt(area * self.w / self.h)
        height = math.sqrt(area * self.h / self.w)
        return _round8(width), _round8(height)


def _round8(x: float) -> int:
    return max(64, round(x / 8) * 8)


SQUARE = AspectRatio(1, 1)
