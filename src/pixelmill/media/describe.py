"""Describe a picture in prompt words from what can be measured in its pixels: colour, light and
composition. It is what the procedural engine answers a describe task with (a real captioning
model can replace it per engine); the four suggestions stress different aspects, like
Midjourney's, and end with the picture's aspect ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

#: Named hues, degrees: the nearest one names a colour.
_HUES = (
    (0, "red"), (25, "orange"), (45, "golden"), (58, "yellow"), (95, "lime green"), (130, "green"),
    (165, "teal"), (190, "cyan"), (215, "blue"), (245, "indigo"), (275, "violet"), (305, "magenta"),
    (335, "pink"), (360, "red"),
)
#: Analysis runs on a small copy: the words do not change with resolution.
_EDGE = 96


@dataclass(frozen=True)
class Reading:
    """What the pixels say, in numbers and words."""

    brightness: float  # 0..1 mean luma
    contrast: float  # luma standard deviation
    saturation: float  # 0..1 mean
    warmth: float  # -1 cold .. +1 warm
    colours: tuple[str, ...]  # dominant colour names, strongest first
    horizon: float | None  # 0 top .. 1 bottom, where the strongest horizontal edge is
    focus: tuple[float, float]  # where the brightest region sits, (x, y) in 0..1
    ratio: str  # "16:9"


def read_image(image: Image.Image) -> Reading:
    small = image.convert("RGB")
    small.thumbnail((_EDGE, _EDGE), Image.Resampling.BILINEAR)
    rgb = np.asarray(small, dtype=np.float32) / 255
    luma = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    hsv = np.asarray(small.convert("HSV"), dtype=np.float32) / 255
    sat = hsv[..., 1]
    # Dominant colours: hue histogram of the saturated pixels, weighted by saturation.
    colourful = sat > 0.18
    names: list[str] = []
    if colourful.mean() > 0.02:
        hist, _ = np.histogram(hsv[..., 0][colourful] * 360, bins=36, range=(0, 360), weights=sat[colourful])
        for b in np.argsort(hist)[::-1][:6]:
            if hist[b] < hist.max() * 0.2:
                break
            name = _hue_name(b * 10 + 5)
            if name not in names:
                names.append(name)
    if not names or colourful.mean() < 0.25:
        names.append("black and white" if sat.mean() < 0.06 else "muted grey")
    # The horizon: the row where brightness changes most between the rows above and below.
    rows = luma.mean(axis=1)
    grad = np.abs(np.convolve(np.diff(rows), np.ones(3) / 3, mode="same"))
    edge = int(np.argmax(grad[2:-2])) + 2 if len(grad) > 6 else None
    horizon = (edge + 1) / len(rows) if edge is not None and grad[edge] > 0.01 else None
    bright = luma >= np.quantile(luma, 0.95)
    ys, xs = np.nonzero(bright)
    focus = (float(xs.mean() / luma.shape[1]), float(ys.mean() / luma.shape[0])) if len(xs) else (0.5, 0.5)
    r, b = float(rgb[..., 0].mean()), float(rgb[..., 2].mean())
    g = math.gcd(image.width, image.height)
    return Reading(
        brightness=float(luma.mean()),
        contrast=float(luma.std()),
        saturation=float(sat.mean()),
        warmth=max(-1.0, min(1.0, (r - b) * 4)),
        colours=tuple(names[:3]),
        horizon=horizon,
        focus=focus,
        ratio=_ratio(image.width // g, image.height // g),
    )


def _hue_name(degrees: float) -> str:
    return min(_HUES, key=lambda h: abs(h[0] - degrees))[1]


def _ratio(w: int, h: int) -> str:
    """A familiar ratio when the picture is close to one (680×384 is 16:9, not 85:48)."""
    for a, b in ((1, 1), (16, 9), (9, 16), (3, 2), (2, 3), (4, 3), (3, 4), (21, 9), (4, 5), (5, 4), (2, 1), (1, 2)):
        if abs(w / h - a / b) < 0.03:
            return f"{a}:{b}"
    return f"{w}:{h}"


def _light(r: Reading) -> str:
    if r.brightness < 0.18:
        return "night scene, deep shadows"
    if r.brightness < 0.35:
        return "low light, moody atmosphere"
    if r.warmth > 0.35:
        return "warm golden-hour light"
    if r.warmth < -0.35:
        return "cool blue daylight"
    return "soft natural daylight" if r.contrast < 0.2 else "bright daylight, crisp contrast"


def _composition(r: Reading) -> str:
    if r.horizon is None:
        layout = "an even, textured composition"
    elif r.horizon < 0.4:
        layout = "a high horizon with a wide foreground"
    elif r.horizon > 0.62:
        layout = "a low horizon under a big sky"
    else:
        layout = "a centred horizon, balanced halves"
    x, y = r.focus
    side = "left" if x < 0.38 else "right" if x > 0.62 else "centre"
    height = "upper" if y < 0.38 else "lower" if y > 0.62 else "middle"
    return f"{layout}, the brightest point in the {height} {side}"


def _palette(r: Reading) -> str:
    colours = " and ".join(r.colours[:2])
    mood = "vivid" if r.saturation > 0.45 else "pastel" if r.saturation < 0.2 else "rich"
    return f"{mood} {colours} palette"


def describe_image(image: Image.Image) -> tuple[str, ...]:
    """Four prompt suggestions, each ending with ``--ar`` of the picture."""
    r = read_image(image)
    ar = f"--ar {r.ratio}"
    subject = "landscape" if r.horizon is not None else "abstract study"
    return (
        f"a {subject} in a {_palette(r)}, {_light(r)}, {_composition(r)} {ar}",
        f"{_light(r)} over a {subject}, {', '.join(r.colours)} tones, cinematic, atmospheric {ar}",
        f"illustrated {subject}, {_composition(r)}, {_palette(r)}, flat shapes, layered depth {ar}",
        (f"{'high' if r.contrast > 0.22 else 'gentle'}-contrast {subject} photograph, {r.colours[0]} accents, "
         f"{'dramatic' if r.brightness < 0.35 else 'airy'} mood {ar}"),
    )

