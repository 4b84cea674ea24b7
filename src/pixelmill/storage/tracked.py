"""Storage that registers every file it writes (``stored_files``), for retention.

``put`` first records the key as written now, in a transaction of its own, then writes the bytes.
Retention deletes a file under a lock on that row, and only when it is old and nobody points at
it (queue/retention.py). So a ``put`` racing a delete of the same content either comes first (the
row is now young: no delete) or waits on the lock until the delete is done (the row is gone: the
bytes are written again), so a task never ends up pointing at a file deleted under it. The one
narrow exception is a cache hit, which reuses an old file without writing it: it checks first that
the file exists, which leaves only the instant of a delete of that file (an old one, pointed at by
nobody) as a window.
"""

from __future__ import annotations

from sqlalchemy import Engine

from pixelmill.clock import Clock
from pixelmill.db.engine import dialect_insert, write_tx
from pixelmill.db.schema import stored_files
from pixelmill.storage.base import Storage, StoredObject, content_key


class TrackedStorage(Storage):
    def __init__(self, inner: Storage, engine: Engine, clock: Clock) -> None:
        self.inner = inner
        self._engine = engine
        self._clock = clock
        self._insert = dialect_insert(engine)

    def put(self, data: bytes, ext: str) -> StoredObject:
        key = content_key(data, ext)
        now = self._clock.now_ms()
        with write_tx(self._engine) as conn:
            stmt = self._insert(stored_files).values(key=key, last_put_at=now)
            conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"last_put_at": now}))
        return self.inner.put(data, ext)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def url(self, key: str, base: str) -> str:
        return self.inner.url(key, base)

    def check(self) -> None:
        self.inner.check()

    def close(self) -> None:
        self.inner.close()
