"""Per-key balances and the append-only ledger.

- A charge is written in the transaction that accepts its task: the key's balance is locked and
  checked (``InsufficientQuota``, 402, rolls the whole acceptance back: nothing is queued), then
  lowered, and one ``charge`` row per costing task is appended.
- A refund follows every unsuccessful end (FAILURE, CANCEL: timeouts and MODAL expiry end so too).
  It is written by the task store's change observer, in the transaction of the status change
  itself, which only one writer can win; the unique (task_id, kind) index makes a second refund
  impossible even so.
- Unlimited keys (balance NULL) get the same rows: the ledger is also the usage record.

Invariant, for every limited key: balance == sum of its ledger amounts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, bindparam, case, func, insert, select, update

from pixelmill.clock import Clock
from pixelmill.db.engine import dialect_insert, read_tx, write_tx
from pixelmill.db.schema import api_keys, ledger, tasks
from pixelmill.exceptions import InsufficientQuota, ValidationError
from pixelmill.tasks.record import Task
from pixelmill.tasks.status import TaskEvent, TaskStatus

REFUNDED = frozenset({TaskStatus.FAILURE, TaskStatus.CANCEL})


DAY_MS = 86_400_000


@dataclass(frozen=True)
class UsageRow:
    key_id: str
    price_key: str
    tasks: int
    charged: int
    refunded: int

    @property
    def net(self) -> int:
        return self.charged - self.refunded


@dataclass(frozen=True)
class EngineCost:
    engine: str
    tasks: int
    run_seconds: float
    estimated_cost: float


# Built once: every accepted submit runs them.
_BALANCE = select(api_keys.c.balance).where(api_keys.c.id == bindparam("b_key")).with_for_update()
_SPEND = update(api_keys).where(api_keys.c.id == bindparam("b_key")).values(balance=api_keys.c.balance - bindparam("b_total"))
_CHARGE = insert(ledger)


class Ledger:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        self._insert = dialect_insert(engine)

    # --- inside other transactions -------------------------------------------------------------

    def charge(self, conn: Connection, key_id: str, accepted: Sequence[Task]) -> None:
        """Charge the tasks just inserted (call inside their transaction)."""
        costing = [t for t in accepted if t.quota > 0]
        total = sum(t.quota for t in costing)
        if not costing:
            return
        # The row lock makes concurrent submits of one key take turns (SQLite writes are serial).
        balance = conn.execute(_BALANCE, {"b_key": key_id}).scalar_one()
        if balance is not None:
            if balance < total:
                raise InsufficientQuota(
                    f"not enough quota: this request costs {total}, the key has {balance} left",
                    properties={"cost": total, "balance": int(balance)},
                )
            conn.execute(_SPEND, {"b_key": key_id, "b_total": total})
        now = self._clock.now_ms()
        conn.execute(_CHARGE, [
            {"key_id": key_id, "tenant_id": t.tenant_id, "task_id": t.id, "kind": "charge", "amount": -t.quota,
             "price_key": t.params.get("price_key"), "engine": t.engine, "created_at": now}
            for t in costing
        ])

    def on_change(self, conn: Connection, task: Task, event: TaskEvent) -> None:
        """The task store's observer: refund an unsuccessful end, once."""
        if event is TaskEvent.COMPLETED and task.status in REFUNDED:
            self._refund(conn, task)

    def _refund(self, conn: Connection, task: Task) -> None:
        charged = conn.execute(
            select(ledger.c.key_id, ledger.c.amount, ledger.c.price_key).where(ledger.c.task_id == task.id, ledger.c.kind == "charge")
        ).first()
        if charged is None:
            return  # it cost nothing
        refund = -int(charged.amount)
        added = conn.execute(
            self._insert(ledger)
            .values(key_id=charged.key_id, tenant_id=task.tenant_id, task_id=task.id, kind="refund", amount=refund,
                    price_key=charged.price_key, engine=task.engine, note=task.fail_reason, created_at=self._clock.now_ms())
            .on_conflict_do_nothing(index_elements=[ledger.c.task_id, ledger.c.kind])
        ).rowcount
        if added:
            conn.execute(
                update(api_keys).where(api_keys.c.id == charged.key_id, api_keys.c.balance.is_not(None))
                .values(balance=api_keys.c.balance + refund)
            )

    # --- operator actions -------------------------------------------------------------------

    def balance(self, key_id: str) -> int | None:
        with read_tx(self._engine) as conn:
            balance: int | None = conn.execute(select(api_keys.c.balance).where(api_keys.c.id == key_id)).scalar_one()
        return balance

    def credit(self, key_id: str, units: int, note: str = "") -> int:
        """Add units to a limited key (negative: take them away); returns the new balance."""
        with write_tx(self._engine) as conn:
            balance = self._locked_balance(conn, key_id)
            if balance is None:
                raise ValidationError("key", f"key {key_id} is unlimited; give it a balance first")
            if balance + units < 0:
                raise ValidationError("units", f"would leave a balance of {balance + units}")
            self._append_credit(conn, key_id, units, note)
            conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(balance=balance + units))
            return balance + units

    def set_balance(self, key_id: str, units: int | None, note: str = "") -> int | None:
        """Make a key limited with exactly ``units`` left, or unlimited (None). The ledger gets the
        difference as a credit, so it keeps summing to the balance."""
        if units is not None and units < 0:
            raise ValidationError("balance", f"must be 0 or more, got {units}")
        with write_tx(self._engine) as conn:
            self._locked_balance(conn, key_id)
            if units is not None:
                total = conn.execute(select(func.coalesce(func.sum(ledger.c.amount), 0)).where(ledger.c.key_id == key_id)).scalar_one()
                if units != total:
                    self._append_credit(conn, key_id, units - int(total), note or "balance set")
            conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(balance=units))
        return units

    def _locked_balance(self, conn: Connection, key_id: str) -> int | None:
        row = conn.execute(select(api_keys.c.balance).where(api_keys.c.id == key_id).with_for_update()).first()
        if row is None:
            raise ValidationError("key", f"no key with id {key_id}")
        return None if row.balance is None else int(row.balance)

    def _append_credit(self, conn: Connection, key_id: str, units: int, note: str) -> None:
        tenant = conn.execute(select(api_keys.c.tenant_id).where(api_keys.c.id == key_id)).scalar_one()
        conn.execute(insert(ledger).values(key_id=key_id, tenant_id=tenant, task_id=None, kind="credit", amount=units,
                                           note=note, created_at=self._clock.now_ms()))

    # --- reports ----------------------------------------------------------------------------

    def usage(self, since_ms: int, until_ms: int, *, key_id: str | None = None, tenant_id: str | None = None) -> list[UsageRow]:
        """Charged and refunded units per key and price key, for ledger rows in [since, until)."""
        l = ledger.c
        query = (
            select(
                l.key_id, l.price_key,
                func.sum(case((l.kind == "charge", 1), else_=0)),
                func.sum(case((l.kind == "charge", -l.amount), else_=0)),
                func.sum(case((l.kind == "refund", l.amount), else_=0)),
            )
            .where(l.kind != "credit", l.created_at >= since_ms, l.created_at < until_ms)
            .group_by(l.key_id, l.price_key)
            .order_by(l.key_id, l.price_key)
        )
        if key_id is not None:
            query = query.where(l.key_id == key_id)
        if tenant_id is not None:
            query = query.where(l.tenant_id == tenant_id)
        with read_tx(self._engine) as conn:
            return [UsageRow(k, p, int(n), int(c), int(r)) for k, p, n, c, r in conn.execute(query)]

    def by_day(self, since_ms: int, until_ms: int, *, key_id: str | None = None, tenant_id: str | None = None) -> list[tuple[int, int, int]]:
        """(day start, units charged, units refunded) for each day from ``since`` on that has
        ledger rows in [since, until), oldest first. Days are counted from ``since``."""
        l = ledger.c
        day = ((l.created_at - since_ms) // DAY_MS).label("day")  # integer division on every dialect
        query = (
            select(day, func.sum(case((l.kind == "charge", -l.amount), else_=0)), func.sum(case((l.kind == "refund", l.amount), else_=0)))
            .where(l.kind != "credit", l.created_at >= since_ms, l.created_at < until_ms)
            .group_by(day)
            .order_by(day)
        )
        if key_id is not None:
            query = query.where(l.key_id == key_id)
        if tenant_id is not None:
            query = query.where(l.tenant_id == tenant_id)
        with read_tx(self._engine) as conn:
            return [(since_ms + int(d) * DAY_MS, int(c or 0), int(r or 0)) for d, c, r in conn.execute(query)]

    def engine_costs(self, since_ms: int, until_ms: int, cost_per_second: dict[str, float], tenant_id: str | None = None) -> list[EngineCost]:
        """Engine run time of tasks finished in [since, until), priced by the operator's estimate
        of what a second of each engine costs (``PIXELMILL_ENGINE_COST_PER_SECOND``)."""
        t = tasks.c
        query = (
            select(t.engine, func.count(), func.coalesce(func.sum(t.finish_time - t.start_time), 0))
            .where(t.finish_time >= since_ms, t.finish_time < until_ms, t.start_time.is_not(None))
            .group_by(t.engine)
            .order_by(t.engine)
        )
        if tenant_id is not None:
            query = query.where(t.tenant_id == tenant_id)
        with read_tx(self._engine) as conn:
            rows = conn.execute(query).all()
        # float(): PostgreSQL sums bigint differences as numeric, which arrives as a Decimal.
        return [EngineCost(e, int(n), float(ms) / 1000, round(float(ms) / 1000 * cost_per_second.get(e, 0.0), 6)) for e, n, ms in rows]
