"""Fair order between tenants inside a lane, queue positions, and the change events the store
reports inside its transactions. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from sqlalchemy import Connection, Engine, select, update

from pixelmill.auth.keys import KeyStore
from pixelmill.clock import ManualClock
from pixelmill.db.engine import make_engine
from pixelmill.db.migrate import upgrade
from pixelmill.db.schema import tasks as tasks_table
from pixelmill.queue.store import TaskStore
from pixelmill.tasks.actions import Lane
from pixelmill.tasks.record import Task, TaskResult
from pixelmill.tasks.status import TaskEvent, TaskStatus
from tests.helpers import sqlite_steps
from tests.queue.test_store import LANES, new_task


def tenant(db: Engine, clock: ManualClock, name: str) -> None:
    KeyStore(db, clock).create(tenant_id=name)


def test_a_big_batch_does_not_starve_a_later_tenant(store: TaskStore, db: Engine, clock: ManualClock) -> None:
    tenant(db, clock, "big")
    big = replace(new_task(lane=Lane.BATCH), tenant_id="big")
    store.insert_all([big] * 300, queue_limit=100_000)
    for _ in range(10):  # the big tenant's work is under way
        assert store.claim("w", LANES, 30) is not None
    clock.advance(1)
    small = [store.insert(new_task(lane=Lane.BATCH), queue_limit=100_000) for _ in range(5)]
    order = [store.claim("w", LANES, 30) for _ in range(12)]
    tenants = [t.tenant_id for t in order if t is not None]
    # The newcomer's 5 tasks alternate with the big batch instead of waiting behind 290 tasks.
    assert {t.id for t in order if t is not None} >= {t.id for t in small}
    assert tenants[:10].count("acme") == 5 and tenants[:10].count("big") == 5


def test_a_tenant_returning_to_an_idle_lane_is_not_put_behind_its_own_history(store: TaskStore, db: Engine, clock: ManualClock) -> None:
    tenant(db, clock, "big")
    big = replace(new_task(lane=Lane.BATCH), tenant_id="big")
    store.insert_all([big] * 50, queue_limit=1000)
    while (t := store.claim("w", LANES, 30)) is not None:
        store.complete(t.id, "w", TaskResult())
    # The lane is idle; now both queue a lot at once: they share the lane from the start.
    store.insert_all([big] * 20, queue_limit=1000)
    store.insert_all([new_task(lane=Lane.BATCH)] * 20, queue_limit=1000)
    first_ten = [store.claim("w", LANES, 30).tenant_id for _ in range(10)]  # type: ignore[union-attr]
    assert 4 <= first_ten.count("acme") <= 6


def test_priority_orders_a_tenants_own_work_and_never_jumps_another_tenant(store: TaskStore, db: Engine, clock: ManualClock) -> None:
    # A tenant that marks 200 tasks priority 10 does not push everyone else back (it once did:
    # claims sorted by the caller's priority before the fair order).
    tenant(db, clock, "loud")
    store.insert_all([replace(new_task(priority=10), tenant_id="loud")] * 200, queue_limit=1000)
    clock.advance(1)
    plain = store.insert_all([new_task()] * 3, queue_limit=1000)
    urgent = store.insert(new_task(priority=5), queue_limit=1000)
    order = [store.claim("w", LANES, 30) for _ in range(8)]
    mine = [t.id for t in order if t is not None and t.tenant_id == "acme"]
    assert len(mine) == 4  # the two tenants alternate
    assert mine == [urgent.id, *(t.id for t in plain)]  # and acme's own urgent task went first


def test_queue_position_follows_claim_order(store: TaskStore) -> None:
    tasks = store.insert_all([new_task()] * 4, queue_limit=100)
    vip = store.insert(new_task(priority=3), queue_limit=100)
    positions = {t.id: store.queue_position(store.get(t.id)) for t in [*tasks, vip]}  # type: ignore[arg-type]
    assert positions[vip.id] == 1
    assert [positions[t.id] for t in tasks] == [2, 3, 4, 5]
    claimed = store.claim("w", LANES, 30)
    assert claimed is not None and claimed.id == vip.id and store.queue_position(claimed) is None
    assert store.queue_position(store.get(tasks[3].id)) == 4  # type: ignore[arg-type]


def test_queue_positions_across_tenants_match_the_order_of_claims(store: TaskStore, db: Engine, clock: ManualClock) -> None:
    tenant(db, clock, "other")
    store.insert_all([replace(new_task(), tenant_id="other")] * 4, queue_limit=100)
    store.insert_all([new_task(), new_task(priority=2), new_task(), new_task(priority=7)], queue_limit=100)
    with db.connect() as conn:
        ids = [r.id for r in conn.execute(select(tasks_table.c.id))]
    predicted = sorted(ids, key=lambda i: store.queue_position(store.get(i)))  # type: ignore[arg-type]
    assert sorted(store.queue_position(store.get(i)) for i in ids) == list(range(1, 9))  # type: ignore[arg-type]
    claimed = [store.claim("w", LANES, 30).id for _ in range(8)]  # type: ignore[union-attr]
    assert claimed == predicted


def test_queue_positions_are_the_order_of_claims_through_a_mixed_queue(store: TaskStore, db: Engine, clock: ManualClock) -> None:
    # Three tenants submitting over time at mixed priorities, some work claimed on the way:
    # the positions of what waits are 1..n, in the order the workers then take it.
    rng = random.Random(20)
    for name in ("b", "c"):
        tenant(db, clock, name)
    for step in range(12):
        who = rng.choice(["acme", "b", "c"])
        store.insert_all([replace(new_task(priority=rng.choice([0, 0, 1, 5])), tenant_id=who)] * rng.randint(1, 3), queue_limit=1000)
        clock.advance(0.01)
        if step % 4 == 3:
            assert store.claim("w", LANES, 30) is not None
    with db.connect() as conn:
        ids = [r.id for r in conn.execute(select(tasks_table.c.id).where(tasks_table.c.status == TaskStatus.SUBMITTED.value))]
    positions = {i: store.queue_position(store.get(i)) for i in ids}  # type: ignore[arg-type]
    assert sorted(positions.values()) == list(range(1, len(ids) + 1))
    claimed = []
    while (task := store.claim("w", LANES, 30)) is not None:
        claimed.append(task.id)
    assert claimed == sorted(ids, key=positions.__getitem__)


def _position_steps(tmp_path: Path, waiting: int, finished: int) -> int:
    """SQLite VM steps (in hundreds) for 20 polls of the position of a lane's next task, behind
    which ``waiting`` tasks of its tenant wait, after ``finished`` finished ones."""
    db = make_engine(f"sqlite:///{tmp_path / f'position-{waiting}-{finished}.db'}")
    upgrade(db)
    clock = ManualClock()
    KeyStore(db, clock).create(tenant_id="acme")
    store = TaskStore(db, clock)
    if finished:
        store.insert_all([new_task()] * finished, queue_limit=finished)
        with db.begin() as conn:
            conn.execute(update(tasks_table).values(status=TaskStatus.SUCCESS.value, finish_time=0))
        clock.advance(60)  # ids are minted per millisecond of the clock
    head, *_ = store.insert_all([new_task()] * (waiting + 1), queue_limit=waiting + 1)

    def work() -> None:
        for _ in range(20):
            assert store.queue_position(head) == 1

    return sqlite_steps(db, work)


def test_a_poll_of_a_waiting_task_costs_the_same_however_long_the_queue_and_history(tmp_path: Path) -> None:
    # A waiting task's position counted its tenant's tasks over the lane's whole history, with
    # one OR of three ranges no index could walk: 7.6 ms a poll with 2,000 waiting.
    few = _position_steps(tmp_path, 10, 0)
    many = _position_steps(tmp_path, 2_000, 5_000)
    assert many < 2 * few, f"{few * 100:,} SQLite VM steps for 20 polls with 10 waiting, {many * 100:,} with 2,000 waiting and 5,000 done"


def test_changes_are_reported_inside_their_transaction(db: Engine, clock: ManualClock) -> None:
    KeyStore(db, clock).create(tenant_id="acme")
    seen: list[tuple[str, TaskEvent, TaskStatus, bool]] = []

    def observe(conn: Connection, task: Task, event: TaskEvent) -> None:
        seen.append((task.id, event, task.status, conn.in_transaction()))

    store = TaskStore(db, clock, on_change=[observe])
    a, b = store.insert_all([new_task(), new_task()], queue_limit=10)
    claimed = store.claim("w", LANES, 30)
    assert claimed is not None and claimed.id == a.id
    store.set_progress(a.id, "w", 50, 30)
    store.complete(a.id, "w", TaskResult())
    store.cancel(b.id, "acme")
    assert seen == [
        (a.id, TaskEvent.START, TaskStatus.IN_PROGRESS, True),
        (a.id, TaskEvent.PROGRESS, TaskStatus.IN_PROGRESS, True),
        (a.id, TaskEvent.COMPLETED, TaskStatus.SUCCESS, True),
        (b.id, TaskEvent.COMPLETED, TaskStatus.CANCEL, True),
    ]


def test_cancel_batch_ends_only_unfinished_tasks(store: TaskStore) -> None:
    tasks = store.insert_all([replace(new_task(lane=Lane.BATCH), batch_id="b1", batch_index=i) for i in range(3)], queue_limit=10)
    running = store.claim("w", LANES, 30)
    assert running is not None and store.complete(running.id, "w", TaskResult())
    assert store.cancel_batch("b1", "someone-else") == 0
    assert store.cancel_batch("b1", "acme") == 2
    assert store.batch_counts("b1") == {"SUCCESS": 1, "CANCEL": 2}
    assert [t.batch_index for t in store.batch_tasks("b1", "acme")] == [0, 1, 2]
    assert {t.id for t in tasks} == {t.id for t in store.batch_tasks("b1", "acme")}
