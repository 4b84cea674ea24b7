"""Wake-ups: who is told, and how fast, that work arrived or a task changed.

Three kinds of waiters sleep in every process: idle workers (work queued), the webhook deliverer
(an event recorded) and open long-polls and event streams (their task changed). ``Signals`` is
what writers call inside their transaction; the wake-up goes out only once it has committed, so
nobody looks before the row is there:

- in this process, at once (``after_commit``);
- on PostgreSQL, to every other process too, with ``pg_notify`` (delivered at commit, and not at
  all on rollback). Each process has one ``Listener``: a connection that LISTENs and hands what
  arrives to the same waiters.
- on SQLite, which is one host, to every other process of the same data directory through a
  Unix datagram socket each (``HostChannel``), sent once the transaction has committed.

Both are best effort: every waiter still polls now and then, so a lost wake-up only delays.

``ChangeFeed`` holds the open streams of a process: each waits on an event for its task, not on
the database, so a thousand open streams cost no queries while nothing changes. A stream still
looks again every ``fallback_seconds`` (a notification lost while the listener reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import select as io_select
import socket
import stat
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from sqlalchemy import Connection, Engine, func, select

from pixelmill.db.engine import after_commit
from pixelmill.exceptions import StreamsFull

log = structlog.get_logger("pixelmill.signals")

CHANNEL = "pixelmill"


class Wakeup:
    """Tells idle in-process threads (workers, the deliverer) that work arrived, so they need not
    wait for their poll."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending = 0

    def notify(self) -> None:
        with self._cond:
            self._pending += 1
            self._cond.notify()

    def notify_all(self) -> None:
        with self._cond:
            self._pending += 1
            self._cond.notify_all()

    def wait(self, timeout: float) -> None:
        with self._cond:
            if self._pending == 0:
                self._cond.wait(timeout)
            self._pending = max(0, self._pending - 1)


