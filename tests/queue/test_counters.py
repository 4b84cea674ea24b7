"""The counters a submit reads instead of counting rows (migration 0013): a lane's waiting tasks
and last fair-order place, a key's queued and running tasks. Triggers keep them in the
transaction of every change, whoever makes it; here every kind of change a task goes through is
made, and after each one the counters must equal a fresh count. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, delete, func, select, text, update
from sqlalchemy.exc import DBAPIError

from pixelmill.auth.keys import KeyStore
from pixelmill.clock import ManualClock
from pixelmill.db.engine import make_engine
from pixelmill.db.migrate import alembic_config, upgrade
from pixelmill.db.schema import ACTIVE_VALUES, QUEUED_ROWS, QUEUED_VALUES, key_active, lane_state, tasks
from pixelmill.exceptions import QueueFull, RateLimited
from pixelmill.queue.store import TaskStore
from pixelmill.tasks.actions import Lane
from pixelmill.tasks.record import NewTask, TaskResult
from pixelmill.tasks.status import ACTIVE, QUEUED, TaskStatus
from tests.helpers import sqlite_steps, wait_for
from tests.queue.test_store import LANES, new_task, roomy


def counted(db: Engine) -> tuple[dict[str, tuple[int, int]], dict[tuple[str, str], int]]:
    """(lane → (waiting, last place), (key, lane) → active) from the counters."""
    with db.connect() as conn:
        lanes = {
            lane: (int(waiting), int(last))
            for lane, waiting, last in conn.execute(
                select(lane_state.c.lane, func.sum(lane_state.c.waiting), func.max(lane_state.c.last_seq)).group_by(lane_state.c.lane)
            )
        }
        keys = {(k, lane): int(n) for k, lane, n in conn.execute(select(key_active)) if n}
    return lanes, keys


def recounted(db: Engine) -> tuple[dict[str, tuple[int, int]], dict[tuple[str, str], int]]:
    """The same figures counted from the tasks themselves."""
    with db.connect() as conn:
        lanes = {
            lane: (int(waiting or 0), int(last))
            for lane, waiting, last in conn.execute(
                select(tasks.c.lane, func.sum(QUEUED_ROWS.cast(type_=tasks.c.progress.type)), func.max(tasks.c.fair_seq))
                .group_by(tasks.c.lane)
            )
        }
        keys = {
            (k, lane): int(n)
            for k, lane, n in conn.execute(
                select(tasks.c.api_key_id, tasks.c.lane, func.count())
                .where(tasks.c.api_key_id.is_not(None), tasks.c.status.in_(ACTIVE_VALUES))
                .group_by(tasks.c.api_key_id, tasks.c.lane)
            )
        }
    return lanes, keys


def assert_in_step(db: Engine) -> None:
    lanes, keys = counted(db)
    want_lanes, want_keys = recounted(db)
    assert keys == want_keys
    # A lane's last place never goes back (a claim swaps places, it makes none): at least the
    # highest place a task holds now.
    assert {lane: waiting for lane, (waiting, _) in lanes.items() if waiting or lane in want_lanes} == {
        lane: waiting for lane, (waiting, _) in want_lanes.items()
    }
    for lane, (_, last) in want_lanes.items():
        assert lanes[lane][1] >= last


@pytest.fixture
def key(db: Engine, clock: ManualClock) -> str:
    created, _ = KeyStore(db, clock).create(tenant_id="acme")
    return created.id


def keyed(key: str, **changes: object) -> NewTask:
    return replace(new_task(), api_key_id=key, **changes)  # type: ignore[arg-type]  # NewTask fields by name


def test_the_status_sets_written_into_the_triggers_are_the_ones_the_code_uses() -> None:
    # Migration 0013 writes the sets out; changing tasks/status.py needs a migration that
    # replaces its triggers, and this test says so.
    assert set(QUEUED_VALUES) == {s.value for s in QUEUED}
    assert set(ACTIVE_VALUES) == {s.value for s in ACTIVE}


def test_every_change_a_task_goes_through_keeps_the_counters_in_step(store: TaskStore, db: Engine, clock: ManualClock, key: str) -> None:
    # At head: a later migration that rebuilds ``tasks`` (SQLite's batch mode copies the table)
    # and loses the triggers fails here.
    store.insert_all([keyed(key)] * 5, queue_limit=100)
    store.insert_all([keyed(key, lane=Lane.BATCH)] * 3, queue_limit=100)
    store.insert(new_task(), queue_limit=100)  # no key (an evaluation's or a batch's own task)
    store.insert(keyed(key, cached=TaskResult()), queue_limit=100)  # a cache hit, born finished
    modal = store.insert(keyed(key, modal=True), queue_limit=100)
    assert_in_step(db)

    first = store.claim("w", LANES, 30)
    second = store.claim("w", LANES, 30)
    third = store.claim("w", LANES, 30)
    assert first and second and third
    assert_in_step(db)
    store.complete(first.id, "w", TaskResult())
    store.fail(second.id, "w", "flaky", retryable=True, backoff_seconds=[5])  # back to NOT_START
    store.fail(third.id, "w", "broken", retryable=False, backoff_seconds=[5])
    assert_in_step(db)

    assert store.submit_modal(modal.id, "acme", prompt="p", final_prompt="p", params={}, limits=roomy)
    queued = store.insert(keyed(key), queue_limit=100)
    assert store.cancel(queued.id, "acme")
    assert_in_step(db)

    running = store.claim("w2", LANES, 1)
    assert running is not None
    clock.advance(5)
    store.requeue_expired()  # its lease ran out: queued again
    assert_in_step(db)

    clock.advance(3600)
    store.expire_stale(queue_timeout_seconds=60, run_timeout_seconds=60)
    assert_in_step(db)
    with db.begin() as conn:  # retention deletes finished tasks; an operator may delete any
        conn.execute(delete(tasks).where(tasks.c.id.in_([first.id, modal.id])))
        conn.execute(update(tasks).where(tasks.c.lane == Lane.BATCH.value).values(lane=Lane.INTERACTIVE.value))
    assert_in_step(db)


def test_limits_read_from_the_counters_refuse_exactly_at_the_limit(store: TaskStore, db: Engine, clock: ManualClock, key: str) -> None:
    store.insert_all([keyed(key)] * 3, queue_limit=4)
    with pytest.raises(QueueFull, match="3 waiting"):
        store.insert_all([keyed(key)] * 2, queue_limit=4)
    store.insert(keyed(key), queue_limit=4)  # the refused submit left nothing behind
    claimed = store.claim("w", LANES, 30)
    assert claimed is not None
    store.insert(keyed(key), queue_limit=4)  # the claimed task left the queue
    # Running tasks still count against the key's cap (4 queued + 1 running).
    with pytest.raises(RateLimited, match="5 tasks queued or running"):
        store.insert_all([keyed(key)], queue_limit=100, max_concurrent=5)
    store.complete(claimed.id, "w", TaskResult())
    store.insert_all([keyed(key)], queue_limit=100, max_concurrent=5)
    assert_in_step(db)


def test_counters_start_from_the_rows_there_are_and_survive_truncation(db: Engine, store: TaskStore, key: str) -> None:
    store.insert_all([keyed(key)] * 3, queue_limit=100)
    store.insert_all([keyed(key, lane=Lane.BATCH)] * 2, queue_limit=100)
    claimed = store.claim("w", LANES, 30)
    assert claimed is not None
    # A database that has tasks when it is upgraded: the migration counts them once.
    command.downgrade(alembic_config(db), "0012")
    command.upgrade(alembic_config(db), "head")
    assert counted(db)[1] == {(key, "interactive"): 3, (key, "batch"): 2}
    assert_in_step(db)
    if db.dialect.name == "postgresql":
        with db.begin() as conn:  # TRUNCATE fires no row triggers; a statement trigger empties them
            conn.execute(text("TRUNCATE tasks CASCADE"))
        assert counted(db) == ({}, {})
        store.insert(keyed(key), queue_limit=1)  # an empty queue again
    assert_in_step(db)


def _vm_steps(tmp_path: Path, finished: int) -> int:
    """SQLite virtual-machine steps (in hundreds) for 20 submits and 20 claims in a lane that holds
    ``finished`` finished tasks: what the database does for them, free of timing."""
    db = make_engine(f"sqlite:///{tmp_path / f'history-{finished}.db'}")
    upgrade(db)
    clock = ManualClock()
    created, _ = KeyStore(db, clock).create(tenant_id="acme")
    store = TaskStore(db, clock)
    history = store.insert_all([keyed(created.id)] * finished, queue_limit=finished + 1) if finished else []
    with db.begin() as conn:  # finished long ago, as retention keeps them for weeks
        conn.execute(update(tasks).values(status=TaskStatus.SUCCESS.value, finish_time=0))
    assert len(history) == finished

    def work() -> None:
        for _ in range(20):
            store.insert_all([keyed(created.id)], queue_limit=1000, max_concurrent=1000)
        for _ in range(20):
            assert store.claim("w", LANES, 30) is not None

    return sqlite_steps(db, work)


def test_submits_and_claims_do_not_walk_the_lanes_history(tmp_path: Path) -> None:
    # Once, every submit counted its lane's waiting tasks and its key's running ones, and found
    # the lane's first waiting task, by walking every task the lane ever had: 9 ms a submit with
    # 20,000 finished tasks, and growing (bench/history.py).
    empty, busy = _vm_steps(tmp_path, 0), _vm_steps(tmp_path, 5_000)
    assert busy < 2 * empty, f"{empty * 100:,} SQLite VM steps with no history, {busy * 100:,} with 5,000 finished tasks"


def _claim_steps(tmp_path: Path, waiting: int) -> int:
    """SQLite VM steps (in hundreds) for 20 claims in a lane where one tenant has ``waiting`` tasks."""
    db = make_engine(f"sqlite:///{tmp_path / f'waiting-{waiting}.db'}")
    upgrade(db)
    clock = ManualClock()
    created, _ = KeyStore(db, clock).create(tenant_id="acme")
    store = TaskStore(db, clock)
    store.insert_all([keyed(created.id)] * waiting, queue_limit=waiting)

    def work() -> None:
        for _ in range(20):
            assert store.claim("w", LANES, 30) is not None

    return sqlite_steps(db, work)


def test_a_claim_does_not_sort_the_tenants_whole_queue(tmp_path: Path) -> None:
    # The tenant's best task (priority first, then first submitted) was one ORDER BY that no
    # index could walk, so every claim sorted all the tenant's waiting tasks: a 10,000-task
    # batch made each claim of it cost milliseconds under the write lock.
    few, many = _claim_steps(tmp_path, 25), _claim_steps(tmp_path, 2_500)
    assert many < 2 * few, f"{few * 100:,} SQLite VM steps for 20 claims among 25 waiting tasks, {many * 100:,} among 2,500"


def _waiting_on_a_lock(pg: Engine) -> int:
    with pg.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )).scalar_one())


@pytest.mark.postgres
def test_a_capped_submit_and_a_refund_lock_their_rows_in_one_order(pg: Engine, clock: ManualClock) -> None:
    # A refund changes the key's counter (its trigger), then its balance. A submit under a
    # concurrency cap once locked the balance's row first, then the counter: each waited for
    # the other, and PostgreSQL broke the deadlock by failing one of them.
    created, _ = KeyStore(pg, clock).create(tenant_id="acme")
    store = TaskStore(pg, clock)
    store.insert_all([keyed(created.id)], queue_limit=100)
    running = store.claim("w", LANES, 30)
    assert running is not None
    outcome: dict[str, Any] = {}

    def submit() -> None:
        try:
            outcome["task"] = store.insert_all([keyed(created.id)], queue_limit=100, max_concurrent=5)[0]
        except DBAPIError as exc:  # the deadlock's victim, reported below
            outcome["error"] = exc

    with pg.connect() as refund, refund.begin():
        refund.execute(text("SET LOCAL lock_timeout = '10s'"))
        refund.execute(update(tasks).where(tasks.c.id == running.id).values(status=TaskStatus.FAILURE.value, lease_owner=None, lease_expires_at=None))
        submitter = threading.Thread(target=submit)
        submitter.start()
        wait_for(lambda: _waiting_on_a_lock(pg), timeout=10, what="the submit to wait for the refund's counter row")
        # The refund's second row: free, because the waiting submit holds nothing of the key's.
        refund.execute(text("SELECT balance FROM api_keys WHERE id = :k FOR UPDATE"), {"k": created.id})
    submitter.join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["task"].status is TaskStatus.SUBMITTED
    assert_in_step(pg)


@pytest.mark.postgres
def test_a_claim_runs_the_best_task_its_tenant_has_free(pg: Engine, clock: ManualClock) -> None:
    # The tenant's best task is found by its best priority, then by time. When another claimer
    # holds every task at that priority, the claim takes the best of the rest (priority 5), not
    # whatever holds the head place (priority 0).
    KeyStore(pg, clock).create(tenant_id="acme")
    store = TaskStore(pg, clock)
    head = store.insert(new_task(priority=0), queue_limit=100)
    held = store.insert(new_task(priority=10), queue_limit=100)
    better = store.insert(new_task(priority=5), queue_limit=100)
    with pg.connect() as other, other.begin():
        other.execute(select(tasks.c.id).where(tasks.c.id == held.id).with_for_update())
        claimed = store.claim("w", LANES, 30)
    assert claimed is not None and claimed.id == better.id, (claimed, head.id)
    after = store.claim("w", LANES, 30)
    assert after is not None and after.id == held.id  # free again: it runs next


@pytest.mark.postgres
def test_every_counter_trigger_takes_key_active_before_lane_state(pg: Engine) -> None:
    # Row triggers fire in name order (tasks_key_* before tasks_lane_*); the insert trigger is
    # one function and must take the rows in the same order (migration 0014), or an insert and
    # a cancel in one lane could each hold the row the other waits for.
    with pg.connect() as conn:
        triggers = set(conn.execute(text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'tasks'::regclass AND NOT tgisinternal")).scalars())
        inserted = conn.execute(text("SELECT pg_get_functiondef('pixelmill_tasks_inserted'::regproc)")).scalar_one()
    assert {"tasks_counters_insert", "tasks_key_update", "tasks_key_delete", "tasks_lane_update", "tasks_lane_delete"} <= triggers
    assert sorted(triggers).index("tasks_key_update") < sorted(triggers).index("tasks_lane_update")
    assert inserted.index("INSERT INTO key_active") < inserted.index("INSERT INTO lane_state")
