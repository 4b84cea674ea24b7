"""Property: whatever sequence of submits, successes, failures, cancels, retries, timeouts and
credits happens, a limited key's balance equals its ledger's sum, never goes negative, and every
task is refunded at most once, exactly when it ended unsuccessfully."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from pixelmill.auth.keys import KeyStore
from pixelmill.billing.ledger import Ledger
from pixelmill.clock import ManualClock
from pixelmill.db.engine import make_engine
from pixelmill.db.migrate import upgrade
from pixelmill.db.schema import ledger as ledger_table
from pixelmill.exceptions import InsufficientQuota, ValidationError
from pixelmill.queue.store import TaskStore
from pixelmill.tasks.record import TaskResult
from pixelmill.tasks.status import TaskStatus
from tests.queue.test_store import LANES, new_task

OPS = st.one_of(
    st.tuples(st.just("submit"), st.integers(1, 3), st.integers(0, 4)),
    st.tuples(st.just("run"), st.sampled_from(["succeed", "retryable", "fatal"]), st.just(0)),
    st.tuples(st.just("cancel"), st.integers(0, 50), st.just(0)),
    st.tuples(st.just("timeout"), st.just(0), st.just(0)),
    st.tuples(st.just("credit"), st.integers(-5, 10), st.just(0)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(start=st.integers(0, 20), ops=st.lists(OPS, max_size=40))
def test_the_ledger_always_sums_to_the_balance(start: int, ops: list[tuple[str, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = make_engine(f"sqlite:///{Path(tmp) / 'p.db'}")
        upgrade(db)
        clock = ManualClock()
        key, _ = KeyStore(db, clock).create(tenant_id="acme")
        ledger = Ledger(db, clock)
        store = TaskStore(db, clock, on_change=[ledger.on_change])
        ledger.set_balance(key.id, start)
        ids: list[str] = []
        for op, a, b in ops:
            if op == "submit":
                news = [replace(new_task(max_attempts=2), quota=b, api_key_id=key.id, params={})] * a
                try:
                    ids += [t.id for t in store.insert_all(news, queue_limit=1000, on_insert=lambda c, ts: ledger.charge(c, key.id, ts))]
                except InsufficientQuota:
                    pass
            elif op == "run" and (task := store.claim("w", LANES, 30)) is not None:
                if a == "succeed":
                    store.complete(task.id, "w", TaskResult())
                else:
                    store.fail(task.id, "w", a, retryable=a == "retryable", backoff_seconds=(0.0,))
            elif op == "cancel" and ids:
                store.cancel(ids[a % len(ids)], "acme")
            elif op == "timeout":
                clock.advance(7200)
                store.expire_stale(3600, 600)
            elif op == "credit":
                try:
                    ledger.credit(key.id, a)
                except ValidationError:
                    pass
            with db.connect() as conn:
                total = conn.execute(select(func.coalesce(func.sum(ledger_table.c.amount), 0))).scalar_one()
            balance = ledger.balance(key.id)
            assert balance is not None and balance == total and balance >= 0
        with db.connect() as conn:
            rows = conn.execute(select(ledger_table.c.task_id, ledger_table.c.kind, ledger_table.c.amount).where(ledger_table.c.task_id.is_not(None))).all()
        charges = {t: -amount for t, kind, amount in rows if kind == "charge"}
        refunds = [(t, amount) for t, kind, amount in rows if kind == "refund"]
        assert len({t for t, _ in refunds}) == len(refunds)  # at most one refund per task
        for task_id in ids:
            task = store.get(task_id)
            assert task is not None
            unsuccessful = task.status in (TaskStatus.FAILURE, TaskStatus.CANCEL)
            expected = [(task_id, charges[task_id])] if unsuccessful and charges.get(task_id) else []
            assert [r for r in refunds if r[0] == task_id] == expected
            assert task.quota == (0 if unsuccessful else charges.get(task_id, 0))
        db.dispose()
