"""Engine conformance (every engine must pass these) plus what the procedural engine promises."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
from PIL import Image

from pixelmill.engines.base import Engine, GenerationRequest
from pixelmill.engines.procedural import ProceduralEngine

ENGINES = [pytest.param(ProceduralEngine(), id="procedural")]


def pixels(engine: Engine, prompt: str, seeds: tuple[int, ...], width: int = 128, height: int = 128) -> list[np.ndarray]:
    result = engine.generate(GenerationRequest(prompt=prompt, width=width, height=height, seeds=seeds))
    return [np.asarray(im) for im in result.images]


@pytest.mark.parametrize("engine", ENGINES)
def test_one_rgb_image_per_seed_at_the_requested_size(engine: Engine) -> None:
    images = engine.generate(GenerationRequest(prompt="a cat", width=192, height=96, seeds=(1, 2, 3))).images
    assert len(images) == 3
    assert all(im.mode == "RGB" and im.size == (192, 96) for im in images)


@pytest.mark.parametrize("engine", ENGINES)
def test_same_prompt_and_seed_same_pixels(engine: Engine) -> None:
    a = pixels(engine, "a mountain lake", (5,))
    b = pixels(engine, "a mountain lake", (5,))
    assert np.array_equal(a[0], b[0])


@pytest.mark.parametrize("engine", ENGINES)
def test_progress_is_reported_up_to_done_with_previews(engine: Engine) -> None:
    seen: list[float] = []
    previews: list[Image.Image] = []

    def progress(fraction: float, preview: Image.Image | None = None) -> None:
        seen.append(fraction)
        if preview is not None:
            previews.append(preview)

    engine.generate(GenerationRequest(prompt="a cat", width=64, height=64, seeds=(1, 2)), progress)
    assert seen and seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    assert previews and all(p.size == (64, 64) for p in previews)


def test_request_rejects_programming_errors() -> None:
    with pytest.raises(ValueError, match="multiples of 8"):
        GenerationRequest(prompt="x", width=100, height=64, seeds=(1,))
    with pytest.raises(ValueError, match="seeds"):
        GenerationRequest(prompt="x", width=64, height=64, seeds=())
    with pytest.raises(ValueError, match="mask needs an init image"):
        GenerationRequest(prompt="x", width=64, height=64, seeds=(1,), mask=Image.new("L", (64, 64)))


def _composition(image: np.ndarray) -> np.ndarray:
    """Luminance with each row's mean removed: what is left is the layout (ridges, sun, skyline),
    not the sky-to-ground gradient every landscape shares."""
    lum = image.astype(float).mean(axis=2)
    return (lum - lum.mean(axis=1, keepdims=True)).ravel()


@pytest.mark.parametrize("prompt", ["a mountain lake", "a cat", "red desert at sunset", "a dark gloomy meadow"])
def test_four_seeds_give_four_different_compositions(prompt: str) -> None:
    layouts = [_composition(im) for im in pixels(ProceduralEngine(), prompt, (1, 2, 3, 4))]
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.corrcoef(layouts[i], layouts[j])[0, 1] < 0.9, (i, j)


def test_different_prompts_differ_with_the_same_seed() -> None:
    a, b = (pixels(ProceduralEngine(), p, (1,))[0].astype(float) for p in ("a cat", "a dog"))
    assert np.abs(a - b).mean() > 10


def _mean_hsv(img: np.ndarray) -> tuple[float, float, float]:
    r, g, b = (img.reshape(-1, 3).mean(axis=0) / 255).tolist()
    return colorsys.rgb_to_hsv(r, g, b)


def test_colour_and_mood_words_steer_the_palette() -> None:
    engine = ProceduralEngine()
    seeds = (1, 2, 3, 4)
    warm = np.mean([im.reshape(-1, 3).mean(axis=0) for im in pixels(engine, "red desert at sunset, warm", seeds)], axis=0)
    cold = np.mean([im.reshape(-1, 3).mean(axis=0) for im in pixels(engine, "icy blue lake, cold winter", seeds)], axis=0)
    assert warm[0] > warm[2] + 20  # red over blue
    assert cold[2] > cold[0] + 20  # blue over red
    bright = np.mean([_mean_hsv(im)[2] for im in pixels(engine, "a bright vivid meadow", seeds)])
    dark = np.mean([_mean_hsv(im)[2] for im in pixels(engine, "a dark gloomy meadow", seeds)])
    assert bright > dark + 0.15
    night = np.mean([_mean_hsv(im)[2] for im in pixels(engine, "a meadow at night", seeds)])
    assert night < bright - 0.2


def test_aspect_ratio_sets_the_shape() -> None:
    (wide,) = ProceduralEngine().generate(GenerationRequest(prompt="a city", width=680, height=384, seeds=(1,))).images
    assert wide.size == (680, 384)
