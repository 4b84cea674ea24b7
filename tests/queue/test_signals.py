"""Wake-ups across processes on PostgreSQL (LISTEN/NOTIFY) and on SQLite (a Unix datagram socket
per process beside the database file), and in-process on both databases: a change wakes its
waiters once it commits, never before, never for a rollback."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine

from pixelmill.auth.keys import KeyStore
from pixelmill.clock import ManualClock
from pixelmill.db.engine import write_tx
from pixelmill.exceptions import StreamsFull
from pixelmill.queue.signals import LISTEN_CHECK_SECONDS, ChangeFeed, HostChannel, Listener, Signals, Wakeup
from pixelmill.queue.store import TaskStore
from tests.helpers import wait_for
from tests.queue.test_store import LANES, new_task


class Counting(Wakeup):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def notify_all(self) -> None:
        self.count += 1
        super().notify_all()


def process(postgres: bool) -> Signals:
    """The signals of one process: its streams wait 30 s before looking again on their own."""
    return Signals(postgres, ChangeFeed(fallback_seconds=30, max_streams=10), Counting(), Wakeup())


class Waiter:
    """A stream of ``feed`` waiting on ``task_id`` (its own event loop, in a thread)."""

    def __init__(self, feed: ChangeFeed, task_id: str) -> None:
        self.woken = threading.Event()
        self.at = 0.0

        async def wait() -> None:
            with feed.subscribe(task_id) as changes:
                await changes.wait(30)
            self.at = time.monotonic()
            self.woken.set()

        threading.Thread(target=lambda: asyncio.run(wait()), daemon=True).start()
        wait_for(lambda: task_id in feed._waiters, timeout=5, what="the stream to wait")


def woken_after(feed: ChangeFeed, task_id: str, act: Callable[[], object]) -> float:
    """Seconds from ``act()`` until a stream waiting on ``task_id`` in ``feed`` wakes."""
    waiter = Waiter(feed, task_id)
    start = time.monotonic()
    act()
    assert waiter.woken.wait(30)
    return waiter.at - start


@pytest.mark.postgres
def test_a_change_committed_by_another_process_wakes_waiters_here_at_once(pg: Engine) -> None:
    clock = ManualClock()
    KeyStore(pg, clock).create(tenant_id="acme")
    here, there = process(True), process(True)
    listener = Listener(pg, here)
    listener.start()
    try:
        assert listener.listening.wait(10)
        queued = here.queued.count  # type: ignore[attr-defined]
        store = TaskStore(pg, clock, signals=there)
        task = store.insert(new_task(), queue_limit=10)
        wait_for(lambda: here.queued.count > queued, timeout=5, what="idle workers here to be woken")  # type: ignore[attr-defined]
        # A stream here on that task: woken by the other process's claim, long before its 30 s.
        assert woken_after(here.feed, task.id, lambda: store.claim("w", LANES, 30)) < 2
        # A rolled-back change wakes nobody: notifications arrive in commit order, so once the
        # later, committed one has arrived, the rolled-back one would have been there before it.
        other = Waiter(here.feed, "some-other-task")
        with pytest.raises(RuntimeError), write_tx(pg) as conn:
            there.task_changed(conn, "some-other-task", "acme")
            raise RuntimeError("rolled back")
        assert woken_after(here.feed, task.id, lambda: store.set_progress(task.id, "w", 50, 30)) < 2
        assert not other.woken.is_set()
    finally:
        stopping = time.monotonic()
        listener.stop()
    # Stopped at once, not at the end of a wait for notifications (the Listener's thread is
    # joined for up to 5 s: still alive here means stop did not reach it).
    assert not listener._thread.is_alive() and time.monotonic() - stopping < LISTEN_CHECK_SECONDS


def test_in_process_waiters_are_woken_once_the_change_commits(db: Engine, clock: ManualClock) -> None:
    KeyStore(db, clock).create(tenant_id="acme")
    signals = process(db.dialect.name == "postgresql")
    store = TaskStore(db, clock, signals=signals)
    task = store.insert(new_task(), queue_limit=10)
    assert signals.queued.count == 1  # type: ignore[attr-defined]
    assert woken_after(signals.feed, task.id, lambda: store.claim("w", LANES, 30)) < 2


def test_a_process_holds_at_most_max_streams() -> None:
    feed = ChangeFeed(fallback_seconds=1, max_streams=2)
    first, second = feed.hold(), feed.hold()
    with pytest.raises(StreamsFull) as err:
        feed.hold()
    assert err.value.http_status == 503 and err.value.retry_after == 1
    first()
    first()  # giving a place back twice frees it once
    third = feed.hold()
    assert feed.open_streams == 2
    second()
    third()
    assert feed.open_streams == 0


def test_a_change_between_subscribing_and_waiting_is_not_missed() -> None:
    # A stream subscribes, reads its task, then waits: a change committed during the read must
    # end that wait at once, not after the fallback (it once did: the waiter registered too late).
    feed = ChangeFeed(fallback_seconds=30, max_streams=1)

    async def read_then_wait() -> float:
        with feed.subscribe("t1") as changes:
            feed.changed("t1")  # arrives while the task is being read
            started = time.monotonic()
            await changes.wait(30)
            return time.monotonic() - started

    assert asyncio.run(read_then_wait()) < 5


def test_a_tenant_stream_hears_which_of_its_tasks_changed_here_and_in_other_processes() -> None:
    feed = ChangeFeed(fallback_seconds=30, max_streams=1)
    signals = Signals(False, feed, queued=Wakeup(), webhooks=Wakeup())

    async def listen() -> list[set[str | None]]:
        heard = []
        with feed.subscribe_tenant("acme") as changes:
            feed.changed("t1", "acme")
            feed.changed("t2", "other")  # another tenant's: not heard
            signals.dispatch("another-process:t:t3:acme")  # a change another process committed
            heard.append(await changes.wait(30))
            feed.changed_all()  # notifications may have been missed: anything may have changed
            heard.append(await changes.wait(30))
            heard.append(await changes.wait(0.05))  # nothing since
        return heard

    assert asyncio.run(listen()) == [{"t1", "t3"}, {None}, set()]


def test_on_sqlite_processes_of_one_database_wake_each_other_through_their_sockets(tmp_path: Path) -> None:
    from pixelmill.db.engine import make_engine
    from pixelmill.db.migrate import upgrade

    db = make_engine(f"sqlite:///{tmp_path / 'queue.db'}")
    upgrade(db)
    clock = ManualClock()
    KeyStore(db, clock).create(tenant_id="acme")
    here, there = process(False), process(False)
    # A socket left behind by a process killed with SIGKILL: bound once, nobody reads it.
    (tmp_path / "signals").mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(tmp_path / "signals" / "dead.sock"))
    stale.close()
    channels = [HostChannel(tmp_path / "signals", s) for s in (here, there)]
    assert all(c.start() for c in channels)
    try:
        store = TaskStore(db, clock, signals=there)
        # Each receiver first wakes its own process once (what it may have missed before it ran).
        wait_for(lambda: here.queued.count >= 1, timeout=5, what="the receiver to start")  # type: ignore[attr-defined]
        queued = here.queued.count  # type: ignore[attr-defined]
        task = store.insert(new_task(), queue_limit=10)
        wait_for(lambda: here.queued.count > queued, timeout=5, what="idle workers here to be woken")  # type: ignore[attr-defined]
        assert not (tmp_path / "signals" / "dead.sock").exists()  # refused, so removed
        # A stream here waits 30 s between looks: the claim in the other process wakes it at once.
        assert woken_after(here.feed, task.id, lambda: store.claim("w", LANES, 30)) < 2
        other = Waiter(here.feed, "some-other-task")
        with pytest.raises(RuntimeError), write_tx(db) as conn:
            there.task_changed(conn, "some-other-task", "acme")
            raise RuntimeError("rolled back")  # sent after the commit only: this sends nothing
        assert woken_after(here.feed, task.id, lambda: store.set_progress(task.id, "w", 50, 30)) < 2
        assert not other.woken.is_set()
    finally:
        for channel in channels:
            channel.stop()
    assert list((tmp_path / "signals").iterdir()) == []  # each took its socket away


def test_a_database_path_too_long_for_a_socket_name_meets_in_the_temporary_directory(tmp_path: Path) -> None:
    short = tmp_path / "q.db"
    deep = tmp_path / ("d" * 120) / "queue.db"
    assert HostChannel.directory_for(str(short)) == Path(f"{short}.signals")
    far = HostChannel.directory_for(str(deep))
    assert far == HostChannel.directory_for(str(deep)) != HostChannel.directory_for(str(deep) + "2")
    assert len(str(far / "0123456789ab.sock")) <= 100  # every process of that file binds there
