"""Sending the outbox: a thread that claims due events and POSTs them, signed, a few at a time.

It runs beside the task workers (``pixelmill serve`` with workers, ``pixelmill worker``), never
inside them: a slow receiver delays other webhooks at most, never generation. Targets go through
the same address rules as input images (``media/fetch.py``), checked again at every attempt
since DNS may have changed since the task was accepted.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import structlog

from pixelmill import __version__
from pixelmill.media.fetch import FetchRefused, SafeFetcher
from pixelmill.notify.outbox import Delivery, Outbox
from pixelmill.notify.signing import signed_headers
from pixelmill.observe.metrics import WorkerMetrics
from pixelmill.queue.signals import Wakeup

log = structlog.get_logger("pixelmill.webhooks")


class WebhookDeliverer:
    def __init__(
        self,
        outbox: Outbox,
        fetcher: SafeFetcher,
        secret_of: Callable[[str], str],
        wakeup: Wakeup,
        *,
        concurrency: int,
        timeout_seconds: float,
        poll_seconds: float,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._outbox = outbox
        self._fetcher = fetcher
        #: API key id → its signing secret (made when first needed).
        self._secret_of = secret_of
        self._wakeup = wakeup
        self._concurrency = concurrency
        self._timeout = timeout_seconds
        self._poll = poll_seconds
        self._owner = f"{socket.gethostname()}:{os.getpid()}:webhooks:{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._senders = ThreadPoolExecutor(concurrency, thread_name_prefix="pixelmill-webhook")
        #: Senders free to take an event; the loop claims no more than that.
        self._free = threading.Semaphore(concurrency)
        self._thread = threading.Thread(target=self._loop, name="pixelmill-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wakeup.notify_all()
        self._thread.join(timeout)
        self._senders.shutdown(wait=True)

    def _loop(self) -> None:
        """Claim as many due events as there are free senders, hand each to a sender, and go on
        claiming as senders free up: a slow receiver holds one sender, never the others."""
        while not self._stop.is_set():
            if not self._free.acquire(timeout=self._poll):
                continue
            free = 1
            while free < self._concurrency and self._free.acquire(blocking=False):
                free += 1
            try:
                # Locked a little longer than a send may take, so a dead process's claims return.
                due = self._outbox.claim_due(self._owner, free, self._timeout + 5)
            except Exception:
                log.exception("webhook claim failed")
                due = []
            for _ in range(free - len(due)):
                self._free.release()
            if not due:
                self._wakeup.wait(self._poll)
                continue
            for delivery in due:
                self._senders.submit(self._send_and_free, delivery)

    def _send_and_free(self, delivery: Delivery) -> None:
        try:
            self.send(delivery)
        except Exception:  # a bug in one send must not stop delivery: its lock runs out, it is retried
            log.exception("webhook send crashed")
        finally:
            self._free.release()

    def send(self, delivery: Delivery) -> bool:
        body = delivery.payload.encode()
        try:
            if delivery.api_key_id is None:
                raise FetchRefused("the task has no API key to sign with")
            headers = {
                "Content-Type": "application/json",
                "User-Agent": f"pixelmill-webhooks/{__version__}",
                **signed_headers(self._secret_of(delivery.api_key_id), delivery.id, body),
            }
            status = self._fetcher.post(delivery.url, body, headers, self._timeout)
            error = None if 200 <= status < 300 else f"answered HTTP {status}"
        except FetchRefused as exc:
            error = exc.reason
        except Exception as exc:  # never let one event stop the loop
            log.exception("webhook crashed", webhook_id=delivery.id, task_id=delivery.task_id)
            error = f"internal error: {type(exc).__name__}"
        if self._metrics is not None:
            self._metrics.webhook_deliveries.labels("delivered" if error is None else "failed").inc()
        if error is None:
            self._outbox.delivered(delivery, self._owner)
            return True
        state = self._outbox.failed(delivery, self._owner, error)
        log.info("webhook attempt failed", webhook_id=delivery.id, task_id=delivery.task_id, webhook_event=delivery.event,
                 attempt=delivery.attempts + 1, error=error, next_state=state)
        return False
