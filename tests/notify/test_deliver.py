"""The webhook deliverer against real receivers on loopback: a slow receiver holds one sender, not
delivery for everybody; an answer of endless bytes costs neither time nor memory."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import Engine, select

from pixelmill.auth.keys import KeyStore
from pixelmill.clock import ManualClock
from pixelmill.db.schema import webhook_events
from pixelmill.media.fetch import FetchPolicy, SafeFetcher
from pixelmill.notify.deliver import WebhookDeliverer
from pixelmill.notify.outbox import Outbox, WebhookTarget
from pixelmill.queue.signals import Wakeup
from pixelmill.queue.store import TaskStore
from tests.helpers import wait_for
from tests.queue.test_store import LANES, new_task


class Receivers:
    """/fast answers at once; /slow answers when released; /huge answers 200 and then bytes without end."""

    def __init__(self) -> None:
        self.fast: list[str] = []
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/slow":
                    outer.release.wait(60)
                if self.path == "/fast":
                    outer.fast.append(self.headers["webhook-id"])
                self.send_response(200)
                if self.path == "/huge":
                    self.send_header("Content-Length", str(10**12))
                    self.end_headers()
                    chunk = b"x" * 65536
                    try:
                        while True:
                            self.wfile.write(chunk)
                    except OSError:  # the sender hung up, as it should
                        return
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    r = Receivers()
    thread = threading.Thread(target=r.httpd.serve_forever, daemon=True)
    thread.start()
    yield r
    r.release.set()
    r.httpd.shutdown()
    r.httpd.server_close()


@pytest.fixture
def deliver(db: Engine, clock: ManualClock) -> Iterator[tuple[TaskStore, Outbox, str]]:
    key, _ = KeyStore(db, clock).create(tenant_id="acme")
    outbox = Outbox(db, clock, (5, 60))
    store = TaskStore(db, clock, on_change=[outbox.record])
    fetcher = SafeFetcher(FetchPolicy(allow=("127.0.0.1/32",)))
    deliverer = WebhookDeliverer(outbox, fetcher, lambda _key: "whsec_test", Wakeup(), concurrency=2, timeout_seconds=30,
                                 poll_seconds=0.02)
    deliverer.start()
    yield store, outbox, key.id
    deliverer.stop()
    fetcher.close()


def started(store: TaskStore, key_id: str, url: str) -> str:
    """A task whose webhook wants "start" events, claimed: one event to deliver."""
    hook = WebhookTarget(url, ("start",), "https://img.example.com")
    task = store.insert(replace(new_task(), api_key_id=key_id, webhook=hook.to_json()), queue_limit=100)
    claimed = store.claim("w", LANES, 30)
    assert claimed is not None and claimed.id == task.id
    return task.id


def states(db: Engine) -> dict[str, str]:
    with db.connect() as conn:
        return {r.task_id: r.state for r in conn.execute(select(webhook_events.c.task_id, webhook_events.c.state))}


def test_a_slow_receiver_holds_one_sender_and_the_others_keep_delivering(
    db: Engine, receivers: Receivers, deliver: tuple[TaskStore, Outbox, str]
) -> None:
    store, _outbox, key_id = deliver
    slow = started(store, key_id, f"{receivers.url}/slow")
    for _ in range(6):
        started(store, key_id, f"{receivers.url}/fast")
    # Two senders: one waits on /slow, the other delivers all six fast events meanwhile (they
    # once waited for the whole claimed batch, the slow event included).
    wait_for(lambda: len(receivers.fast) == 6, timeout=15, what="the fast events while the slow receiver hangs")
    assert states(db)[slow] == "pending"
    receivers.release.set()
    wait_for(lambda: states(db)[slow] == "delivered", timeout=15, what="the slow event")


def test_an_endless_answer_is_cut_off_and_the_event_counts_as_delivered(
    db: Engine, receivers: Receivers, deliver: tuple[TaskStore, Outbox, str]
) -> None:
    store, _outbox, key_id = deliver
    task = started(store, key_id, f"{receivers.url}/huge")
    # Within seconds, although the send timeout is 30 s and the answer never ends.
    wait_for(lambda: states(db).get(task) == "delivered", timeout=10, what="the event to the endless receiver")
