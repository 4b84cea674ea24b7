"""The 2×2 grid of an imagine-style result, and picking one image back out of it."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image


def compose_grid(images: Sequence[Image.Image]) -> Image.Image:
    """Place four equal-size images as a 2×2 grid: 1 top-left, 2 top-right, 3 and 4 below."""
    if len(images) != 4:
        raise ValueError(f"a grid needs 4 images, got {len(images)}")
    w, h = images[0].size
    if any(im.size != (w, h) for im in images):
        raise ValueError("grid images must share one size")
    grid = Image.new("RGB", (2 * w, 2 * h))
    for i, im in enumerate(images):
        grid.paste(im, ((i % 2) * w, (i // 2) * h))
    return grid


def crop_quadrant(grid: Image.Image, index: int) -> Image.Image:
    """Image ``index`` (1-4) of a grid made by ``compose_grid``."""
    if not 1 <= index <= 4:
        raise ValueError("index must be 1-4")
    w, h = grid.width // 2, grid.height // 2
    x, y = ((index - 1) % 2) * w, ((index - 1) // 2) * h
    return grid.crop((x, y, x + w, y + h))
