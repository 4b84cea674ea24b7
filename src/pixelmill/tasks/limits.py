"""Per-key submission caps, kept in the database so that every API process sees the same count.

Per minute (the window is configurable): one row per (key, window), incremented with a single conditional upsert
(``INSERT ... ON CONFLICT DO UPDATE ... WHERE count + n <= limit RETURNING``), so two processes
can never both take the last slot. Concurrent tasks are checked inside the transaction that
inserts them (``TaskStore.insert_all``).
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, bindparam, delete

from pixelmill.clock import Clock
from pixelmill.db.engine import dialect_insert, write_tx
from pixelmill.db.schema import rate_windows
from pixelmill.exceptions import RateLimited


class RateLimiter:
    def __init__(self, engine: Engine, clock: Clock, window_seconds: float = 60) -> None:
        self._engine = engine
        self._clock = clock
        self._window_ms = int(window_seconds * 1000)
        insert = dialect_insert(engine)
        taking = insert(rate_windows).values(key_id=bindparam("b_key"), window=bindparam("b_window"), count=bindparam("b_n"))
        #: Built once: every submit of a capped key runs it.
        self._take = taking.on_conflict_do_update(
            index_elements=[rate_windows.c.key_id, rate_windows.c.window],
            set_={"count": rate_windows.c.count + taking.excluded.count},
            where=rate_windows.c.count + taking.excluded.count <= bindparam("b_cap"),
        ).returning(rate_windows.c.count)

    def take_in(self, conn: Connection, key_id: str, per_minute: int | None, n: int = 1) -> None:
        """Count ``n`` submissions against this window, or raise ``RateLimited`` (None: no cap).
        Runs in the transaction that accepts the tasks, so only accepted submissions count."""
        if per_minute is None:
            return
        now = self._clock.now_ms()
        window = now // self._window_ms
        retry_after = max(1, -(-((window + 1) * self._window_ms - now) // 1000))
        if n > per_minute:
            raise RateLimited(f"{n} tasks at once exceed this key's cap of {per_minute} per window", retry_after=retry_after)
        taken = conn.execute(self._take, {"b_key": key_id, "b_window": window, "b_n": n, "b_cap": per_minute}).first()
        if taken is None:
            raise RateLimited(
                f"this key's cap of {per_minute} submissions per window is reached; retry in {retry_after}s",
                retry_after=retry_after,
            )

    def purge(self) -> int:
        """Drop windows that can no longer matter."""
        with write_tx(self._engine) as conn:
            old = self._clock.now_ms() // self._window_ms - 1
            return conn.execute(delete(rate_windows).where(rate_windows.c.window < old)).rowcount
