"""One conformance suite for every engine kind: what the executor relies on, whatever makes the
pixels. The procedural engine runs as it is, the diffusers engine on a tiny random pipeline the
test builds (through the real loading path, on the CPU), the remote engine against a real
pixelmill upstream on loopback, in each upstream contract it speaks (seed 004's own, and
midjourney-proxy's ``/mj``, which pixelmill serves too)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixelmill.engines.base import Engine, GenerationRequest
from pixelmill.engines.procedural import ProceduralEngine
from pixelmill.engines.remote import RemoteConfig, RemoteEngine
from pixelmill.engines.remote.openai import OpenAIImagesEngine
from tests.helpers import Server, require_extra

UPSTREAM_KEY = "pm_conformance_" + "u" * 32


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_extra("diffusers", "diffusers")
    from tests.engines.tiny_pipeline import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("upstream"), UPSTREAM_KEY, image_size=64, rate_per_minute=0).start()
    yield srv
    srv.stop()


def _build(kind: str, request: pytest.FixtureRequest) -> Engine:
    if kind == "procedural":
        return ProceduralEngine()
    if kind == "diffusers":
        from pixelmill.engines.diffusers import DiffusersConfig, DiffusersEngine

        folder = request.getfixturevalue("tiny_model")
        return DiffusersEngine("sd", DiffusersConfig(model=str(folder), device="cpu", dtype="fp32", steps=2, process=False, warmup=False))
    srv = request.getfixturevalue("upstream")
    if kind == "remote-openai":
        return OpenAIImagesEngine("oa", RemoteConfig(base_url=srv.url, api_key=UPSTREAM_KEY, contract="openai", sizes=("64x64",)))
    contract = "midjourney-proxy" if kind == "remote-mjproxy" else "seed004"
    return RemoteEngine("mj", RemoteConfig(base_url=srv.url, api_key=UPSTREAM_KEY, poll_seconds=0.05, contract=contract))


@pytest.fixture(params=["procedural", "diffusers", "remote", "remote-mjproxy", "remote-openai"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    made = _build(request.param, request)
    yield made
    made.close()


@pytest.fixture(params=["procedural", "diffusers", "remote-openai"])
def painter(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The engines that paint the pixels they are given (the OpenAI Images API too, through its
    edits). A remote Midjourney-style engine works on pictures through upstream follow-ups
    instead (tests/e2e/test_remote.py)."""
    made = _build(request.param, request)
    yield made
    made.close()


def _request(engine: Engine, seeds: tuple[int, ...], prompt: str = "a lake at dawn") -> GenerationRequest:
    # The remote engine takes the whole canonical prompt; its upstream picks the size from it.
    return GenerationRequest(prompt=prompt, width=64, height=64, seeds=seeds, source_prompt=f"{prompt} --seed {seeds[0]}")


def test_one_image_of_the_asked_size_per_seed(engine: Engine) -> None:
    seeds = (1, 2, 3, 4)
    result = engine.generate(_request(engine, seeds))
    assert len(result.images) == len(seeds) and all(im.size == (64, 64) and im.mode == "RGB" for im in result.images)
    assert result.model == engine.model


def test_the_same_seed_gives_the_same_pixels(engine: Engine) -> None:
    a = engine.generate(_request(engine, (7, 8, 9, 10))).images
    assert not np.array_equal(np.asarray(a[0]), np.asarray(a[1]))  # each image its own seed
    if not engine.fixes_seeds:
        pytest.skip(f"{engine.name}'s upstream takes no seed: its pictures are not reproducible (Engine.fixes_seeds)")
    b = engine.generate(_request(engine, (7, 8, 9, 10))).images
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b, strict=True))


def test_progress_rises_to_the_end(engine: Engine) -> None:
    seen: list[float] = []
    engine.generate(_request(engine, (5, 6, 7, 8)), lambda f, preview=None: seen.append(f))
    assert seen and seen == sorted(seen) and 0 < seen[-1] <= 1


def test_image_to_image_and_inpaint_keep_the_size(painter: Engine) -> None:
    init = Image.new("RGB", (64, 64), (200, 40, 40))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 32))
    for extra in ({"init_image": init, "strength": 0.5}, {"init_image": init, "mask": mask, "strength": 1.0}):
        result = painter.generate(GenerationRequest(prompt="a lake", width=64, height=64, seeds=(1, 2), **extra))
        assert [im.size for im in result.images] == [(64, 64), (64, 64)]