class ChangeFeed:
    """The open streams of this process, by task, woken when their task changes."""

    def __init__(self, fallback_seconds: float, max_streams: int) -> None:
        self.fallback_seconds = fallback_seconds
        self._max = max_streams
        self._open = 0
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._tenants: dict[str, set[TenantSubscription]] = {}
        self._lock = threading.Lock()

    @property
    def open_streams(self) -> int:
        return self._open

    def hold(self) -> Callable[[], None]:
        """Take one of the process's ``max_streams`` places for a long-poll or an event stream;
        call what it returns to give the place back."""
        with self._lock:
            if self._open >= self._max:
                raise StreamsFull(f"this server holds {self._max} open streams already; poll, or retry in a moment")
            self._open += 1
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if not released.is_set():
                    released.set()
                    self._open -= 1

        return release

    @contextmanager
    def stream(self) -> Iterator[None]:
        release = self.hold()
        try:
            yield
        finally:
            release()

    def changed(self, task_id: str, tenant_id: str | None = None) -> None:
        """Wake the streams of ``task_id`` and of its tenant (from any thread)."""
        with self._lock:
            waiters = list(self._waiters.get(task_id, ()))
            tenants = list(self._tenants.get(tenant_id, ())) if tenant_id else []
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)
        for tenant in tenants:
            tenant.loop.call_soon_threadsafe(tenant.add, task_id)

    def changed_all(self) -> None:
        """Wake every stream: after notifications may have been missed."""
        with self._lock:
            waiters = [w for ws in self._waiters.values() for w in ws]
            tenants = [t for ts in self._tenants.values() for t in ts]
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)
        for tenant in tenants:
            tenant.loop.call_soon_threadsafe(tenant.add, None)

    @contextmanager
    def subscribe_tenant(self, tenant_id: str) -> Iterator[TenantSubscription]:
        """Listen for changes of any of ``tenant_id``'s tasks from now on (subscribe, then read)."""
        subscription = TenantSubscription(asyncio.get_running_loop(), asyncio.Event(), self.fallback_seconds)
        with self._lock:
            self._tenants.setdefault(tenant_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            with self._lock:
                waiting = self._tenants.get(tenant_id)
                if waiting is not None:
                    waiting.discard(subscription)
                    if not waiting:
                        del self._tenants[tenant_id]

    @contextmanager
    def subscribe(self, task_id: str) -> Iterator[Subscription]:
        """Listen for changes of ``task_id`` from now on. Subscribe before reading the task, so a
        change that commits between the read and the wait is not missed."""
        subscription = Subscription(asyncio.get_running_loop(), asyncio.Event(), self.fallback_seconds)
        waiter = (subscription.loop, subscription.event)
        with self._lock:
            self._waiters.setdefault(task_id, set()).add(waiter)
        try:
            yield subscription
        finally:
            with self._lock:
                waiting = self._waiters.get(task_id)
                if waiting is not None:
                    waiting.discard(waiter)
                    if not waiting:
                        del self._waiters[task_id]


@dataclass
class Subscription:
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event
    fallback_seconds: float

    async def wait(self, timeout: float) -> None:
        """Until a change arrives (or arrived since the last wait), or ``timeout`` (capped at the
        fallback) has passed. Read the task after this returns."""
        try:
            await asyncio.wait_for(self.event.wait(), min(timeout, self.fallback_seconds))
        except TimeoutError:
            pass
        self.event.clear()


@dataclass(eq=False)
class TenantSubscription:
    """A stream of every task of one tenant: which tasks changed since the last wait."""

    loop: asyncio.AbstractEventLoop
    event: asyncio.Event
    fallback_seconds: float
    #: Changed task ids; None in it: anything may have changed (notifications were missed).
    pending: set[str | None] = field(default_factory=set)

    def add(self, task_id: str | None) -> None:
        """On the subscription's loop."""
        self.pending.add(task_id)
        self.event.set()

    async def wait(self, timeout: float) -> set[str | None]:
        """The tasks changed since the last wait (empty after ``timeout``, capped at the fallback)."""
        try:
            await asyncio.wait_for(self.event.wait(), min(timeout, self.fallback_seconds))
        except TimeoutError:
            pass
        self.event.clear()
        changed, self.pending = self.pending, set()
        return changed


class Signals:
    """What writers call inside a transaction; see the module docstring."""

    def __init__(self, postgres: bool, feed: ChangeFeed, queued: Wakeup, webhooks: Wakeup) -> None:
        self._postgres = postgres
        self.feed = feed
        self.queued = queued
        self.webhooks = webhooks
        #: Marks this process's own notifications, which its listener skips (woken already).
        self.origin = uuid.uuid4().hex[:12]
        #: SQLite: the other processes of this data directory, once ``HostChannel`` runs.
        self.host: HostChannel | None = None

    def task_changed(self, conn: Connection, task_id: str, tenant_id: str) -> None:
        self._send(conn, f"t:{task_id}:{tenant_id}", lambda: self.feed.changed(task_id, tenant_id))

    def work_queued(self, conn: Connection) -> None:
        self._send(conn, "q", self.queued.notify_all)

    def webhook_due(self, conn: Connection) -> None:
        self._send(conn, "w", self.webhooks.notify)

    def _send(self, conn: Connection, what: str, here: Callable[[], None]) -> None:
        after_commit(conn, here)
        if self._postgres:
            conn.execute(select(func.pg_notify(CHANNEL, f"{self.origin}:{what}")))
        elif (host := self.host) is not None:
            payload = f"{self.origin}:{what}".encode()
            after_commit(conn, lambda: host.send(payload))

    def dispatch(self, payload: str) -> None:
        """A notification from another process."""
        origin, _, what = payload.partition(":")
        if origin == self.origin:
            return
        if what.startswith("t:"):
            task_id, _, tenant_id = what[2:].partition(":")  # task ids hold no ':'
            self.feed.changed(task_id, tenant_id or None)
        elif what == "q":
            self.queued.notify_all()
        elif what == "w":
            self.webhooks.notify()

    def missed(self) -> None:
        """The listener was away: anything may have happened meanwhile."""
        self.queued.notify_all()
        self.webhooks.notify()
        self.feed.changed_all()


#: The longest a Listener sleeps between looks at its connection with nothing to wake it.
LISTEN_CHECK_SECONDS = 30.0


class Listener:
    """One PostgreSQL connection per process that LISTENs and dispatches to ``Signals``; it
    reconnects after any error (a restart of the database), waking everybody when it does."""

    def __init__(self, engine: Engine, signals: Signals) -> None:
        self._url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._signals = signals
        self._stop = threading.Event()
        # The waiting thread sleeps on the connection's socket and on this pair: stop() writes
        # to it, so a close does not wait out a poll interval (every runtime's close took 1 s).
        self._wake, self._woken = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="pixelmill-listener", daemon=True)
        self.listening = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake.send(b"\0")
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._wake.close()
            self._woken.close()

    def _run(self) -> None:
        import psycopg  # the postgres extra: a Listener exists only on PostgreSQL

        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    self._signals.missed()
                    while not self._stop.is_set():
                        # What the connection holds already first, then wait for more (or stop);
                        # a lost connection shows as readable, and reading it raises.
                        for note in conn.notifies(timeout=0):
                            self._signals.dispatch(note.payload)
                        io_select.select([conn.fileno(), self._woken.fileno()], [], [], LISTEN_CHECK_SECONDS)
            except Exception as exc:  # noqa: BLE001 - a lost connection is expected (restarts): reconnect
                self.listening.clear()
                if self._stop.is_set():
                    break
                log.warning("change listener lost its connection; reconnecting", error=f"{type(exc).__name__}: {exc}"[:300])
                self._stop.wait(1.0)


