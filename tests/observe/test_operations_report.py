"""The operations report on both databases: lanes, live workers, failures and the time series
(integer buckets, refunds not counted as cost)."""

from __future__ import annotations

from itertools import pairwise

from sqlalchemy import Engine

from pixelmill.clock import ManualClock
from pixelmill.observe.operations import POINTS, OperationsReport
from pixelmill.queue.store import TaskStore
from pixelmill.tasks.actions import Lane
from pixelmill.tasks.record import TaskResult
from tests.queue.test_store import LANES, new_task


def test_lanes_workers_failures_and_series(store: TaskStore, db: Engine, clock: ManualClock) -> None:
    report = OperationsReport(db, clock)
    for lane in (Lane.INTERACTIVE, Lane.INTERACTIVE, Lane.INTERACTIVE, Lane.BATCH, Lane.BATCH):
        store.insert(new_task(lane), queue_limit=10)
    ok = store.claim("w1", LANES, 30)
    assert ok is not None
    clock.advance(1.5)
    assert store.complete(ok.id, "w1", TaskResult(image_keys=("k",)))
    doomed = store.claim("w1", LANES, 30)
    assert doomed is not None
    assert store.fail(doomed.id, "w1", "the engine broke", retryable=False, backoff_seconds=()) is not None
    running = store.claim("w2", LANES, 30)
    assert running is not None

    now = report.now()
    assert now["lanes"] == [{"lane": "batch", "waiting": 2, "running": 0}, {"lane": "interactive", "waiting": 0, "running": 1}]
    assert now["workers"] == [{"worker": "w2", "running": 1}]
    assert [(f["task_id"], f["reason"]) for f in now["failures"]] == [(doomed.id, "the engine broke")]

    series = report.series(hours=2)
    assert len(series) == POINTS and all(b["from"] - a["from"] == 300_000 for a, b in pairwise(series))
    last = series[-1]
    assert (last["finished"], last["success_rate"], last["cost"], last["mean_ms"]) == (2, 0.5, 1, 1500.0)
    assert all(p["finished"] == 0 and p["success_rate"] is None for p in series[:-1])
    clock.advance(31)  # the lease ran out: that worker is no longer live
    assert report.now()["workers"] == []
