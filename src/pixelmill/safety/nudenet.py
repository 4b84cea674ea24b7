"""NudeNet's detector (its 320 px YOLOv8 ONNX model) run with ONNX Runtime and NumPy.

The weights come from the ``nudenet`` wheel; its Python code is not used. That code needs OpenCV
(about 150 MB installed, more than the rest of a default install's screening) for a padding, a
resize and a non-maximum suppression, which are a few lines of NumPy here. The steps are NudeNet
3.4's own, so the scores are its scores (``tests/safety/test_nudenet.py`` runs both on the same
pictures):

1. pad the picture to a square, black at the bottom and the right;
2. resize to 320 x 320 with OpenCV's bilinear rule (pixel centres, no antialiasing), in 8 bits;
3. hand the channels over in the order NudeNet's own code does for a decoded file (B, G, R),
   scaled to 0-1;
4. keep the rows whose best class scores at least 0.2, map their boxes back to the picture, and
   suppress overlaps across classes (score above 0.25, IoU above 0.45), best first.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from pixelmill.safety.detector import Finding

#: The model's classes, in the order of its output rows (NudeNet 3.4).
CLASSES = (
    "FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED", "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED", "BELLY_COVERED",
    "FEET_COVERED", "ARMPITS_COVERED", "ARMPITS_EXPOSED", "FACE_MALE", "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED", "ANUS_COVERED", "FEMALE_BREAST_COVERED", "BUTTOCKS_COVERED",
)
INPUT_SIDE = 320
#: NudeNet's thresholds: a row is a candidate from this score, and survives suppression above
#: NMS_SCORE when no better box overlaps it by more than NMS_IOU.
CANDIDATE_SCORE = 0.2
NMS_SCORE = 0.25
NMS_IOU = 0.45
#: OpenCV's fixed-point resize weights have 11 fractional bits.
_WEIGHT_SCALE = 2048


class ModelMissing(ImportError):
    """The safety extra (ONNX Runtime and NudeNet's weights) is not installed."""


def model_path() -> Path:
    """The ONNX file inside the installed ``nudenet`` package, found without importing it
    (importing it would import OpenCV)."""
    spec = importlib.util.find_spec("nudenet")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "320n.onnx"
        if path.is_file():
            return path
    raise ModelMissing("image screening needs the safety extra: pip install 'pixelmill[safety]'")


def _axis(source: int, target: int) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.int32], NDArray[np.int32]]:
    """Source indices and fixed-point weights of OpenCV's INTER_LINEAR along one axis."""
    position = ((np.arange(target, dtype=np.float64) + 0.5) * (source / target) - 0.5).astype(np.float32)
    first = np.floor(position).astype(np.intp)
    frac = position - first.astype(np.float32)
    low = first < 0
    first[low], frac[low] = 0, 0.0
    high = first >= source - 1
    first[high], frac[high] = source - 1, 0.0
    second = np.minimum(first + 1, source - 1)
    w0 = np.rint((np.float32(1) - frac) * np.float32(_WEIGHT_SCALE)).astype(np.int32)
    w1 = np.rint(frac * np.float32(_WEIGHT_SCALE)).astype(np.int32)
    return first, second, w0, w1


def _resize(planes: NDArray[np.uint8], side: int) -> NDArray[np.uint8]:
    """``cv2.resize(..., (side, side), interpolation=cv2.INTER_LINEAR)`` of a square 8-bit picture
    given as planes (channels, rows, columns), in OpenCV's own fixed-point arithmetic (its
    vectorised path): a downscale gives its exact pixels, an upscale may differ by one level on a
    few border pixels. Planes keep the inner loops long."""
    if planes.shape[1] == side:
        return planes
    a, b, wa, wb = _axis(planes.shape[1], side)
    # Along rows first (exact in 32 bits: at most 255 * 2048 per term), in place to spare copies.
    across = planes[:, :, a].astype(np.int32)
    across *= wa
    right = planes[:, :, b].astype(np.int32)
    right *= wb
    across += right
    # Then between rows, with OpenCV's shifts: (x >> 4) fits 16 bits, products keep the high half.
    upper = across[:, a]
    upper >>= 4
    upper *= wa[:, None]
    upper >>= 16
    lower = across[:, b]
    lower >>= 4
    lower *= wb[:, None]
    lower >>= 16
    upper += lower
    upper += 2
    upper >>= 2
    return np.clip(upper, 0, 255).astype(np.uint8)


