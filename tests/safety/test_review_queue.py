"""The review queue's claims, bulk decisions, filters and blurred thumbnails (``safety/review.py``),
on SQLite and PostgreSQL: a claimed review is decided by its reviewer only until the claim runs
out, and a bulk decision says what became of each."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import Engine

from pixelmill.clock import ManualClock
from pixelmill.exceptions import Conflict
from pixelmill.observe.audit import AuditLog
from pixelmill.queue.store import TaskStore
from pixelmill.safety.detector import Finding
from pixelmill.safety.review import CLAIM_SECONDS, THUMB_EDGE, ReviewQueue
from pixelmill.tasks.record import Task, TaskResult
from tests.queue.test_store import LANES, new_task


def _held(store: TaskStore, queue: ReviewQueue, labels: tuple[str, str]) -> tuple[Task, list[str]]:
    """A SUCCESS task whose images 1 and 2 wait for review (held for ``labels``)."""
    store.insert(new_task(), queue_limit=100)
    task = store.claim("w1", LANES, 30)
    assert task is not None
    screening = tuple({"index": i, "decision": "review", "reasons": []} for i in (1, 2))
    picture = Image.fromarray(np.random.default_rng(7).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    ids = [queue.hold(task, i, picture, "procedural", [Finding(label, 0.9)]) for i, label in zip((1, 2), labels, strict=True)]
    assert store.complete(task.id, "w1", TaskResult(image_keys=("", "", "k3", "k4"), width=64, height=64, screening=screening))
    return task, ids


def _publish(task: Task, index: int, image: Image.Image, model: str) -> str:
    return f"published-{task.id}-{index}"


@pytest.fixture
def queue(db: Engine, store: TaskStore, clock: ManualClock) -> ReviewQueue:
    return ReviewQueue(db, clock, store, AuditLog(db, clock))


def test_a_claimed_review_is_decided_by_its_reviewer_only_until_the_claim_runs_out(
    queue: ReviewQueue, store: TaskStore, clock: ManualClock,
) -> None:
    _, (first, second) = _held(store, queue, ("FACE_FEMALE", "FACE_MALE"))
    claimed = queue.claim(first, "alice")
    assert (claimed["claimed_by"], claimed["claimed_until"]) == ("alice", clock.now_ms() + int(CLAIM_SECONDS * 1000))
    with pytest.raises(Conflict, match="claimed by alice for 300 s more"):
        queue.claim(first, "bob")
    with pytest.raises(Conflict, match="claimed by alice"):
        queue.reject(first, "bob")
    queue.claim(first, "alice")  # claiming again extends it
    clock.advance(CLAIM_SECONDS + 1)
    assert queue.claim(first, "bob")["claimed_by"] == "bob"  # alice's ran out
    queue.release(first, "alice")  # not alice's any more: nothing happens
    assert queue.get(first)["claimed_by"] == "bob"
    queue.release(first, "bob")
    assert queue.get(first)["claimed_by"] is None
    decided = queue.reject(second, "carol")
    assert decided.result is not None and queue.get(second)["state"] == "rejected"
    with pytest.raises(Conflict, match="already rejected"):
        queue.claim(second, "alice")


def test_a_bulk_decision_says_what_became_of_each(queue: ReviewQueue, store: TaskStore) -> None:
    task, (first, second) = _held(store, queue, ("FACE_FEMALE", "FACE_MALE"))
    queue.claim(second, "bob")
    outcomes = queue.decide_many([first, second, "nope-1"], "approve", "alice", _publish, "fine")
    assert [(o["id"], o["state"]) for o in outcomes] == [(first, "approved"), (second, None), ("nope-1", None)]
    assert "claimed by bob" in str(outcomes[1]["error"]) and outcomes[2]["error"] == "no review nope-1"
    after = store.get(task.id)
    assert after is not None and after.result is not None and after.result.image_keys[0] == f"published-{task.id}-1"


def test_filters_by_reason_and_age(queue: ReviewQueue, store: TaskStore, clock: ManualClock) -> None:
    _, (face_f, face_m) = _held(store, queue, ("FACE_FEMALE", "FACE_MALE"))
    clock.advance(120)
    _, (late_f, _) = _held(store, queue, ("FACE_FEMALE", "BELLY"))
    assert [r["id"] for r in queue.list(reason="FACE_FEMALE")] == [face_f, late_f]
    assert [r["id"] for r in queue.list(reason="FACE_FEMALE", limit=1)] == [face_f]
    assert [r["id"] for r in queue.list(older_than_ms=60_000)] == [face_f, face_m]
    assert queue.list(reason="FEET") == []


def test_the_thumbnail_is_small_grey_and_blurred(queue: ReviewQueue, store: TaskStore) -> None:
    _, (first, _) = _held(store, queue, ("FACE_FEMALE", "FACE_MALE"))
    with Image.open(io.BytesIO(queue.thumbnail(first))) as im:
        assert im.format == "WEBP" and max(im.size) == THUMB_EDGE and im.size == (256, 192)
        grey = np.asarray(im.convert("RGB"), dtype=np.int16)
    assert (grey.max(axis=2) - grey.min(axis=2)).max() <= 3  # no colour left (lossy WebP: within a step or two)
    # Noise blurred away: neighbouring pixels differ by little (the held picture is random noise).
    held = np.asarray(Image.open(io.BytesIO(queue.image(first))).convert("L").resize(im.size), dtype=np.int16)
    assert np.abs(np.diff(grey[..., 0], axis=1)).mean() < np.abs(np.diff(held, axis=1)).mean() / 10
