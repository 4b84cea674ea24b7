"""safety/nudenet.py runs NudeNet's model without NudeNet's code (which needs OpenCV): on the same
pictures it must find exactly what NudeNet 3.4's own ``detect_batch`` finds: labels, scores, boxes."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixelmill.engines.base import GenerationRequest
from pixelmill.engines.procedural import ProceduralEngine
from pixelmill.safety.detector import Finding
from pixelmill.safety.nudenet import NudeNetDetector, preprocess
from tests.helpers import require_detector, require_extra

require_detector()
matplotlib = require_extra("matplotlib", "dev")
#: The reference implementation (NudeNet's Python code, with OpenCV), installed by the dev extra.
reference = require_extra("nudenet", "dev")


def pictures() -> list[Image.Image]:
    """Sizes that take every path of the resize (down, up, exactly 2x, not square), a portrait the
    model finds a face in, and procedural pictures (seeds fixed)."""
    with Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg") as im:
        portrait = im.convert("RGB")
    engine = ProceduralEngine()
    made = engine.generate(GenerationRequest(prompt="a portrait of a woman on a beach", width=680, height=384, seeds=(3, 4)),
                           lambda *_: None).images
    return [portrait, portrait.resize((640, 640)), portrait.resize((120, 96)), portrait.resize((333, 777)),
            portrait.crop((100, 50, 400, 400)), portrait.resize((1024, 1200)), *made]


def bgr(image: Image.Image) -> np.ndarray:
    """What NudeNet's own code is given: an OpenCV-style decoded file."""
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])


def test_preprocessing_matches_nudenet_and_opencv() -> None:
    for image in pictures():
        ours, side = preprocess(image)
        theirs = reference.nudenet._read_image(bgr(image), 320)[0][0]
        assert side == max(image.size)
        # Downscales agree exactly; an upscale may differ by one level on a few pixels.
        assert np.abs(ours - theirs).max() <= 1.01 / 255
        assert (np.abs(ours - theirs) > 0.5 / 255).mean() < 0.005


def test_findings_match_nudenet_detect_batch() -> None:
    images = pictures()
    ours = NudeNetDetector(batch_size=3).detect(images)
    theirs = reference.NudeDetector().detect_batch([bgr(im) for im in images], batch_size=4)
    assert any(ours), "the portrait should give at least one finding"
    for found, expected in zip(ours, theirs, strict=True):
        assert [f.label for f in found] == [d["class"] for d in expected]
        for f, d in zip(found, expected, strict=True):
            assert f.score == pytest.approx(d["score"], abs=2e-3)
            assert all(abs(a - b) <= 2 for a, b in zip(f.box, d["box"], strict=True))


def test_screenings_at_once_find_what_one_alone_finds() -> None:
    """One alone runs on every core, one beside another on a single thread: the same findings."""
    images = pictures()
    detector = NudeNetDetector(batch_size=2)
    alone = detector.detect(images)
    single_runs = []
    single = detector._single.run
    detector._single.run = lambda *a, **k: single_runs.append(1) or single(*a, **k)
    detector._running = 1  # as if another screening were under way
    beside = detector.detect(images)
    detector._running = 0
    assert len(single_runs) == 4  # every batch of 2 of the 8 pictures, on the single thread
    start = threading.Barrier(4)

    def screen(_: int) -> list[list[Finding]]:
        start.wait(timeout=60)
        return detector.detect(images)

    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(screen, range(4)))
    expected = [f for per_image in alone for f in per_image]
    assert expected
    for found in (beside, *together):
        got = [f for per_image in found for f in per_image]
        assert [(f.label, f.box) for f in got] == [(f.label, f.box) for f in expected]
        assert [f.score for f in got] == pytest.approx([f.score for f in expected], abs=1e-5)