class HostChannel:
    """SQLite's ``pg_notify``: the processes sharing a data directory (an API process and a
    ``pixelmill worker``, or several API processes) tell each other of commits at once instead of
    waiting for their next poll. Each binds a Unix datagram socket in ``directory`` and sends
    every wake-up to the others' sockets; a socket left by a killed process is removed by the
    first sender it refuses. Sending never blocks: a full receiver misses that wake-up and polls.
    """

    def __init__(self, directory: Path, signals: Signals) -> None:
        self._dir = directory
        self._signals = signals
        self._path = directory / f"{signals.origin}.sock"
        self._out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._out.setblocking(False)
        self._in = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pixelmill-host-signals", daemon=True)

    @staticmethod
    def directory_for(database: str) -> Path:
        """Where the processes of SQLite file ``database`` meet: beside it, unless that path is
        too long for a Unix socket's name (about 100 bytes); then in the temporary directory,
        under a name that only this file's absolute path gives."""
        beside = Path(database + ".signals")
        if len(str(beside.absolute() / "0123456789ab.sock").encode()) <= 100:
            return beside
        digest = hashlib.sha256(str(Path(database).resolve()).encode()).hexdigest()[:20]
        return Path(tempfile.gettempdir()) / f"pixelmill-{digest}.signals"

    def start(self) -> bool:
        """Bind and start receiving; False when this host cannot (the path is too long for a
        Unix socket, or the directory is not writable): waiters then poll, as before."""
        try:
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Only a directory of this user's own that nobody else may enter: in a shared
            # temporary directory another user could have made it first, to listen or to send.
            info = self._dir.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
                raise PermissionError(f"{self._dir} is not a directory only this user may write to")
            self._in.bind(str(self._path))
        except OSError as exc:
            log.warning("no wake-ups across processes; they poll", directory=str(self._dir), error=str(exc))
            return False
        self._in.settimeout(1.0)
        self._thread.start()
        self._signals.host = self
        return True

    def stop(self, timeout: float = 5.0) -> None:
        self._signals.host = None
        self._stop.set()
        if self._thread.is_alive():
            with contextlib.suppress(OSError):  # wake the receiver now, not at its next timeout
                self._out.sendto(b"", str(self._path))
            self._thread.join(timeout)
        self._in.close()
        self._out.close()
        self._path.unlink(missing_ok=True)

    def send(self, payload: bytes) -> None:
        # The directory is read at every send (a few microseconds): a list kept for a second
        # missed a process that bound its socket meanwhile, and a worker that had looked for work
        # once at its start then slept until its next poll.
        try:
            names = os.listdir(self._dir)
        except OSError:
            return
        mine = self._path.name
        for peer in (str(self._dir / name) for name in names if name.endswith(".sock") and name != mine):
            try:
                self._out.sendto(payload, peer)
            except OSError as exc:  # never an error for the commit that sent it
                if exc.errno == errno.ECONNREFUSED:  # nobody bound to it: its process is gone
                    with contextlib.suppress(OSError):
                        Path(peer).unlink(missing_ok=True)
                # EAGAIN (its queue is full), ENOENT (removed meanwhile): that one polls instead

    def _run(self) -> None:
        self._signals.missed()  # what happened before this process listened
        while not self._stop.is_set():
            try:
                payload = self._in.recv(1024)
                if self._stop.is_set():
                    return
                self._signals.dispatch(payload.decode(errors="replace"))
            except TimeoutError:
                continue
            except Exception as exc:  # noqa: BLE001 - the receiver must outlive any one message
                if self._stop.is_set():
                    return
                log.warning("a wake-up from another process failed", error=f"{type(exc).__name__}: {exc}"[:300])
                self._stop.wait(0.1)
