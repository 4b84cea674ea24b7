"""Time, in one replaceable place. Stores and workers take a ``Clock`` so tests can move time.

Leases, schedules, timeouts and every stored time compare instants written by different hosts,
so with PostgreSQL they are the database's time (``DatabaseClock``): a host whose own clock is a
minute off neither requeues live tasks nor runs scheduled ones early. The offset to the
database is measured now and then and added to the local clock, so reading the time costs no
query. SQLite lives on one host: its time is that host's.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Protocol

import structlog
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

log = structlog.get_logger("pixelmill.clock")


class Clock(Protocol):
    def now_ms(self) -> int: ...


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class SystemClock:
    def __init__(self, skew_seconds: float = 0.0) -> None:
        #: A deliberate error (fault injection: a host whose clock is off).
        self._skew_ms = int(skew_seconds * 1000)

    def now_ms(self) -> int:
        return wall_ms() + self._skew_ms


class DatabaseClock:
    """The database's time: the local clock plus the offset to PostgreSQL's ``clock_timestamp()``,
    measured once when made and then every ``refresh_seconds`` by a thread of its own (half the
    round trip is the error bound). Reading the time never touches the database: callers are
    often inside a transaction, holding a pooled connection. If the database cannot be asked, the
    last offset stays."""

    def __init__(self, engine: Engine, local: Clock | None = None, refresh_seconds: float = 30.0) -> None:
        self._engine = engine
        self._local = local or SystemClock()
        self._refresh = refresh_seconds
        self._offset_ms = 0
        self.sync()
        threading.Thread(target=_keep_in_sync, args=(weakref.ref(self),), name="pixelmill-clock", daemon=True).start()

    @property
    def offset_ms(self) -> int:
        return self._offset_ms

    def now_ms(self) -> int:
        return self._local.now_ms() + self._offset_ms

    def sync(self) -> bool:
        """Measure the offset now; False when the database did not answer."""
        try:
            with self._engine.connect() as conn:
                before = self._local.now_ms()
                db_ms = conn.execute(text("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")).scalar_one()
                after = self._local.now_ms()
        except SQLAlchemyError as exc:
            log.warning("database clock not read; keeping the last offset", offset_ms=self._offset_ms, error=str(exc)[:200])
            return False
        offset = int(db_ms) - (before + after) // 2
        if abs(offset - self._offset_ms) > 1000:
            log.warning("this host's clock differs from the database's; using the database's", offset_ms=offset)
        self._offset_ms = offset
        return True


def _keep_in_sync(ref: weakref.ReferenceType[DatabaseClock]) -> None:
    """Measure the clock's offset every ``refresh_seconds`` (within a second after a failure),
    until the clock is gone: the thread holds it only weakly, so a dropped runtime takes its
    thread with it."""
    while (clock := ref()) is not None:
        pause = clock._refresh if clock.sync() else min(clock._refresh, 1.0)
        del clock
        time.sleep(pause)


def clock_for(engine: Engine, skew_seconds: float = 0.0) -> Clock:
    """The clock every store of a process uses: the database's with PostgreSQL, else this host's."""
    local = SystemClock(skew_seconds)
    return DatabaseClock(engine, local) if engine.dialect.name == "postgresql" else local


class ManualClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += int(seconds * 1000)


