"""Screening rules and the NudeNet detector itself, on pictures built here: procedural images
(clean: nothing found at all) and a portrait photograph the detector is known to label
FACE_FEMALE (shipped with matplotlib), pasted into a procedural picture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from pixelmill.engines.base import GenerationRequest
from pixelmill.engines.procedural import ProceduralEngine
from pixelmill.exceptions import BannedPrompt
from pixelmill.safety.detector import Finding
from pixelmill.safety.nudenet import NudeNetDetector
from pixelmill.safety.screening import DEFAULT_BLOCK, Rules, Screening
from tests.helpers import require_detector, require_extra

PROMPTS = ["a portrait of a woman on a beach", "a man at the gym", "a city at night", "figure study in charcoal", "a bowl of fruit"]


def procedural_images() -> list[Image.Image]:
    engine = ProceduralEngine()
    images: list[Image.Image] = []
    for i, prompt in enumerate(PROMPTS):
        done = engine.generate(GenerationRequest(prompt=prompt, width=512, height=512, seeds=tuple(range(4 * i, 4 * i + 4))), lambda *_: None)
        images.extend(done.images)
    return images


@pytest.fixture(scope="module")
def detector() -> NudeNetDetector:
    require_detector()
    d = NudeNetDetector()
    d.load()
    return d


@pytest.fixture(scope="module")
def portrait_scene() -> Image.Image:
    """A procedural landscape with the portrait pasted into it, off centre."""
    matplotlib = require_extra("matplotlib", "dev")
    scene = procedural_images()[8].resize((768, 768))
    with Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg") as portrait:
        scene.paste(portrait.convert("RGB").resize((384, 450)), (320, 200))
    return scene


def test_clean_procedural_images_pass_with_the_default_rules(detector: NudeNetDetector) -> None:
    images = procedural_images()
    verdicts = Screening(detector).screen("t", images)
    assert [v.decision for v in verdicts] == ["pass"] * len(images)


def test_the_detector_labels_a_face_where_it_was_pasted_and_is_reproducible(detector: NudeNetDetector, portrait_scene: Image.Image) -> None:
    first, again = detector.detect([portrait_scene, portrait_scene.copy()])
    faces = [f for f in first if f.label == "FACE_FEMALE"]
    assert faces and faces[0].score >= 0.4
    x, y, w, h = faces[0].box
    assert 320 <= x + w / 2 <= 320 + 384 and 200 <= y + h / 2 <= 200 + 450  # the face is inside the pasted portrait
    assert [(f.label, round(f.score, 4)) for f in again] == [(f.label, round(f.score, 4)) for f in first]


def test_per_tenant_rules_route_the_same_finding_to_pass_review_or_block(detector: NudeNetDetector, portrait_scene: Image.Image) -> None:
    screening = Screening(
        detector, Rules(),
        {"brand": Rules(review={"FACE_FEMALE": 0.3}), "strict": Rules(block={"FACE_FEMALE": 0.3}, inputs={})},
    )
    assert screening.screen("anyone", [portrait_scene])[0].decision == "pass"
    held = screening.screen("brand", [portrait_scene])[0]
    assert held.decision == "review" and held.reasons[0].label == "FACE_FEMALE"
    assert screening.screen("strict", [portrait_scene])[0].decision == "block"
    screening.check_inputs("strict", "image_urls", [portrait_scene])  # its input rules are empty
    with pytest.raises(BannedPrompt) as err:
        Screening(detector, Rules(block={"FACE_FEMALE": 0.3})).check_inputs("t", "image_urls", [portrait_scene, portrait_scene])
    assert err.value.code == 24 and err.value.properties["field"] == "image_urls[0]" and err.value.properties["label"] == "FACE_FEMALE"


def test_rules_block_before_review_at_their_own_scores() -> None:
    rules = Rules(block={"BUTTOCKS_EXPOSED": 0.6}, review={"BUTTOCKS_EXPOSED": 0.3, "FEET_EXPOSED": 0.5})
    assert rules.judge([Finding("BUTTOCKS_EXPOSED", 0.7)]).decision == "block"
    assert rules.judge([Finding("BUTTOCKS_EXPOSED", 0.5)]).decision == "review"
    assert rules.judge([Finding("BUTTOCKS_EXPOSED", 0.2), Finding("FEET_EXPOSED", 0.49)]).decision == "pass"
    assert rules.judge([Finding("BUTTOCKS_EXPOSED", 0.5)], input_image=True).decision == "pass"  # inputs: block rules only
    assert Rules().judge([Finding(label, score) for label, score in DEFAULT_BLOCK.items()]).decision == "block"


def test_a_screening_file_overrides_per_tenant_and_bad_files_stop_the_start(tmp_path: Path) -> None:
    path = tmp_path / "screening.json"
    path.write_text(json.dumps({"default": {"review": {}}, "tenants": {"med": {"block": {"ANUS_EXPOSED": 0.9}}}}))
    screening = Screening.from_settings("off", path)
    assert not screening.enabled
    assert screening.rules("x").review == {} and screening.rules("x").block == DEFAULT_BLOCK
    assert screening.rules("med").block == {"ANUS_EXPOSED": 0.9} and screening.rules("med").review == {}  # the default's review
    for bad, message in [
        ({"default": {"block": {"NAKED": 0.5}}}, "unknown label(s) NAKED"),
        ({"tenants": {"a": {"review": {"FACE_MALE": 1.5}}}}, "tenants.a.review.FACE_MALE: a score in (0, 1]"),
        ({"tenants": {"a": {"allow": {}}}}, "unknown key(s) allow"),
        ({"rules": {}}, "needs"),
    ]:
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
            Screening.from_settings("auto", path)
