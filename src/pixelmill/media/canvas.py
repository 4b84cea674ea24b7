"""Canvases and masks for the operations that repaint part of a picture.

Zoom out and pan are inpainting on a bigger canvas: the source is placed on it, and the mask
(white = paint here) covers only the new area, so the engine fills the surroundings and every
source pixel stays where it was put. Inpaint masks come from the caller: white = repaint, or a
transparent area = repaint.
"""

from __future__ import annotations

from typing import cast

import numpy as np
from PIL import Image

#: Pan extends the canvas by this share of the side it extends.
PAN_SHARE = 0.5
DIRECTIONS = ("left", "right", "up", "down")


def _step8(x: float) -> int:
    """A length in whole multiples of 8 (what image models need), at least 8."""
    return max(8, round(x / 8) * 8)


def zoom_canvas(source: Image.Image, zoom: float) -> tuple[Image.Image, Image.Image]:
    """The frame stays the source's size; the source shrinks to 1/zoom in the centre.
    Returns (canvas, mask)."""
    w, h = source.size
    inner_w, inner_h = max(8, round(w / zoom)), max(8, round(h / zoom))
    x, y = (w - inner_w) // 2, (h - inner_h) // 2
    canvas = Image.new("RGB", (w, h), _edge_colour(source))
    canvas.paste(source.resize((inner_w, inner_h), Image.Resampling.LANCZOS), (x, y))
    mask = Image.new("L", (w, h), 255)
    mask.paste(0, (x, y, x + inner_w, y + inner_h))
    return canvas, mask


def pan_size(width: int, height: int, direction: str) -> tuple[int, int]:
    if direction in ("left", "right"):
        return width + _step8(width * PAN_SHARE), height
    return width, height + _step8(height * PAN_SHARE)


def pan_offset(width: int, height: int, direction: str) -> tuple[int, int]:
    """Where the source's top-left corner lands on the panned canvas."""
    new_w, new_h = pan_size(width, height, direction)
    return {"left": (new_w - width, 0), "right": (0, 0), "up": (0, new_h - height), "down": (0, 0)}[direction]


def pan_canvas(source: Image.Image, direction: str) -> tuple[Image.Image, Image.Image]:
    """The source, unscaled, at its offset on a canvas extended in ``direction``."""
    w, h = source.size
    size = pan_size(w, h, direction)
    x, y = pan_offset(w, h, direction)
    canvas = Image.new("RGB", size, _edge_colour(source))
    canvas.paste(source, (x, y))
    mask = Image.new("L", size, 255)
    mask.paste(0, (x, y, x + w, y + h))
    return canvas, mask


def paint_mask(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A caller's mask as pure black/white "L" at ``size`` (255 = repaint). A mask with
    transparent pixels is a cut-out: its transparent area is repainted. Otherwise bright pixels
    (white) are repainted and dark ones kept."""
    if mask.mode in ("RGBA", "LA", "PA") or (mask.mode == "P" and "transparency" in mask.info):
        alpha = mask.convert("RGBA").getchannel("A")
        # One band: Pillow gives (min, max), though its typing also allows the per-band tuples of a multi-band image.
        low, _ = cast("tuple[int, int]", alpha.getextrema())
        if low < 128:
            return alpha.resize(size, Image.Resampling.NEAREST).point(lambda v: 255 if v < 128 else 0)
    return mask.convert("L").resize(size, Image.Resampling.NEAREST).point(lambda v: 255 if v >= 128 else 0)


def composite(original: Image.Image, painted: Image.Image, mask: Image.Image) -> Image.Image:
    """``painted`` where the mask is white, ``original`` exactly everywhere else."""
    return Image.composite(painted.convert("RGB"), original.convert("RGB"), mask)


def _edge_colour(image: Image.Image) -> tuple[int, int, int]:
    """Mean colour of the picture's border: the neutral ground new area starts from."""
    a = np.asarray(image.convert("RGB"), dtype=np.float32)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    r, g, b = border.mean(axis=0)
    return int(r), int(g), int(b)
