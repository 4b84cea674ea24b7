"""Upstream accounts: the shared state of remote engines' pools (issue 21).

Every process that submits upstream reads and writes the same rows, so the pool's limits hold
for the deployment, not per process:

- **Room.** An account's upstream tasks are the ``upstream_tasks`` rows sent to it whose upstream
  task has not ended and whose task is still live. A reservation counts them and records its
  own choice in one transaction, with the engine's account rows locked (PostgreSQL), so two
  processes cannot both take an account's last place.
- **Submit windows.** ``submit_per_minute`` is a fixed one-minute window and ``daily_limit`` a UTC
  day, both counted in the account's row when it is chosen.
- **Health.** Refused submits in a row, an auth failure or a ban disable an account with the
  reason (``disabled_by`` "health"); a probe that gets an answer re-enables it. An admin's
  disable stays until an admin enables it.

The selection rule itself is the engine's (``engines/remote/pool.py``): it is given the
accounts with room, inside the reserving transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, and_, func, select, update

from pixelmill.clock import Clock
from pixelmill.db.engine import dialect_insert, read_tx, write_tx
from pixelmill.db.schema import tasks, upstream_accounts, upstream_tasks
from pixelmill.tasks.status import ACTIVE, TaskStatus

DAY_MS = 86_400_000
MINUTE_MS = 60_000
#: How soon a task retries an account that is full of running tasks: a place frees whenever
#: one of them ends, which nobody here is told about in another process.
FULL_RETRY_SECONDS = 1.0
#: Longest a task waits in the queue for a daily limit before it looks again.
LIMIT_RETRY_SECONDS = 300.0
#: Tasks whose upstream task takes a place on its account.
_LIVE = [s.value for s in ACTIVE | {TaskStatus.MODAL}]


@dataclass(frozen=True)
class Offer:
    """An account a task may go to, with its configured limits."""

    name: str
    weight: float
    capacity: int | None
    per_minute: int | None
    daily: int | None


@dataclass(frozen=True)
class Slot:
    """An account with room, as the selection rule sees it."""

    name: str
    weight: float
    in_flight: int
    capacity: int | None
    last_pick: int


@dataclass(frozen=True)
class Reserved:
    """A reservation's outcome: the account, or why none (``retry_after``: seconds until one of
    the full accounts may have room; None when no account could take the task at all)."""

    account: str | None
    retry_after: float | None = None
    why: str = ""


@dataclass(frozen=True)
class AccountState:
    engine: str
    name: str
    disabled_reason: str | None
    disabled_by: str | None
    disabled_at: int | None
    in_flight: int
    failures: int
    submits: int
    refused: int
    succeeded: int
    failed: int
    latency_ms: int
    window_count: int
    day_count: int

    @property
    def enabled(self) -> bool:
        return self.disabled_reason is None

    @property
    def success_rate(self) -> float | None:
        ended = self.succeeded + self.failed
        return self.succeeded / ended if ended else None

    @property
    def mean_latency_ms(self) -> float | None:
        return self.latency_ms / self.succeeded if self.succeeded else None


def live_upstream_tasks(conn: Connection, *where: ColumnElement[bool]) -> dict[tuple[str, str], int]:
    """(engine, account) → the upstream tasks that take a place there: sent to it, not ended
    upstream, and their task still live (a task that ended here frees its place at once)."""
    rows = conn.execute(
        select(upstream_tasks.c.engine, upstream_tasks.c.account, func.count())
        .join(tasks, tasks.c.id == upstream_tasks.c.task_id)
        .where(upstream_tasks.c.account.is_not(None), upstream_tasks.c.done_at.is_(None), tasks.c.status.in_(_LIVE), *where)
        .group_by(upstream_tasks.c.engine, upstream_tasks.c.account)
    ).all()
    return {(engine, account): n for engine, account, n in rows}


class UpstreamAccounts:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        self._insert = dialect_insert(engine)

    def _rows(self, conn: Connection, engine: str, names: Sequence[str], *, lock: bool) -> dict[str, Any]:
        """The engine's account rows by name, made when missing (a new account in the config)."""

        def read() -> dict[str, Any]:
            query = select(upstream_accounts).where(upstream_accounts.c.engine == engine, upstream_accounts.c.name.in_(list(names)))
            query = query.order_by(upstream_accounts.c.name)  # one lock order for every process
            return {row.name: row for row in conn.execute(query.with_for_update() if lock else query)}

        rows = read()
        missing = [name for name in names if name not in rows]
        if missing:
            conn.execute(
                self._insert(upstream_accounts).values([{"engine": engine, "name": name} for name in missing])
                .on_conflict_do_nothing(index_elements=["engine", "name"])
            )
            rows = read()
        return rows

    @staticmethod
    def _in_flight(conn: Connection, engine: str, names: Sequence[str], *, besides: str | None = None) -> dict[str, int]:
        where = [upstream_tasks.c.engine == engine, upstream_tasks.c.account.in_(list(names))]
        if besides is not None:
            where.append(upstream_tasks.c.task_id != besides)
        return {account: n for (_, account), n in live_upstream_tasks(conn, *where).items()}

    # --- the engine's side: choosing an account, and what it answered ---------------------------

    def reserve(self, task_id: str, engine: str, offers: Sequence[Offer], pick: Callable[[Sequence[Slot]], str]) -> Reserved:
        """Choose among ``offers`` (by ``pick``) an account with room for ``task_id`` and record the
        choice on the task's upstream record, in one transaction."""
        now = self._clock.now_ms()
        day = now // DAY_MS
        with write_tx(self._engine) as conn:
            # The task's record first, as every other writer of it locks it before its account:
            # two holders of one task (a lease lost meanwhile) cannot then lock in a cycle.
            conn.execute(select(upstream_tasks.c.task_id).where(upstream_tasks.c.task_id == task_id).with_for_update())
            rows = self._rows(conn, engine, [o.name for o in offers], lock=True)
            counts = self._in_flight(conn, engine, [o.name for o in offers], besides=task_id)
            slots: list[Slot] = []
            waits: list[float] = []
            why: list[str] = []
            for offer in offers:
                row = rows[offer.name]
                n = counts.get(offer.name, 0)
                if row.disabled_reason is not None:
                    why.append(f"{offer.name}: disabled ({row.disabled_reason})")
                elif offer.capacity is not None and n >= offer.capacity:
                    why.append(f"{offer.name}: {n} of {offer.capacity} upstream tasks")
                    waits.append(FULL_RETRY_SECONDS)
                elif offer.per_minute is not None and now - row.window_start < MINUTE_MS and row.window_count >= offer.per_minute:
                    why.append(f"{offer.name}: {offer.per_minute} submits this minute")
                    waits.append((row.window_start + MINUTE_MS - now) / 1000)
                elif offer.daily is not None and row.day == day and row.day_count >= offer.daily:
                    why.append(f"{offer.name}: daily limit of {offer.daily} reached")
                    waits.append(min(LIMIT_RETRY_SECONDS, ((day + 1) * DAY_MS - now) / 1000))
                else:
                    slots.append(Slot(offer.name, offer.weight, n, offer.capacity, row.last_pick))
            if not slots:
                return Reserved(None, retry_after=min(waits) if waits else None, why="; ".join(why))
            chosen = pick(slots)
            row = rows[chosen]
            fresh_window = now - row.window_start >= MINUTE_MS
            conn.execute(
                update(upstream_accounts)
                .where(upstream_accounts.c.engine == engine, upstream_accounts.c.name == chosen)
                .values(
                    window_start=now if fresh_window else upstream_accounts.c.window_start,
                    window_count=1 if fresh_window else upstream_accounts.c.window_count + 1,
                    day=day,
                    day_count=upstream_accounts.c.day_count + 1 if row.day == day else 1,
                    last_pick=now,
                )
            )
            conn.execute(update(upstream_tasks).where(upstream_tasks.c.task_id == task_id).values(account=chosen))
        return Reserved(chosen)

    def refused(self, task_id: str, engine: str, account: str, reason: str, *, disable: bool, after: int, busy: bool = False) -> bool:
        """The account refused ``task_id``'s submit (it did not take the task, so the task's
        record forgets it). Disabled when ``disable`` (an auth failure, a ban: until an admin
        enables it) or after ``after`` refusals in a row (until a probe finds it answering); a
        ``busy`` refusal (rate limited, queue full) is no mark on its health. True when this
        disabled it."""
        now = self._clock.now_ms()
        with write_tx(self._engine) as conn:
            conn.execute(
                update(upstream_tasks).where(upstream_tasks.c.task_id == task_id, upstream_tasks.c.account == account).values(account=None)
            )
            self._rows(conn, engine, [account], lock=False)
            row = conn.execute(
                update(upstream_accounts)
                .where(upstream_accounts.c.engine == engine, upstream_accounts.c.name == account)
                .values(failures=upstream_accounts.c.failures + (0 if busy else 1), refused=upstream_accounts.c.refused + 1)
                .returning(upstream_accounts.c.failures, upstream_accounts.c.disabled_reason)
            ).one()
            if row.disabled_reason is None and (disable or (not busy and row.failures >= after)):
                # A ban or a refused key is not cured by the upstream answering a probe.
                why = reason if disable else f"{row.failures} submits refused in a row; the last: {reason}"
                self._disable(conn, engine, account, why[:500], "account" if disable else "health", now)
                return True
        return False

    def accepted(self, conn: Connection, engine: str, account: str) -> None:
        """The account took a submit: it is healthy (in the transaction that records the task)."""
        conn.execute(
            update(upstream_accounts)
            .where(upstream_accounts.c.engine == engine, upstream_accounts.c.name == account)
            .values(failures=0, submits=upstream_accounts.c.submits + 1)
        )

    def ended(self, conn: Connection, engine: str, account: str, *, ok: bool, latency_ms: int) -> None:
        """An upstream task on the account ended: with a result (``ok``) or without."""
        values = {"succeeded": upstream_accounts.c.succeeded + 1, "latency_ms": upstream_accounts.c.latency_ms + max(0, latency_ms)} if ok \
            else {"failed": upstream_accounts.c.failed + 1}
        conn.execute(
            update(upstream_accounts).where(upstream_accounts.c.engine == engine, upstream_accounts.c.name == account).values(**values)
        )

    # --- health: probes and admins ---------------------------------------------------------------

    @staticmethod
    def _disable(conn: Connection, engine: str, account: str, reason: str, by: str, now: int) -> None:
        conn.execute(
            update(upstream_accounts)
            .where(upstream_accounts.c.engine == engine, upstream_accounts.c.name == account)
            .values(disabled_reason=reason, disabled_by=by, disabled_at=now, probed_at=now)
        )

    def to_probe(self, engine: str, names: Sequence[str], every_seconds: float) -> list[str]:
        """Accounts disabled by their health whose last probe is older than ``every_seconds``."""
        before = self._clock.now_ms() - int(every_seconds * 1000)
        with read_tx(self._engine) as conn:
            return list(conn.execute(
                select(upstream_accounts.c.name).where(
                    upstream_accounts.c.engine == engine, upstream_accounts.c.name.in_(list(names)),
                    upstream_accounts.c.disabled_by == "health", upstream_accounts.c.probed_at < before,
                )
            ).scalars())

    def probed(self, engine: str, account: str, problem: str | None) -> bool:
        """A probe of an account its health disabled: None (it answers again) re-enables it.
        True when this re-enabled it."""
        now = self._clock.now_ms()
        health = and_(upstream_accounts.c.engine == engine, upstream_accounts.c.name == account, upstream_accounts.c.disabled_by == "health")
        with write_tx(self._engine) as conn:
            if problem is not None:
                conn.execute(update(upstream_accounts).where(health).values(probed_at=now))
                return False
            done = conn.execute(
                update(upstream_accounts).where(health)
                .values(disabled_reason=None, disabled_by=None, disabled_at=None, probed_at=now, failures=0)
            )
            return done.rowcount > 0

    def set_enabled(
        self, engine: str, account: str, enabled: bool, reason: str = "", *, within: Callable[[Connection], None] | None = None
    ) -> None:
        """An admin enables the account, or disables it until an admin enables it again; ``within``
        runs in the same transaction (the audit log's entry)."""
        now = self._clock.now_ms()
        with write_tx(self._engine) as conn:
            if within is not None:
                within(conn)
            self._rows(conn, engine, [account], lock=False)
            if enabled:
                conn.execute(
                    update(upstream_accounts)
                    .where(upstream_accounts.c.engine == engine, upstream_accounts.c.name == account)
                    .values(disabled_reason=None, disabled_by=None, disabled_at=None, failures=0)
                )
            else:
                self._disable(conn, engine, account, reason or "disabled by an admin", "admin", now)

    def states(self, engine: str, names: Sequence[str]) -> list[AccountState]:
        """The accounts as they stand, in the order of ``names``."""
        with read_tx(self._engine) as conn:
            rows = {row.name: row for row in conn.execute(
                select(upstream_accounts).where(upstream_accounts.c.engine == engine, upstream_accounts.c.name.in_(list(names)))
            )}
            counts = self._in_flight(conn, engine, names)
        today = self._clock.now_ms() // DAY_MS
        minute_ago = self._clock.now_ms() - MINUTE_MS
        states = []
        for name in names:
            row = rows.get(name)
            if row is None:
                states.append(AccountState(engine, name, None, None, None, counts.get(name, 0), 0, 0, 0, 0, 0, 0, 0, 0))
                continue
            states.append(AccountState(
                engine, name, row.disabled_reason, row.disabled_by, row.disabled_at, counts.get(name, 0), row.failures,
                row.submits, row.refused, row.succeeded, row.failed, row.latency_ms,
                row.window_count if row.window_start > minute_ago else 0, row.day_count if row.day == today else 0,
            ))
        return states
