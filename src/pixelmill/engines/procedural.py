"""The procedural engine: deterministic illustrated landscapes, rendered on the CPU with NumPy.

It exists so that pixelmill runs anywhere with no model: for development, tests and demos. The
same (prompt, seed, size) always gives the same pixels. The prompt steers the picture the way a
reader would expect: colour and mood words set the palette ("red", "icy", "misty", "dark"), time
words set the light ("sunrise", "night"), and subject words choose the scene ("lake", "mountains",
"forest", "city", "desert", "snow"). The seed picks the composition: horizon, sun position, ridge
shapes, cloud cover.

Everything is vectorised: a 512² image is a few dozen whole-array operations (~10-20 ms).
"""

from __future__ import annotations

import colorsys
import hashlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from pixelmill.engines.base import (
    Engine,
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
    VideoRequest,
    VideoResult,
)
from pixelmill.media.video import encode_mp4

MODEL = "procedural-v1"

# --- prompt → scene ------------------------------------------------------------------------------

# Hue in degrees for colour words; the first one found in the prompt wins the accent.
_COLOUR_HUES: dict[str, float] = {
    "red": 0, "crimson": 350, "scarlet": 5, "ruby": 345, "orange": 28, "amber": 38, "autumn": 25,
    "golden": 45, "gold": 45, "yellow": 55, "lime": 85, "green": 120, "emerald": 140,
    "jade": 150, "forest": 120, "teal": 175, "turquoise": 172, "cyan": 185, "aqua": 182,
    "blue": 220, "azure": 210, "navy": 230, "sapphire": 225, "indigo": 250, "violet": 270,
    "purple": 280, "lavender": 265, "magenta": 305, "pink": 330, "rose": 340,
}
_WATER = {"lake", "sea", "ocean", "river", "water", "reflection", "reflections", "bay", "pond", "beach", "coast", "harbor"}
_MOUNTAINS = {"mountain", "mountains", "peak", "peaks", "alps", "cliff", "cliffs", "volcano", "canyon", "snow-capped"}
_TREES = {"forest", "trees", "tree", "woods", "pine", "pines", "jungle", "taiga"}
_CITY = {"city", "skyline", "buildings", "town", "cyberpunk", "downtown", "metropolis", "street", "neon"}
_DESERT = {"desert", "dunes", "dune", "sand", "sahara"}
_SNOW = {"snow", "snowy", "winter", "ice", "icy", "frozen", "glacier", "snow-capped"}
_NIGHT = {"night", "midnight", "moon", "moonlit", "stars", "starry", "galaxy", "nocturnal"}
_DAWN = {"sunrise", "dawn", "morning"}
_DUSK = {"sunset", "dusk", "twilight", "evening"}
_MIST = {"mist", "misty", "fog", "foggy", "haze", "hazy", "ethereal", "rising"}
_DARK = {"dark", "moody", "gloomy", "stormy", "storm", "noir", "ominous", "grim"}
_BRIGHT = {"bright", "vivid", "vibrant", "cheerful", "sunny", "neon", "colorful", "colourful"}
_SOFT = {"pastel", "soft", "gentle", "dreamy", "calm", "serene"}
_WARM = {"warm", "fire", "fiery", "hot", "golden", "sunlit"}
_COLD = {"cold", "icy", "cool", "frozen", "winter", "frost", "frosty"}
_CLOUDS = {"cloud", "clouds", "cloudy", "overcast", "storm", "stormy"}


