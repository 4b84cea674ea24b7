"""The webhook outbox on SQLite and PostgreSQL: events written with their change, in order per
task, progress superseded by newer events, retries on a schedule, then given up."""

from __future__ import annotations

import json
from dataclasses import replace

from sqlalchemy import Engine

from pixelmill.auth.keys import KeyStore
from pixelmill.clock import ManualClock
from pixelmill.notify.outbox import Outbox, WebhookTarget
from pixelmill.queue.signals import ChangeFeed, Signals, Wakeup
from pixelmill.queue.store import TaskStore
from pixelmill.tasks.record import NewTask, TaskResult
from tests.queue.test_store import LANES, new_task

HOOK = WebhookTarget("https://hooks.example.com/in", ("start", "progress", "completed"), "https://img.example.com")


def stores(db: Engine, clock: ManualClock, retry: tuple[float, ...] = (5, 60)) -> tuple[TaskStore, Outbox]:
    KeyStore(db, clock).create(tenant_id="acme")
    outbox = Outbox(db, clock, retry)
    return TaskStore(db, clock, on_change=[outbox.record]), outbox


def hooked(events: tuple[str, ...] = HOOK.events) -> NewTask:
    return replace(new_task(), webhook=replace(HOOK, events=events).to_json())


def test_events_follow_the_filter_and_carry_the_task(db: Engine, clock: ManualClock) -> None:
    store, outbox = stores(db, clock)
    task = store.insert(hooked(("completed",)), queue_limit=10)
    clock.advance(0.001)  # submitted later (in one millisecond two submits have no order)
    store.insert(new_task(), queue_limit=10)  # no webhook: no events
    claimed = store.claim("w", LANES, 30)
    assert claimed is not None
    store.set_progress(task.id, "w", 40, 30)
    store.complete(task.id, "w", TaskResult(image_keys=("ab/cd/" + "e" * 64 + ".png",)))
    [only] = outbox.claim_due("d", 10, 30)
    payload = json.loads(only.payload)
    assert (only.event, payload["type"], payload["sequence"]) == ("completed", "task.completed", 1)
    assert payload["data"]["task_id"] == task.id and payload["data"]["status"] == "SUCCESS"
    assert payload["data"]["image_urls"] == ["https://img.example.com/files/ab/cd/" + "e" * 64 + ".png"]


def test_one_event_per_task_at_a_time_in_order(db: Engine, clock: ManualClock) -> None:
    store, outbox = stores(db, clock)
    a = store.insert(hooked(("start", "completed")), queue_limit=10)
    store.claim("w", LANES, 30)
    store.complete(a.id, "w", TaskResult())
    first = outbox.claim_due("d", 10, 30)
    assert [d.event for d in first] == ["start"]  # completed waits for start
    assert outbox.claim_due("d2", 10, 30) == []  # start is locked by d, completed still waits
    outbox.delivered(first[0], "d")
    assert [d.event for d in outbox.claim_due("d", 10, 30)] == ["completed"]


def test_a_waiting_progress_event_is_superseded_by_a_newer_one(db: Engine, clock: ManualClock) -> None:
    store, outbox = stores(db, clock)
    a = store.insert(hooked(), queue_limit=10)
    store.claim("w", LANES, 30)
    start = outbox.claim_due("d", 10, 30)  # being sent: it stays
    for pct in (20, 40, 60):
        store.set_progress(a.id, "w", pct, 30)
    store.complete(a.id, "w", TaskResult())
    outbox.delivered(start[0], "d")
    states = [(e.event, e.state) for e in outbox.events_of(a.id)]
    assert states == [("start", "delivered"), ("progress", "superseded"), ("progress", "superseded"),
                      ("progress", "superseded"), ("completed", "pending")]


def test_failed_deliveries_retry_on_schedule_then_give_up(db: Engine, clock: ManualClock) -> None:
    store, outbox = stores(db, clock, retry=(5, 60))
    a = store.insert(hooked(("start", "completed")), queue_limit=10)
    store.claim("w", LANES, 30)
    store.complete(a.id, "w", TaskResult())
    [d] = outbox.claim_due("d", 10, 30)
    assert outbox.failed(d, "d", "answered HTTP 500") == "pending"
    assert outbox.claim_due("d", 10, 30) == []  # backing off, and completed stays behind it
    clock.advance(5.6)
    [d] = outbox.claim_due("d", 10, 30)
    assert (d.event, d.attempts) == ("start", 1)
    assert outbox.failed(d, "d", "answered HTTP 500") == "pending"
    clock.advance(66.1)
    [d] = outbox.claim_due("d", 10, 30)
    assert outbox.failed(d, "d", "timed out") == "failed"  # 3 attempts: the schedule is used up
    [nxt] = outbox.claim_due("d", 10, 30)  # a given-up event no longer holds the next one back
    assert nxt.event == "completed"
    [start, _] = outbox.events_of(a.id)
    assert (start.state, start.attempts, start.last_error) == ("failed", 3, "timed out")


def test_a_dead_senders_lock_runs_out(db: Engine, clock: ManualClock) -> None:
    store, outbox = stores(db, clock)
    store.insert(hooked(("start",)), queue_limit=10)
    store.claim("w", LANES, 30)
    [d] = outbox.claim_due("dead", 10, lock_seconds=15)
    assert outbox.claim_due("live", 10, 15) == []
    clock.advance(16)
    [again] = outbox.claim_due("live", 10, 15)
    assert again.id == d.id
    outbox.delivered(d, "dead")  # the dead sender's late word changes nothing
    assert outbox.events_of(again.task_id)[0].state == "pending"


def test_settled_events_are_purged_after_the_retention(db: Engine, clock: ManualClock) -> None:
    store, outbox = stores(db, clock)
    a = store.insert(hooked(("start", "completed")), queue_limit=10)
    store.claim("w", LANES, 30)
    store.complete(a.id, "w", TaskResult())
    [start] = outbox.claim_due("d", 10, 30)
    outbox.delivered(start, "d")
    clock.advance(3600)
    assert outbox.purge(retention_seconds=7200) == 0
    clock.advance(3601)
    assert outbox.purge(retention_seconds=7200) == 1  # the delivered one; completed is still pending
    assert [(e.event, e.state) for e in outbox.events_of(a.id)] == [("completed", "pending")]


def test_the_deliverer_is_woken_only_once_the_event_is_committed(db: Engine, clock: ManualClock) -> None:
    KeyStore(db, clock).create(tenant_id="acme")
    woken: list[int] = []

    class Deliverer(Wakeup):
        def notify(self) -> None:
            woken.append(len(outbox.claim_due("d", 10, 30)))

    signals = Signals(False, ChangeFeed(1.0, 10), Wakeup(), Deliverer())
    outbox = Outbox(db, clock, (5,), on_recorded=signals.webhook_due)
    store = TaskStore(db, clock, on_change=[outbox.record])
    store.insert(hooked(("start",)), queue_limit=10)
    store.claim("w", LANES, 30)
    # When the wake-up ran, a claim from another connection already saw the event.
    assert woken == [1]
