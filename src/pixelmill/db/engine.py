"""Create SQLAlchemy engines for SQLite (embedded default) and PostgreSQL (many hosts).

SQLite needs care to behave like a queue under concurrent writers:
- WAL lets readers run while one writer writes; ``synchronous=NORMAL`` is durable across process
  crashes (not power loss of the last commits), which is the usual WAL trade-off.
- Writers queue before ``BEGIN IMMEDIATE``: the threads of a process on a Python lock, which
  hands over at once, then the processes of one database file on an advisory file lock beside
  it (``<file>.writelock``, ``flock``), looked at again every 0.1 to 2 ms. Left to SQLite,
  contending writers wait in its busy handler, which sleeps in growing steps (1, 2, 5, 10 ...
  100 ms) and wastes most of the time the lock is free. A writer outside ``write_tx`` (a
  migration) still meets ``busy_timeout``.
- pysqlite's own transaction handling is switched off so that SQLAlchemy's ``begin`` decides:
  write transactions start with ``BEGIN IMMEDIATE`` (take the write lock up front and wait for it
  with ``busy_timeout``), instead of a deferred BEGIN that fails with SQLITE_BUSY when it later
  tries to upgrade to a write.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError


class _WriteLock:
    """One SQLite file's writers: a thread lock, then ``flock`` for the other processes."""

    def __init__(self, database: str) -> None:
        self._threads = threading.Lock()
        # Opened once per engine and closed with it; never inherited by child processes.
        self._fd = os.open(database + ".writelock", os.O_RDWR | os.O_CREAT, 0o644)
        weakref.finalize(self, os.close, self._fd)

    #: As SQLite's ``busy_timeout``: a writer that never lets go (a stopped process) fails the
    #: others after this long instead of holding them for ever.
    TIMEOUT_SECONDS = 30.0

    def __enter__(self) -> None:
        self._threads.acquire()  # this process's own writers: they wait as they always did
        try:
            self._flock()
        except BaseException:
            self._threads.release()
            raise

    def _flock(self) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        # Held by another process. A blocking flock cannot be given a deadline from a thread,
        # so look again in short, growing steps (0.1 ms up to 2 ms; SQLite's own handler sleeps
        # up to 100 ms between looks).
        deadline, step = time.monotonic() + self.TIMEOUT_SECONDS, 0.0001
        while True:
            time.sleep(step)
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise _locked() from None
                step = min(step * 2, 0.002)

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


def _locked() -> OperationalError:
    return OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked"))


_sqlite_write_locks: weakref.WeakKeyDictionary[Engine, _WriteLock] = weakref.WeakKeyDictionary()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("psycopg"):
            raise ImportError(f"PostgreSQL needs the postgres extra: pip install 'pixelmill[postgres]' ({exc})") from exc
        raise


def _sqlite_engine(url: str) -> Engine:
    if url in ("sqlite://", "sqlite:///:memory:"):
        # Each pooled connection would see its own empty database; the queue needs one shared file.
        raise ValueError("pixelmill needs a SQLite file (sqlite:///path/to/db), not :memory:")
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=20,
        max_overflow=20,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("pixelmill_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    assert engine.url.database  # a file: checked above
    _sqlite_write_locks[engine] = _WriteLock(engine.url.database)
    return engine


_AFTER_COMMIT = "pixelmill_after_commit"


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it holds the write lock from its first statement.
    Callbacks given to ``after_commit`` run once it has committed (and the lock is released)."""
    lock = _sqlite_write_locks.get(engine) or nullcontext()
    callbacks: list[Callable[[], None]] = []
    with lock, engine.connect().execution_options(pixelmill_write=True) as conn:
        conn.info[_AFTER_COMMIT] = callbacks  # info belongs to the pooled DBAPI connection: cleared below
        try:
            with conn.begin():
                yield conn
        finally:
            conn.info.pop(_AFTER_COMMIT, None)
    for callback in callbacks:  # not reached when the transaction rolled back
        callback()


def after_commit(conn: Connection, callback: Callable[[], None]) -> None:
    """Run ``callback`` when the ``write_tx`` transaction of ``conn`` has committed: telling
    another thread about a row before then could let it look too early and miss it."""
    conn.info[_AFTER_COMMIT].append(callback)


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn, conn.begin():
        yield conn



def dialect_insert(engine: Engine) -> Callable[[Table], postgresql.Insert | sqlite.Insert]:
    """The INSERT of ``engine``'s dialect, which has ``on_conflict_do_update`` (an upsert): both
    dialects spell it alike, the generic INSERT has none."""
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
