"""Image screening: a detector finds labelled regions, per-tenant rules turn them into a verdict.

Output images are screened in the worker, one batch per task, before anything is stored:
``block`` keeps an image out of storage, ``review`` holds it privately for a person to decide
(``safety/review.py``), ``pass`` publishes it. Input images (image prompts, blend pictures,
masks' sources) are screened when a task is accepted, against the ``inputs`` rules: a hit is
refused with code 24 before anything is charged.

The detector is NudeNet's ONNX model (``safety/nudenet.py``; ``pip install pixelmill[safety]``, the
weights ship in its wheel). Its labels are the vocabulary of the rules.

Rules come from ``PIXELMILL_SCREENING_FILE`` (JSON)::

    {"default": {"block": {"FEMALE_GENITALIA_EXPOSED": 0.5, ...},
                 "review": {"FEMALE_BREAST_EXPOSED": 0.3, ...},
                 "inputs": {...}},                       # default: the block rules
     "tenants": {"<tenant>": {"block": {...}, "review": {...}, "inputs": {...}}}}

A tenant's entry replaces the default's lists it names (a brand that blocks more, a medical app
that reviews instead of blocking), and keeps the default for the lists it leaves out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from pixelmill.exceptions import BannedPrompt
from pixelmill.safety.detector import Detector, Finding
from pixelmill.safety.nudenet import CLASSES

#: The names rules may use: the detector's labels.
LABELS = frozenset(CLASSES)

Decision = Literal["pass", "review", "block"]
#: What is screened: a task's images, a preview while it runs (both on the output rules), or a
#: request's input images (on the input rules). Metrics are labelled by it.
Purpose = Literal["output", "preview", "input"]

#: Explicit nudity is blocked; borderline regions go to a person. Calibrated on a clean set of
#: about 4,000 pictures (bench/screening_calibration.py, docs/safety.md): the detector scores
#: innocent pictures up to about 0.55 for BUTTOCKS_EXPOSED (sand, skin tones, round shapes) and up
#: to about 0.3 for the other labels here, so each threshold sits clear of that.
DEFAULT_BLOCK = {
    "FEMALE_GENITALIA_EXPOSED": 0.45, "MALE_GENITALIA_EXPOSED": 0.45, "ANUS_EXPOSED": 0.45,
    "FEMALE_BREAST_EXPOSED": 0.6, "BUTTOCKS_EXPOSED": 0.75,
}
DEFAULT_REVIEW = {"FEMALE_BREAST_EXPOSED": 0.45, "BUTTOCKS_EXPOSED": 0.6, "FEMALE_GENITALIA_COVERED": 0.5}


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    #: The findings that decided it (empty for pass).
    reasons: tuple[Finding, ...] = ()

    def why(self) -> str:
        return ", ".join(f"{f.label} {f.score:.2f}" for f in self.reasons)


PASS = Verdict("pass")


def _thresholds(value: object, where: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: needs {{label: minimum score}}")
    unknown = sorted(set(value) - LABELS)
    if unknown:
        raise ValueError(f"{where}: unknown label(s) {', '.join(unknown)}; labels are {', '.join(sorted(LABELS))}")
    for label, score in value.items():
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 < score <= 1:
            raise ValueError(f"{where}.{label}: a score in (0, 1]")
    return {k: float(v) for k, v in value.items()}


@dataclass(frozen=True)
class Rules:
    """Which labels block and which go to review, at which minimum score."""

    block: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_BLOCK))
    review: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_REVIEW))
    #: What refuses an input image (None: the block rules).
    inputs: Mapping[str, float] | None = None

    def judge(self, findings: Sequence[Finding], *, input_image: bool = False) -> Verdict:
        """Block, review (outputs only) or pass; inputs are judged on the ``inputs`` rules."""
        blocking = self.block if not input_image else (self.inputs if self.inputs is not None else self.block)
        hits = tuple(f for f in findings if f.label in blocking and f.score >= blocking[f.label])
        if hits:
            return Verdict("block", hits)
        if input_image:
            return PASS
        held = tuple(f for f in findings if f.label in self.review and f.score >= self.review[f.label])
        return Verdict("review", held) if held else PASS

    def merged(self, entry: Mapping[str, Any], where: str) -> Rules:
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: needs {{\"block\": {{...}}, \"review\": {{...}}, \"inputs\": {{...}}}}")
        unknown = set(entry) - {"block", "review", "inputs"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (block, review, inputs)")
        return Rules(
            block=_thresholds(entry["block"], f"{where}.block") if "block" in entry else self.block,
            review=_thresholds(entry["review"], f"{where}.review") if "review" in entry else self.review,
            inputs=_thresholds(entry["inputs"], f"{where}.inputs") if "inputs" in entry else self.inputs,
        )


def kept_back(verdicts: Sequence[Verdict]) -> list[dict[str, Any]]:
    """The ``screening`` entries of a task result: one per image that did not pass (1-based)."""
    return [
        {"index": i, "decision": v.decision, "reasons": [f.to_json() for f in v.reasons]}
        for i, v in enumerate(verdicts, 1) if v.decision != "pass"
    ]


#: Called after each screening: (purpose, seconds, verdicts).
Observer = Callable[[str, float, Sequence[Verdict]], None]


class Screening:
    """The detector and the rules of every tenant; one ``screen`` call per task."""

    def __init__(
        self,
        detector: Detector | None,
        default: Rules | None = None,
        tenants: Mapping[str, Rules] | None = None,
        observe: Observer | None = None,
    ) -> None:
        self.detector = detector
        self._default = default or Rules()
        self._tenants = dict(tenants or {})
        self._observers: list[Observer] = [observe] if observe else []

    @property
    def enabled(self) -> bool:
        return self.detector is not None

    def add_observer(self, observe: Observer) -> None:
        self._observers.append(observe)

    def rules(self, tenant_id: str) -> Rules:
        return self._tenants.get(tenant_id, self._default)

    def screen(self, tenant_id: str, images: Sequence[Image.Image], *, purpose: Purpose = "output") -> list[Verdict]:
        """One verdict per image; all pass when no detector is configured."""
        if self.detector is None or not images:
            return [PASS] * len(images)
        started = time.perf_counter()
        found = self.detector.detect(images)
        rules = self.rules(tenant_id)
        verdicts = [rules.judge(f, input_image=purpose == "input") for f in found]
        for observe in self._observers:
            observe(purpose, time.perf_counter() - started, verdicts)
        return verdicts

    def check_inputs(self, tenant_id: str, field_name: str, images: Sequence[Image.Image]) -> None:
        """Refuse (code 24) an input image that the tenant's input rules block."""
        for i, verdict in enumerate(self.screen(tenant_id, images, purpose="input")):
            if verdict.decision == "block":
                where = f"{field_name}[{i}]" if len(images) > 1 else field_name
                top = max(verdict.reasons, key=lambda f: f.score)
                raise BannedPrompt(
                    f"{where}: the image was refused by screening ({verdict.why()})",
                    properties={"field": where, "check": "image", "label": top.label, "score": round(top.score, 3)},
                )

    @classmethod
    def from_settings(cls, mode: str, path: Path | None, batch_size: int = 4) -> Screening:
        """``mode``: off, nudenet, or auto (nudenet when the safety extra is installed)."""
        default, tenants = Rules(), {}
        if path is not None:
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"screening file {path}: {exc}") from exc
            if not isinstance(data, dict) or set(data) - {"default", "tenants"}:
                raise ValueError(f'screening file {path}: needs {{"default": {{...}}, "tenants": {{...}}}}')
            for key in ("default", "tenants"):
                if not isinstance(data.get(key, {}), dict):
                    raise ValueError(f"screening file {path}: {key} must be a JSON object")
            default = default.merged(data.get("default") or {}, "default")
            tenants = {t: default.merged(e, f"tenants.{t}") for t, e in (data.get("tenants") or {}).items()}
        detector: Detector | None = None
        if mode == "nudenet" or (mode == "auto" and detector_installed()):
            from pixelmill.safety.nudenet import NudeNetDetector

            detector = NudeNetDetector(batch_size)
        return cls(detector, default, tenants)


def detector_installed() -> bool:
    """Whether the safety extra is here: ONNX Runtime and NudeNet's weights."""
    import importlib.util

    from pixelmill.safety.nudenet import ModelMissing, model_path

    try:
        model_path()
    except ModelMissing:
        return False
    return importlib.util.find_spec("onnxruntime") is not None