@dataclass(frozen=True)
class Scene:
    """What the prompt asks for, independent of the seed."""

    hue: float  # accent hue, degrees
    time_of_day: str  # "day" | "dawn" | "dusk" | "night"
    water: bool
    mountains: bool
    trees: bool
    city: bool
    desert: bool
    snow: bool
    mist: float  # 0..1 atmospheric fade
    saturation: float  # multiplier
    brightness: float  # multiplier
    warmth: float  # -1 cold .. +1 warm
    clouds: float  # 0..1 cover bias
    key: int  # stable number of the prompt text: two prompts never share a composition

    @classmethod
    def from_prompt(cls, prompt: str) -> Scene:
        words = set(re.findall(r"[a-z][a-z-]*", prompt.lower()))
        digest = hashlib.sha256(prompt.strip().lower().encode()).digest()
        hue = next((_COLOUR_HUES[w] for w in re.findall(r"[a-z]+", prompt.lower()) if w in _COLOUR_HUES), None)
        if hue is None:  # no colour named: a stable hue of the prompt's own
            hue = digest[0] / 255 * 360
        if words & _NIGHT:
            tod = "night"
        elif words & _DAWN:
            tod = "dawn"
        elif words & _DUSK:
            tod = "dusk"
        else:
            tod = "day"
        warmth = 0.6 * bool(words & _WARM) - 0.6 * bool(words & _COLD)
        if tod in ("dawn", "dusk"):
            warmth += 0.3
        dark, bright, soft = bool(words & _DARK), bool(words & _BRIGHT), bool(words & _SOFT)
        scenic = words & (_WATER | _MOUNTAINS | _TREES | _CITY | _DESERT)
        return cls(
            hue=float(hue),
            time_of_day=tod,
            water=bool(words & _WATER),
            # With no scenery word at all, the prompt's hash picks mountains or hills.
            mountains=bool(words & _MOUNTAINS) or (not scenic and digest[1] % 2 == 0),
            trees=bool(words & _TREES),
            city=bool(words & _CITY),
            desert=bool(words & _DESERT),
            snow=bool(words & _SNOW),
            mist=0.55 if words & _MIST else 0.25,
            saturation=(0.55 if dark else 1.0) * (1.35 if bright else 1.0) * (0.6 if soft else 1.0),
            brightness=(0.55 if dark else 1.0) * (1.12 if bright or soft else 1.0),
            warmth=max(-1.0, min(1.0, warmth)),
            clouds=0.7 if words & _CLOUDS else 0.35,
            key=int.from_bytes(digest[:8], "big"),
        )