def preprocess(image: Image.Image) -> tuple[NDArray[np.float32], int]:
    """The model input of one picture (3 x 320 x 320) and the side of its padded square."""
    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    side = max(height, width)
    # B, G, R planes (what NudeNet's colour conversion and blob swap make of a decoded file), on
    # a square padded with black at the bottom and the right.
    planes = np.zeros((3, side, side), dtype=np.uint8)
    planes[:, :height, :width] = rgb.transpose(2, 0, 1)[::-1]
    return _resize(planes, INPUT_SIDE).astype(np.float32) / np.float32(255.0), side


def _suppress(boxes: NDArray[np.float64], scores: NDArray[np.float32]) -> list[int]:
    """Greedy non-maximum suppression as ``cv2.dnn.NMSBoxes`` does it: best score first, a box
    is dropped when it overlaps a kept one by more than NMS_IOU; boxes are (x, y, w, h)."""
    order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] > NMS_SCORE]
    kept: list[int] = []
    for i in order:
        x, y, w, h = boxes[i]
        overlaps = False
        for j in kept:
            u, v, p, q = boxes[j]
            iw = min(x + w, u + p) - max(x, u)
            ih = min(y + h, v + q) - max(y, v)
            inter = iw * ih if iw > 0 and ih > 0 else 0.0
            union = w * h + p * q - inter
            if union > 0 and inter / union > NMS_IOU:
                overlaps = True
                break
        if not overlaps:
            kept.append(i)
    return kept


def postprocess(output: NDArray[np.float32], side: int, width: int, height: int) -> list[Finding]:
    """Findings of one picture from its model output (4 box rows + one row per class, by anchor)."""
    rows = output.T
    class_scores = rows[:, 4:]
    best = class_scores.max(axis=1)
    candidates = best >= CANDIDATE_SCORE
    if not candidates.any():
        return []
    classes = class_scores[candidates].argmax(axis=1)
    scores = best[candidates]
    cx, cy, w, h = (rows[candidates, k].astype(np.float64) * (side / INPUT_SIDE) for k in range(4))
    x = np.clip(cx - w / 2, 0, width)
    y = np.clip(cy - h / 2, 0, height)
    w = np.minimum(w, width - x)
    h = np.minimum(h, height - y)
    boxes = np.stack([x, y, w, h], axis=1)
    return [
        Finding(CLASSES[int(classes[i])], float(scores[i]), (int(x[i]), int(y[i]), int(w[i]), int(h[i])))
        for i in _suppress(boxes, scores)
    ]


class NudeNetDetector:
    """Loaded on first use (a fraction of a second) and shared by threads.

    Two ONNX Runtime sessions of the one model: one spreading each batch over the cores, for a
    screening that runs alone (an imagine's latency), and one on a single thread, for screenings
    that run while another does. Several parallel runs at once fight over the same cores: at 4
    concurrent batches the single-threaded session screened as fast, with 15 % less CPU per batch
    (a gateway screening every re-hosted picture, bench/remote_capacity.py)."""

    name = "nudenet"

    def __init__(self, batch_size: int = 4) -> None:
        self._batch_size = batch_size
        self._parallel: Any = None
        self._single: Any = None
        self._input = ""
        self._lock = threading.Lock()
        self._running = 0

    def load(self) -> None:
        with self._lock:
            if self._parallel is not None:
                return
            path = model_path()
            try:
                import onnxruntime
            except ImportError as exc:
                raise ModelMissing("image screening needs the safety extra: pip install 'pixelmill[safety]'") from exc

            def session(threads: int) -> Any:
                options = onnxruntime.SessionOptions()
                options.log_severity_level = 3  # warnings about unused initialisers are not news
                options.intra_op_num_threads = threads  # 0: one per core
                # Idle pool threads sleep rather than spin: the cores are the workers' too.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

            self._single = session(1)
            self._parallel = session(0)
            self._input = self._parallel.get_inputs()[0].name

    def detect(self, images: Sequence[Image.Image]) -> list[list[Finding]]:
        if not images:
            return []
        self.load()
        found: list[list[Finding]] = []
        for start in range(0, len(images), self._batch_size):
            batch = images[start : start + self._batch_size]
            prepared = [preprocess(im) for im in batch]
            blob = np.stack([b for b, _ in prepared])
            with self._lock:
                self._running += 1
                session = self._parallel if self._running == 1 else self._single
            try:
                outputs = session.run(None, {self._input: blob})[0]
            finally:
                with self._lock:
                    self._running -= 1
            found += [
                postprocess(outputs[k], side, im.width, im.height)
                for k, ((_, side), im) in enumerate(zip(prepared, batch, strict=True))
            ]
        return found
