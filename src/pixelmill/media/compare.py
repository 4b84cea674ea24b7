"""A perceptual difference between two pictures: 1 − SSIM of their luminance at a fixed size.

0 means the same picture, values near 1 unrelated ones; changes of colour cast, framing or
detail all show, while encoding noise hardly does. Both pictures are brought to the same size
(256 px wide, the first one's aspect) and the same colour handling first, so the score only
depends on the pixels: it is reproducible to the last digit on any machine."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

WIDTH = 256
_WINDOW = 7
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def _luma(image: Image.Image, size: tuple[int, int]) -> npt.NDArray[np.float64]:
    return np.asarray(image.convert("RGB").resize(size, Image.Resampling.LANCZOS).convert("L"), dtype=np.float64)


def _box(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Mean over every 7×7 window (valid positions only), by summed-area table."""
    s = np.cumsum(np.cumsum(np.pad(a, ((1, 0), (1, 0))), axis=0), axis=1)
    w = _WINDOW
    return (s[w:, w:] - s[:-w, w:] - s[w:, :-w] + s[:-w, :-w]) / (w * w)


def ssim(a: Image.Image, b: Image.Image) -> float:
    height = max(_WINDOW, round(WIDTH * a.height / a.width))
    x, y = _luma(a, (WIDTH, height)), _luma(b, (WIDTH, height))
    mx, my = _box(x), _box(y)
    vx, vy, cov = _box(x * x) - mx * mx, _box(y * y) - my * my, _box(x * y) - mx * my
    score = ((2 * mx * my + _C1) * (2 * cov + _C2)) / ((mx * mx + my * my + _C1) * (vx + vy + _C2))
    return float(score.mean())


def difference(a: Image.Image, b: Image.Image) -> float:
    """1 − SSIM, rounded to 4 places, clamped to 0..1."""
    return round(min(1.0, max(0.0, 1.0 - ssim(a, b))), 4)
