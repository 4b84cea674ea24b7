"""The ledger on SQLite and PostgreSQL: charges in the accepting transaction, refunds exactly once
(even when two writers race to finalise a task), balances that always equal the ledger's sum."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from sqlalchemy import Engine, func, select

from pixelmill.auth.keys import KeyStore
from pixelmill.billing.ledger import Ledger
from pixelmill.clock import ManualClock
from pixelmill.db.schema import ledger as ledger_table
from pixelmill.db.schema import tasks as tasks_table
from pixelmill.exceptions import InsufficientQuota
from pixelmill.queue.store import TaskStore
from pixelmill.tasks.record import Task, TaskResult
from pixelmill.tasks.status import TaskStatus
from tests.queue.test_store import LANES, new_task


@pytest.fixture
def billed(db: Engine, clock: ManualClock) -> tuple[TaskStore, Ledger, str]:
    key, _ = KeyStore(db, clock).create(tenant_id="acme")
    ledger = Ledger(db, clock)
    return TaskStore(db, clock, on_change=[ledger.on_change]), ledger, key.id


def submit(store: TaskStore, ledger: Ledger, key_id: str, n: int = 1, quota: int = 1, max_attempts: int = 3) -> list[Task]:
    news = [replace(new_task(max_attempts=max_attempts), quota=quota, api_key_id=key_id, params={"price_key": "midjourney@imagine"})] * n
    return store.insert_all(news, queue_limit=10_000, on_insert=lambda conn, ts: ledger.charge(conn, key_id, ts))


def ledger_sum(db: Engine, key_id: str) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.sum(ledger_table.c.amount), 0)).where(ledger_table.c.key_id == key_id)).scalar_one())


def refunds(db: Engine) -> dict[str, int]:
    with db.connect() as conn:
        rows = conn.execute(select(ledger_table.c.task_id, func.count()).where(ledger_table.c.kind == "refund").group_by(ledger_table.c.task_id))
        return {t: int(n) for t, n in rows}


def test_not_enough_quota_queues_and_charges_nothing(db: Engine, billed: tuple[TaskStore, Ledger, str]) -> None:
    store, ledger, key_id = billed
    ledger.set_balance(key_id, 2)
    with pytest.raises(InsufficientQuota) as err:
        submit(store, ledger, key_id, n=3)
    assert err.value.http_status == 402 and err.value.description == "not enough quota: this request costs 3, the key has 2 left"
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tasks_table)).scalar_one() == 0
    assert ledger.balance(key_id) == 2 == ledger_sum(db, key_id)
    [task] = submit(store, ledger, key_id, n=1, quota=2)
    assert (task.quota, ledger.balance(key_id)) == (2, 0)


def test_a_failure_is_refunded_once_when_two_writers_race_to_finalise_it(
    db: Engine, clock: ManualClock, billed: tuple[TaskStore, Ledger, str]
) -> None:
    store, ledger, key_id = billed
    ledger.set_balance(key_id, 100)
    tasks = submit(store, ledger, key_id, n=20, max_attempts=1)
    claimed = [store.claim("w1", LANES, lease_seconds=1) for _ in tasks]
    assert all(c is not None for c in claimed) and ledger.balance(key_id) == 80
    clock.advance(2)  # every lease has run out: the sweeper may fail them, as may their worker
    start = threading.Barrier(3)

    def worker() -> None:
        start.wait()
        for t in tasks:
            store.fail(t.id, "w1", "engine crashed", retryable=True, backoff_seconds=(1.0,))

    def sweeper() -> None:
        start.wait()
        for _ in tasks:
            store.requeue_expired()

    def caller() -> None:
        start.wait()
        for t in reversed(tasks):
            store.cancel(t.id, "acme")

    threads = [threading.Thread(target=f) for f in (worker, sweeper, caller)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    finals = [store.get(t.id) for t in tasks]
    assert all(f is not None and f.status in (TaskStatus.FAILURE, TaskStatus.CANCEL) and f.quota == 0 for f in finals)
    assert refunds(db) == {t.id: 1 for t in tasks}
    assert ledger.balance(key_id) == 100 == ledger_sum(db, key_id)


def test_success_keeps_the_charge_and_unlimited_keys_are_recorded(db: Engine, billed: tuple[TaskStore, Ledger, str]) -> None:
    store, ledger, key_id = billed
    assert ledger.balance(key_id) is None  # unlimited
    [a, _b] = submit(store, ledger, key_id, n=2, quota=3)
    for _ in range(2):
        t = store.claim("w", LANES, 30)
        assert t is not None
        if t.id == a.id:
            store.complete(t.id, "w", TaskResult())
        else:
            store.fail(t.id, "w", "bad input", retryable=False, backoff_seconds=(1.0,))
    [row] = ledger.usage(0, 10**15, key_id=key_id)
    assert (row.price_key, row.tasks, row.charged, row.refunded, row.net) == ("midjourney@imagine", 2, 6, 3, 3)
    assert ledger.balance(key_id) is None


def test_set_balance_and_credit_keep_the_ledger_summing_to_the_balance(db: Engine, billed: tuple[TaskStore, Ledger, str]) -> None:
    store, ledger, key_id = billed
    submit(store, ledger, key_id, n=4)  # used while unlimited
    assert ledger.set_balance(key_id, 10) == 10 and ledger_sum(db, key_id) == 10
    assert ledger.credit(key_id, 5) == 15 and ledger_sum(db, key_id) == 15
    with pytest.raises(Exception, match="would leave a balance of -1"):
        ledger.credit(key_id, -16)
    ledger.set_balance(key_id, None)
    with pytest.raises(Exception, match="is unlimited"):
        ledger.credit(key_id, 1)


def test_engine_costs_report_run_time_on_both_databases(billed: tuple[TaskStore, Ledger, str], clock: ManualClock) -> None:
    # PostgreSQL sums bigint differences as numeric (Decimal): the report once failed there with
    # "unsupported operand type(s) for *: 'decimal.Decimal' and 'float'" as soon as a task finished.
    store, ledger, key_id = billed
    submit(store, ledger, key_id, n=1)
    t = store.claim("w", LANES, 30)
    assert t is not None
    clock.advance(2.5)
    store.complete(t.id, "w", TaskResult())
    [cost] = ledger.engine_costs(0, 10**15, {t.engine: 0.002})
    assert (cost.engine, cost.tasks, cost.run_seconds, cost.estimated_cost) == (t.engine, 1, 2.5, 0.005)
    assert type(cost.run_seconds) is float


def test_units_per_day_count_days_from_the_period_start(billed: tuple[TaskStore, Ledger, str], clock: ManualClock) -> None:
    store, ledger, key_id = billed
    start = clock.now_ms()
    submit(store, ledger, key_id, n=2, quota=3)  # day 0: 6 charged
    t = store.claim("w", LANES, 30)
    assert t is not None
    store.fail(t.id, "w", "bad input", retryable=False, backoff_seconds=(1.0,))  # day 0: 3 refunded
    clock.advance(2 * 86_400)
    submit(store, ledger, key_id, n=1, quota=2)  # day 2: 2 charged
    assert ledger.by_day(start, clock.now_ms() + 1, key_id=key_id) == [(start, 6, 3), (start + 2 * 86_400_000, 2, 0)]
    assert ledger.by_day(start, clock.now_ms() + 1, tenant_id="nobody") == []
