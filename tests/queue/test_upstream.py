"""What an upstream accepted for a task, and the schedule of parked tasks (``queue/upstream.py``),
on SQLite and PostgreSQL: a record outlives the attempt that made it, parking and handing back
move the lease, and a poller takes each due task once per poll."""

from __future__ import annotations

from sqlalchemy import Engine

from pixelmill.clock import ManualClock
from pixelmill.queue.store import TaskStore
from pixelmill.queue.upstream import PARKED, UpstreamTasks
from pixelmill.tasks.status import TaskStatus
from pixelmill.work.upstream import SOONEST_POLL_SECONDS, ends_at
from tests.queue.test_store import LANES, new_task

CADENCE = {"mj": 3000}


def _running(store: TaskStore) -> str:
    store.insert(new_task(), queue_limit=10)
    task = store.claim("w1", LANES, 30)
    assert task is not None
    return task.id


def test_a_record_outlives_its_attempt_until_the_upstream_task_ends(db: Engine, store: TaskStore, clock: ManualClock) -> None:
    upstream = UpstreamTasks(db, clock)
    task_id = _running(store)
    first = upstream.record(task_id, "mj", attempt=1)
    assert (first.submit_key, first.upstream_id) == (f"{task_id}-1", None)
    # A crash before the answer: the next attempt sends the same key.
    assert upstream.record(task_id, "mj", attempt=2).submit_key == f"{task_id}-1"
    first.accepted("U-1")
    again = upstream.record(task_id, "mj", attempt=2)
    assert (again.submit_key, again.upstream_id) == (f"{task_id}-1", "U-1")
    # Ended upstream without a result: the next attempt submits anew, under its own key.
    again.ended()
    third = upstream.record(task_id, "mj", attempt=3)
    assert (third.submit_key, third.upstream_id) == (f"{task_id}-3", None)


def test_a_parked_task_is_due_once_per_poll_and_handed_back_leaves_the_schedule(db: Engine, store: TaskStore, clock: ManualClock) -> None:
    upstream = UpstreamTasks(db, clock)
    task_id = _running(store)
    upstream.record(task_id, "mj", attempt=1).accepted("U-1")
    parked = store.hand_over(task_id, "w1", PARKED, 60, stages={"engine": 12.0},
                             within=lambda conn: upstream.schedule(conn, task_id, clock.now_ms() + 3000))
    assert parked is not None and parked.lease_owner == PARKED and parked.status is TaskStatus.IN_PROGRESS
    assert parked.stages == {"engine": 12.0}
    assert store.hand_over(task_id, "w1", "w2", 30) is None  # w1 no longer holds it
    assert upstream.due(CADENCE, 10) == []
    assert upstream.due({"other": 3000}, 10) == []
    clock.advance(3)
    due = upstream.due(CADENCE, 10)
    assert [(d.task_id, d.upstream_id, d.parked) for d in due] == [(task_id, "U-1", True)]
    assert upstream.due(CADENCE, 10) == []  # taken for this poll: another poller does not ask too
    clock.advance(3)
    assert len(upstream.due(CADENCE, 10)) == 1
    back = store.hand_over(task_id, PARKED, "w2", 30, within=lambda conn: upstream.schedule(conn, task_id, None))
    assert back is not None and back.lease_owner == "w2"
    clock.advance(60)
    assert upstream.due(CADENCE, 10) == []


def test_a_parked_task_that_ended_here_leaves_the_schedule(db: Engine, store: TaskStore, clock: ManualClock) -> None:
    upstream = UpstreamTasks(db, clock)
    task_id = _running(store)
    upstream.record(task_id, "mj", attempt=1).accepted("U-1")
    store.hand_over(task_id, "w1", PARKED, 60, within=lambda conn: upstream.schedule(conn, task_id, clock.now_ms()))
    assert store.cancel(task_id, "acme") is not None
    due = upstream.due(CADENCE, 10)
    assert [(d.parked, d.status) for d in due] == [(False, TaskStatus.CANCEL)]  # the poller cancels it upstream, once
    clock.advance(10)
    assert upstream.due(CADENCE, 10) == []


def test_a_poll_moves_sooner_only_while_the_task_is_parked(db: Engine, store: TaskStore, clock: ManualClock) -> None:
    upstream = UpstreamTasks(db, clock)
    task_id = _running(store)
    upstream.record(task_id, "mj", attempt=1).accepted("U-1")
    store.hand_over(task_id, "w1", PARKED, 60, within=lambda conn: upstream.schedule(conn, task_id, clock.now_ms() + 3000))
    upstream.poll_sooner({task_id: clock.now_ms() + 5000})  # later than planned: no change
    clock.advance(1)
    assert upstream.due(CADENCE, 10) == []
    upstream.poll_sooner({task_id: clock.now_ms() + 500})
    clock.advance(0.5)
    assert [d.task_id for d in upstream.due(CADENCE, 10)] == [task_id]
    store.hand_over(task_id, PARKED, "w2", 30, within=lambda conn: upstream.schedule(conn, task_id, None))
    upstream.poll_sooner({task_id: clock.now_ms()})  # a worker holds it now: it stays off the schedule
    clock.advance(60)
    assert upstream.due(CADENCE, 10) == []


def test_the_next_look_comes_when_the_progress_says_the_task_ends() -> None:
    cadence = 3000
    # 40 % in the 2 s since the last look: the 40 % left take 2 s, before the next poll.
    assert ends_at(10_000, 0.6, (8_000, 0.2), cadence) == 12_000
    # 30 % in 2 s: 2.7 s left, about when the next poll comes anyway.
    assert ends_at(10_000, 0.6, (8_000, 0.3), cadence) is None
    # 90 % after 4.5 s from the submit: 0.5 s left.
    assert ends_at(10_000, 0.9, (5_500, 0.0), cadence) == 10_500
    # Nearly done: never sooner than SOONEST_POLL_SECONDS.
    assert ends_at(10_000, 0.99, (5_000, 0.0), cadence) == 10_000 + int(SOONEST_POLL_SECONDS * 1000)
    # No pace to go by: progress that did not move, or went back.
    assert ends_at(10_000, 0.5, (9_000, 0.5), cadence) is None
    assert ends_at(10_000, 0.4, (9_000, 0.5), cadence) is None