def _rgb(h: float, s: float, v: float) -> np.ndarray:
    """A colour as a (3, 1, 1) array: it broadcasts over channel-first (3, H, W) images."""
    r, g, b = colorsys.hsv_to_rgb((h % 360) / 360, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return np.array([r, g, b], dtype=np.float32).reshape(3, 1, 1)


@dataclass(frozen=True)
class Palette:
    sky_top: np.ndarray
    sky_horizon: np.ndarray
    sun: np.ndarray
    land_far: np.ndarray
    land_near: np.ndarray
    snow: np.ndarray
    window: np.ndarray

    @classmethod
    def make(cls, scene: Scene, hue_jitter: float) -> Palette:
        h = scene.hue + hue_jitter
        s, v = scene.saturation, scene.brightness
        # Warm scenes pull the light toward orange, cold ones toward blue.
        light_hue = 35 if scene.warmth >= 0 else 205
        w = abs(scene.warmth)
        tod = scene.time_of_day
        if tod == "night":
            top, horizon = _rgb(230, 0.7 * s, 0.12 * v), _rgb(h, 0.45 * s, 0.32 * v)
            sun = _rgb(50, 0.08, 0.95)
            land_far, land_near = _rgb(h + 10, 0.35 * s, 0.2 * v), _rgb(h + 20, 0.4 * s, 0.07 * v)
        elif tod in ("dawn", "dusk"):
            top = _rgb(250 if tod == "dusk" else 225, 0.55 * s, 0.45 * v)
            horizon = _rgb(_mix_hue(h, 25, 0.55), 0.7 * s, 0.98 * v)
            sun = _rgb(45, 0.35, 1.0)
            land_far, land_near = _rgb(h + 200, 0.3 * s, 0.45 * v), _rgb(h + 190, 0.45 * s, 0.16 * v)
        else:
            top = _rgb(_mix_hue(210, h, 0.35), 0.6 * s, 0.85 * v)
            horizon = _rgb(_mix_hue(200, h, 0.5), 0.25 * s, 0.98 * v)
            sun = _rgb(50, 0.15, 1.0)
            land_far, land_near = _rgb(h + 150, 0.3 * s, 0.65 * v), _rgb(h + 120, 0.6 * s, 0.32 * v)
        if scene.desert:
            land_far, land_near = _rgb(35, 0.45 * s, 0.8 * v), _rgb(25, 0.65 * s, 0.55 * v)
        tint = _rgb(light_hue, 0.6, 1.0)
        horizon = horizon * (1 - 0.35 * w) + tint * horizon.max() * 0.35 * w
        return cls(
            sky_top=top,
            sky_horizon=horizon,
            sun=sun,
            land_far=land_far,
            land_near=land_near,
            snow=_rgb(210, 0.08, 0.95 * (0.5 if tod == "night" else 1.0)),
            window=_rgb(45, 0.6, 1.0),
        )


def _mix_hue(a: float, b: float, t: float) -> float:
    d = ((b - a + 180) % 360) - 180
    return a + d * t


# --- rendering -----------------------------------------------------------------------------------


def _noise2d(
    rng: np.random.Generator, w: int, h: int, cells: int, octaves: int = 3, stretch: float = 1.0
) -> np.ndarray:
    """Smooth fractal value noise in [0, 1], shape (h, w): random grids upsampled by Pillow.

    ``stretch`` > 1 makes features wider than tall (clouds, mist banks).
    """
    out = np.zeros((h, w), dtype=np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        n = cells * 2**o
        rows = max(2, int(n * h / max(w, h)) + 2)
        cols = max(2, int(n / stretch) + 2)
        grid = rng.random((rows, cols), dtype=np.float32)
        out += amp * np.asarray(Image.fromarray(grid, mode="F").resize((w, h), Image.Resampling.BILINEAR))
        total += amp
        amp *= 0.5
    return (out / total).clip(0.0, 1.0)


def _noise1d(rng: np.random.Generator, n: int, points: int, octaves: int = 4) -> np.ndarray:
    """Fractal 1-D noise in about [-1, 1] of length n (ridge and skyline profiles)."""
    x = np.linspace(0, 1, n, dtype=np.float32)
    out = np.zeros(n, dtype=np.float32)
    amp = 1.0
    for o in range(octaves):
        k = points * 2**o + 1
        out += amp * np.interp(x, np.linspace(0, 1, k), rng.uniform(-1, 1, k)).astype(np.float32)
        amp *= 0.5
    return out / 1.875


def render(scene: Scene, seed: int, width: int, height: int) -> np.ndarray:
    """One picture as uint8 RGB, shape (height, width, 3).

    Works channel-first, (3, H, W), so that every colour × mask operation runs along rows of W
    values (channel-last broadcasting would run NumPy's inner loops over just 3 values).
    """
    rng = np.random.default_rng([seed, width, height, scene.key])
    palette = Palette.make(scene, hue_jitter=float(rng.uniform(-14, 14)))
    W, H = width, height
    ys = np.linspace(0, 1, H, dtype=np.float32)[:, None]
    xs = np.linspace(0, 1, W, dtype=np.float32)[None, :]
    aspect = W / H

    horizon = float(rng.uniform(0.42, 0.68))
    sun_x, sun_y = float(rng.uniform(0.15, 0.85)), horizon - float(rng.uniform(0.08, 0.3))
    if scene.time_of_day in ("dawn", "dusk"):
        sun_y = horizon - float(rng.uniform(0.03, 0.1))

    # Sky: vertical gradient, the sun (or moon) disc, then its glow on top.
    t = np.clip(ys / horizon, 0, 1) ** 1.6
    img = np.empty((3, H, W), dtype=np.float32)
    img[:] = palette.sky_top * (1 - t) + palette.sky_horizon * t
    d2 = ((xs - sun_x) * aspect) ** 2 + (ys - sun_y) ** 2
    sun_r = float(rng.uniform(0.035, 0.06))
    disc = np.clip((sun_r - np.sqrt(d2)) / 0.004, 0, 1)
    img *= 1 - disc
    img += palette.sun * disc
    glow = (0.3 if scene.time_of_day == "night" else 0.45) * scene.brightness
    img += (palette.sun * glow) * np.exp(d2 * (-1 / 0.025))

    if scene.time_of_day == "night":
        n = int(W * H * 0.0012)
        sy, sx = rng.integers(0, int(H * horizon), n), rng.integers(0, W, n)
        img[:, sy, sx] += rng.uniform(0.2, 0.9, n).astype(np.float32)

    # Clouds: wide fractal noise, thresholded, lit from the horizon colour.
    cover = scene.clouds + float(rng.uniform(-0.2, 0.2))
    sky_rows = int(H * horizon)
    clouds = _noise2d(rng, W, sky_rows, cells=5, stretch=3.0)
    band = np.clip(1 - np.abs(ys[:sky_rows] - horizon * 0.45) / (horizon * 0.5), 0, 1)
    c = np.clip((clouds - (1 - cover * 0.6)) * 3, 0, 1) * band * 0.75
    sky = img[:, :sky_rows]
    sky *= 1 - c
    sky += (palette.sky_horizon * 0.6 + palette.sun * 0.4) * c

    # Land: ridges from far to near, each darker and less hazy than the one behind it. Each layer
    # only touches the rows below its highest point.
    layers = int(rng.integers(3, 6))
    texture = _noise2d(rng, W, H, cells=16, octaves=2) - 0.5
    for k in range(layers):
        depth = k / max(1, layers - 1)  # 0 far .. 1 near
        base = horizon + (0.02 + depth * (0.34 if not scene.water else 0.06))
        if scene.desert:
            amp, points = 0.05 + 0.03 * depth, 2
        elif scene.mountains:
            amp, points = (0.24 - 0.13 * depth), int(rng.integers(3, 7))
        else:
            amp, points = 0.06 + 0.03 * depth, int(rng.integers(2, 4))
        octaves = 5 if scene.mountains and not scene.desert else 3
        profile = base - amp * (0.6 + 0.5 * _noise1d(rng, W, points, octaves=octaves))
        if scene.city and k == layers - 2:
            profile = np.minimum(profile, _skyline(rng, W, base))
        if scene.trees and k >= layers - 2:
            profile = np.minimum(profile, _treeline(rng, W, profile))
        top = max(0, int(profile.min() * H))
        if top >= H:
            continue
        band_ys = ys[top:]
        mask = band_ys >= profile
        fade = min(1.0, scene.mist * (1 - depth) * 1.6 + 0.08)
        colour = palette.land_far * (1 - depth) + palette.land_near * depth
        colour = colour * (1 - fade) + palette.sky_horizon * fade
        # Rim light along the crest, darker toward the foot; texture grows with nearness.
        below = np.clip((band_ys - profile) * 4, 0, 1)
        tex = texture[top:] * ((0.1 if scene.desert else 0.18) + 0.22 * depth)
        shade = 1.12 - 0.4 * below + tex
        layer = colour * shade
        if scene.snow and scene.mountains and k < layers - 1:
            snowline = base - amp * (0.75 + 0.1 * _noise1d(rng, W, 12, octaves=2))
            snowy = band_ys + tex * 0.05 < snowline
            np.copyto(layer, palette.snow * (shade * 0.9), where=snowy)
        if scene.city and k == layers - 2:
            _windows(rng, layer, mask, profile, palette, top, H)
        np.copyto(img[:, top:], layer, where=mask)

    if scene.water:
        _reflect(rng, img, horizon + 0.08)

    # Mist lying on the land, then grain and a vignette for a finished look.
    if scene.mist > 0.3:
        fog = np.exp(-((ys - horizon - 0.05) ** 2) / 0.008) * _noise2d(rng, W, H, cells=3, octaves=2, stretch=4)
        fog *= 0.55
        img *= 1 - fog
        img += palette.sky_horizon * fog
    grain = rng.random((64, 64), dtype=np.float32) - 0.5
    img += np.tile(grain, (H // 64 + 1, W // 64 + 1))[:H, :W] * 0.03
    img *= 1 - 0.32 * (((xs - 0.5) * 1.4) ** 2 + ((ys - 0.5) * 1.4) ** 2)
    np.clip(img, 0, 1, out=img)
    img *= 255
    img += 0.5
    return np.ascontiguousarray(img.astype(np.uint8).transpose(1, 2, 0))


def _skyline(rng: np.random.Generator, W: int, base: float) -> np.ndarray:
    heights = np.empty(W, dtype=np.float32)
    x = 0
    while x < W:
        w = int(rng.integers(max(4, W // 40), max(8, W // 12)))
        heights[x : x + w] = base - float(rng.uniform(0.08, 0.32))
        x += w
    return heights


def _treeline(rng: np.random.Generator, W: int, profile: np.ndarray) -> np.ndarray:
    """Pointed tree tops standing on the ridge ``profile``."""
    out = profile.copy()
    cols = np.arange(W, dtype=np.float32)
    for _ in range(max(8, W // 9)):
        c = float(rng.uniform(0, W))
        half = float(rng.uniform(W / 160, W / 60))
        h = float(rng.uniform(0.03, 0.09))
        lo, hi = max(0, int(c - half)), min(W, int(c + half) + 1)
        if lo >= hi:
            continue
        tri = h * (1 - np.abs(cols[lo:hi] - c) / half)
        out[lo:hi] = np.minimum(out[lo:hi], profile[lo:hi] - np.maximum(tri, 0))
    return out


def _windows(
    rng: np.random.Generator,
    layer: np.ndarray,
    mask: np.ndarray,
    profile: np.ndarray,
    palette: Palette,
    top: int,
    H: int,
) -> None:
    """Light a random share of window cells on the buildings of ``layer`` (rows ``top``..H)."""
    W = mask.shape[1]
    cell = max(4, W // 80)
    gy = np.arange(top, H)[:, None]
    gx = np.arange(W)[None, :]
    lit = rng.random((H // cell + 1, W // cell + 1)) > 0.6
    on = lit[gy // cell, gx // cell] & (gx % cell < cell // 2) & (gy % cell < cell // 2)
    on &= mask & (gy > profile[None, :] * H + cell)
    np.copyto(layer, palette.window, where=on)


def _reflect(rng: np.random.Generator, img: np.ndarray, line: float) -> None:
    """Mirror everything above the water line into it, with ripples and a darker tint."""
    _, H, W = img.shape
    row = int(line * H)
    if row >= H:
        return
    rows = np.arange(row, H)
    src = np.clip(2 * row - rows, 0, row - 1)
    ripple = (np.sin(rows * 0.9 + float(rng.uniform(0, 6.28))) * (1 + (rows - row) / (H - row) * 4)).astype(int)
    cols = (np.arange(W)[None, :] + ripple[:, None]) % W
    img[:, row:] = img[:, src[:, None], cols] * 0.62 + np.array([0.02, 0.05, 0.09], dtype=np.float32).reshape(3, 1, 1)
    img[:, row : row + max(1, H // 256)] *= 1.25  # a bright shoreline


def _guided(image: Image.Image, prompts: tuple[Image.Image, ...], weight: float) -> Image.Image:
    """Pull the picture towards the image prompts: their average, fitted to the frame, blended in
    at up to 80 % (--iw 3); --iw 1 gives about a quarter, --iw 0 nothing."""
    size = image.size
    guides = [np.asarray(ImageOps.fit(p.convert("RGB"), size), dtype=np.float32) for p in prompts]
    guide = Image.fromarray(np.mean(guides, axis=0).astype(np.uint8), mode="RGB")
    return Image.blend(image, guide, 0.8 * weight / 3)


def _from_init(image: Image.Image, request: GenerationRequest) -> Image.Image:
    """Image-to-image: with a mask, the new picture only where the mask is white and the init
    image exactly elsewhere; without one, the two mixed by ``strength`` (0 keeps the init)."""
    assert request.init_image is not None
    init = request.init_image.convert("RGB")
    if init.size != image.size:
        init = init.resize(image.size, Image.Resampling.LANCZOS)
    if request.mask is not None:
        mask = request.mask.convert("L")
        return Image.composite(image, init, mask if mask.size == image.size else mask.resize(image.size))
    return Image.blend(init, image, request.strength)


def animate_frames(image: Image.Image, request: VideoRequest, seed: int) -> Iterator[np.ndarray]:
    """The frames of one clip: a slow camera move (push in and drift), parallax (the lower part
    of the picture, the foreground, drifts further than the sky) and light that swells and
    fades. The seed picks the drift direction; ``motion`` how far everything moves."""
    rng = np.random.default_rng([seed, request.width, request.height])
    W, H = request.width, request.height
    high = request.motion == "high"
    # Sample from a picture larger than the frame, so the move never shows an edge.
    margin = 1.35 if high else 1.15
    src_w, src_h = int(W * margin), int(H * margin)
    start = np.asarray(ImageOps.fit(image.convert("RGB"), (src_w, src_h))).reshape(-1, 3)
    end = None
    if request.end_image is not None:
        end = np.asarray(ImageOps.fit(request.end_image.convert("RGB"), (src_w, src_h))).reshape(-1, 3)
    angle = float(rng.uniform(0, 2 * np.pi))
    room_x, room_y = (src_w - W) / 2, (src_h - H) / 2
    drift_x, drift_y = np.cos(angle) * room_x * 0.45, np.sin(angle) * room_y * 0.45
    push = 0.12 if high else 0.05
    light = 0.16 if high else 0.07
    xs = np.arange(W, dtype=np.float32)[None, :] - W / 2
    ys = np.arange(H, dtype=np.float32)[:, None] - H / 2
    depth = (np.arange(H, dtype=np.float32)[:, None] / H) ** 2  # 0 at the top (far) .. 1 at the bottom (near)
    levels = np.arange(256, dtype=np.float32)
    n = request.frames
    for i in range(n):
        t = i / max(1, n - 1)
        ease = t * t * (3 - 2 * t)
        scale = 1 + push * ease
        sx = np.clip((xs / scale + (src_w / 2 + drift_x * ease * (0.5 + depth))).astype(np.int32), 0, src_w - 1)
        sy = np.clip((ys / scale + (src_h / 2 + drift_y * ease)).astype(np.int32), 0, src_h - 1)
        index = (sy * src_w + sx).ravel()
        frame = np.take(start, index, axis=0)
        if end is not None:
            frame = (frame * (1 - ease) + np.take(end, index, axis=0) * ease).astype(np.uint8)
        # Light through a lookup table: one gather per frame instead of float maths per pixel.
        lut = np.clip(levels * (1 + light * np.sin(np.pi * t)), 0, 255).astype(np.uint8)
        yield lut[frame].reshape(H, W, 3)


class ProceduralEngine(Engine):
    name = "procedural"
    model = MODEL

    def __init__(self, delay_ms: int = 0, name: str = "procedural") -> None:
        self.name = name
        #: Simulated model latency per image (demos of a slow model, crash-recovery tests).
        self._delay = delay_ms / 1000

    def generate(
        self, request: GenerationRequest, progress: ProgressCallback | None = None
    ) -> GenerationResult:
        scene = Scene.from_prompt(request.prompt)
        images = []
        for i, seed in enumerate(request.seeds):
            if self._delay:
                time.sleep(self._delay)
            pixels = render(scene, seed, request.width, request.height)
            image = Image.fromarray(pixels, mode="RGB")
            if request.image_prompts:
                image = _guided(image, request.image_prompts, request.image_weight)
            if request.init_image is not None:
                image = _from_init(image, request)
            images.append(image)
            if progress is not None:
                progress((i + 1) / len(request.seeds), image)
        return GenerationResult(images=tuple(images), model=MODEL)

    def animate(self, request: VideoRequest, progress: ProgressCallback | None = None) -> VideoResult:
        clips = []
        for i, seed in enumerate(request.seeds):
            clips.append(encode_mp4(animate_frames(request.image, request, seed), request.width, request.height, request.fps))
            if progress is not None:
                progress((i + 1) / len(request.seeds))
        return VideoResult(clips=tuple(clips), model=MODEL)
