"""Workers: claim a task under a lease, run it, record the outcome. Plus the heartbeat that keeps
leases alive and the scheduler that requeues the tasks of workers that died.

A worker pool is a few threads in one process (``pixelmill serve`` runs one in-process;
``pixelmill worker`` runs one on its own, on any host that reaches the database).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence

import structlog
from PIL import Image

from pixelmill.engines.base import is_retryable
from pixelmill.exceptions import EngineError
from pixelmill.observe.metrics import WorkerMetrics
from pixelmill.queue.store import TaskStore
from pixelmill.settings import Settings
from pixelmill.tasks.actions import Lane
from pixelmill.tasks.execute import Executor
from pixelmill.tasks.record import Task

log = structlog.get_logger("pixelmill.worker")



class Wakeup:
    """Tells idle in-process workers that work arrived, so they need not wait for their poll."""

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


class WorkerPool:
    def __init__(
        self,
        store: TaskStore,
        executor: Executor,
        settings: Settings,
        wakeup: Wakeup,
        *,
        size: int,
        chores: Sequence[Callable[[], object]] = (),
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._metrics = metrics
        #: Housekeeping the scheduler runs every chores_interval_seconds (retention, expired idempotency
        #: keys, old rate-limit windows): nothing depends on it being prompt.
        self._chores = chores
        self._store = store
        self._executor = executor
        self._settings = settings
        self._wakeup = wakeup
        self._size = size
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: dict[str, str] = {}  # task id -> worker id
        self._running_lock = threading.Lock()
        #: Interactive work first: a worker takes batch work only when no interactive task is
        #: due, and only while one of the pool's batch slots is free. So batch work delays an
        #: interactive task by at most the batch task a worker is finishing, and with the default
        #: slots (all workers but one) an interactive task always finds a worker free of batch work.
        self._lanes = tuple(sorted((Lane(name) for name in settings.worker_lanes), key=lambda lane: lane is Lane.BATCH))
        self._batch_slots = threading.BoundedSemaphore(settings.batch_workers or max(1, size - 1))
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    def start(self) -> None:
        for i in range(self._size):
            self._spawn(self._work_loop, f"worker-{i}", f"{self.process_id}:{i}")
        self._spawn(self._heartbeat_loop, "heartbeat")
        self._spawn(self._scheduler_loop, "scheduler")

    def _spawn(self, target: Callable[..., object], name: str, *args: object) -> None:
        t = threading.Thread(target=target, args=args, name=f"pixelmill-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; let tasks in flight finish (up to ``timeout``). Anything still running
        afterwards is picked up again by another worker when its lease expires."""
        self._stop.set()
        self._wakeup.notify_all()
        for t in self._threads:
            t.join(timeout)

    # --- loops -------------------------------------------------------------------------------

    def _work_loop(self, worker_id: str) -> None:
        while not self._stop.is_set():
            slot = Lane.BATCH in self._lanes and self._batch_slots.acquire(blocking=False)
            lanes = [lane for lane in self._lanes if lane is not Lane.BATCH or slot]
            try:
                task = self._store.claim(worker_id, lanes, self._settings.lease_seconds) if lanes else None
            except Exception:
                log.exception("claim failed")
                task = None
            if slot and (task is None or task.lane is not Lane.BATCH):
                self._batch_slots.release()
                slot = False
            if task is None:
                self._wakeup.wait(self._settings.worker_poll_seconds)
                continue
            try:
                self.run_task(task, worker_id)
            finally:
                if slot:
                    self._batch_slots.release()

    def run_task(self, task: Task, worker_id: str) -> None:
        with self._running_lock:
            self._running[task.id] = worker_id
        context = {
            "task_id": task.id, "tenant": task.tenant_id, "action": task.action.value, "engine": task.engine,
            "attempt": task.attempt, "request_id": task.params.get("request_id"), "worker": worker_id,
        }
        try:
            with structlog.contextvars.bound_contextvars(**context):
                log.info("task started", lane=task.lane.value, queued_ms=(task.start_time or 0) - task.submit_time)
                self._execute(task, worker_id)
        finally:
            with self._running_lock:
                self._running.pop(task.id, None)

    def _execute(self, task: Task, worker_id: str) -> None:
        lease = self._settings.lease_seconds
        last = [0]
        next_preview = [0.0]

        def progress(fraction: float, preview: Image.Image | None = None) -> None:
            pct = int(fraction * 100)
            key = None
            if preview is not None and time.monotonic() >= next_preview[0]:
                next_preview[0] = time.monotonic() + self._settings.preview_interval_seconds
                key = self._executor.store_preview(task, preview)
            if pct >= last[0] + 5 or key:  # a database write per 5 % (or new preview), not per step
                last[0] = max(last[0], pct)
                self._store.set_progress(task.id, worker_id, pct, lease, preview_key=key)

        try:
            outcome = self._executor.run(task, progress)
        except Exception as exc:
            if isinstance(exc, EngineError):
                reason = exc.description
            else:  # a bug or an unexpected library error
                log.exception("task crashed")
                reason = f"internal error: {type(exc).__name__}: {exc}"
            retryable = is_retryable(exc)
            if self._metrics is not None:
                self._metrics.engine_errors.labels(task.engine, "retryable" if retryable else "fatal").inc()
            self._record_failure(task, worker_id, reason, retryable=retryable)
            return
        if self._store.complete(task.id, worker_id, outcome.result, outcome.description):
            log.info("task succeeded")
        else:
            log.warning("task finished after its lease was lost; result discarded")

    def _record_failure(self, task: Task, worker_id: str, reason: str, *, retryable: bool) -> None:
        status = self._store.fail(
            task.id, worker_id, reason, retryable=retryable, backoff_seconds=self._settings.retry_backoff_seconds
        )
        log.info("task attempt failed", reason=reason, retryable=retryable, next_status=status.value if status else None)

    def _heartbeat_loop(self) -> None:
        interval = self._settings.lease_seconds / 3
        while not self._stop.wait(interval):
            with self._running_lock:
                by_worker: dict[str, list[str]] = {}
                for task_id, worker_id in self._running.items():
                    by_worker.setdefault(worker_id, []).append(task_id)
            for worker_id, ids in by_worker.items():
                try:
                    self._store.heartbeat(worker_id, ids, self._settings.lease_seconds)
                except Exception:
                    log.exception("heartbeat failed")

    def _scheduler_loop(self) -> None:
        next_chores = 0.0
        while not self._stop.wait(self._settings.sweep_interval_seconds):
            try:
                requeued, failed = self._store.requeue_expired()
            except Exception:
                log.exception("lease sweep failed")
                continue
            if requeued or failed:
                log.warning("lease sweep", requeued=requeued, failed=failed)
            if requeued:
                self._wakeup.notify_all()
            try:
                timed_out = self._store.expire_stale(
                    self._settings.queue_timeout_seconds, self._settings.run_timeout_seconds
                )
                timed_out += self._store.expire_modal(self._settings.modal_timeout_seconds)
                if time.monotonic() >= next_chores:
                    next_chores = time.monotonic() + self._settings.chores_interval_seconds
                    for chore in self._chores:
                        chore()
            except Exception:
                log.exception("timeout sweep failed")
                continue
            if timed_out:
                log.warning("timeout sweep: tasks failed or cancelled (refunded)", count=timed_out)
