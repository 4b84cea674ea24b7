"""The health report on SQLite and PostgreSQL: each of seed 004's figures turns to warn when its
threshold is crossed, and stuck tasks are listed with their age."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import Engine, update

from pixelmill.clock import ManualClock
from pixelmill.db.engine import write_tx
from pixelmill.db.schema import tasks
from pixelmill.exceptions import BannedPrompt
from pixelmill.observe.health import HealthReport, Thresholds
from pixelmill.observe.refusals import RefusalLog
from pixelmill.queue.store import TaskStore
from pixelmill.tasks.record import TaskResult
from tests.queue.test_store import LANES, new_task


def figures(report: dict) -> dict[str, tuple[object, str]]:  # type: ignore[type-arg]
    return {f["name"]: (f["value"], f["verdict"]) for f in report["figures"]}


def run(store: TaskStore, clock: ManualClock, *, succeed: bool, seconds: float = 1.0) -> None:
    task = store.claim("w", LANES, 30)
    assert task is not None
    clock.advance(seconds)
    if succeed:
        store.complete(task.id, "w", TaskResult())
    else:
        store.fail(task.id, "w", "broken", retryable=False, backoff_seconds=(1.0,))


def test_an_idle_service_is_ok_with_nothing_to_measure(db: Engine, clock: ManualClock, store: TaskStore) -> None:
    report = HealthReport(db, clock, Thresholds()).build()
    assert report["verdict"] == "ok"
    assert figures(report) == {"success_rate": (None, "ok"), "avg_completion_seconds": (None, "ok"),
                               "tasks_in_modal": (0.0, "ok"), "banned_prompt_share": (None, "ok")}


def test_each_figure_turns_to_warn_past_its_threshold(db: Engine, clock: ManualClock, store: TaskStore) -> None:
    health = HealthReport(db, clock, Thresholds(stuck_after_seconds=60))
    for i in range(20):
        store.insert(new_task(), queue_limit=100)
        run(store, clock, succeed=True, seconds=2)
    good = health.build()
    assert good["verdict"] == "ok"
    assert figures(good)["success_rate"] == (1.0, "ok") and figures(good)["avg_completion_seconds"] == (2.0, "ok")

    store.insert(new_task(), queue_limit=100)
    run(store, clock, succeed=False)  # 20 of 21: 95.2 %, still above 95 %
    assert figures(health.build())["success_rate"][1] == "ok"
    store.insert(new_task(), queue_limit=100)
    run(store, clock, succeed=False)  # 20 of 22: 90.9 %
    assert figures(health.build())["success_rate"] == (0.9091, "warn")

    store.insert(new_task(), queue_limit=100)
    run(store, clock, succeed=True, seconds=200)  # one slow task does not lift the average over 90 s
    assert figures(health.build())["avg_completion_seconds"][1] == "ok"
    for _ in range(4):  # (20 x 2 + 200 + 4 x 600) / 25 = 105.6 s
        store.insert(new_task(), queue_limit=100)
        run(store, clock, succeed=True, seconds=600)
    assert figures(health.build())["avg_completion_seconds"] == (105.6, "warn")

    waiting = store.insert_all([new_task()] * 6, queue_limit=100)
    with write_tx(db) as conn:  # MODAL is entered by inpaint / custom zoom (issue 6)
        conn.execute(update(tasks).where(tasks.c.id.in_([t.id for t in waiting])).values(status="MODAL"))
    assert figures(health.build())["tasks_in_modal"] == (6.0, "warn")

    refusals = RefusalLog(db, clock)
    for _ in range(3):
        refusals.record(None, "acme", BannedPrompt("prompt: banned term"))
    banned = figures(health.build())["banned_prompt_share"]
    assert banned[1] == "warn" and 0.05 < float(banned[0]) < 0.2  # type: ignore[arg-type]


def test_old_figures_leave_the_window_and_stuck_tasks_are_listed(db: Engine, clock: ManualClock, store: TaskStore) -> None:
    health = HealthReport(db, clock, Thresholds(stuck_after_seconds=60))
    store.insert(new_task(), queue_limit=10)
    run(store, clock, succeed=False)
    assert health.build()["verdict"] == "warn"
    stuck = store.insert(replace(new_task(), priority=1), queue_limit=10)
    clock.advance(3601)
    report = health.build()
    assert figures(report)["success_rate"] == (None, "ok")  # the failure is more than an hour old
    assert report["stuck"]["total"] == 1
    [oldest] = report["stuck"]["oldest"]
    assert (oldest["task_id"], oldest["status"], oldest["age_seconds"]) == (stuck.id, "SUBMITTED", 3601.0)
