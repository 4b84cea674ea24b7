"""Workers: claim a task under a lease, run it, record the outcome. Plus the heartbeat that keeps
leases alive, the scheduler that requeues the tasks of workers that died, the housekeeping chores,
and the supervisor that keeps all of them running.

A worker pool is a few threads in one process (``pixelmill serve`` runs one in-process;
``pixelmill worker`` runs one on its own, on any host that reaches the database).

No thread may die quietly: every loop survives any error of one round (a database restart, a
dropped connection, a bug) and goes on after a short pause; a worker retries the write that
records a task's outcome until it lands or the task's lease is gone; and the supervisor restarts
any thread that ended anyway, counting it. ``health()`` says how many workers are alive and
whether claims succeed, for ``/readyz`` and ``/metrics``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import structlog
from PIL import Image
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from tenacity import Retrying, retry_if_exception, stop_after_delay, stop_when_event_set, wait_exponential, wait_random

from pixelmill.clock import Clock
from pixelmill.engines.base import Busy, Waiting, is_retryable
from pixelmill.engines.remote import RemoteEngine
from pixelmill.exceptions import EngineError
from pixelmill.observe.metrics import WorkerMetrics
from pixelmill.observe.stages import StageTimer, timing
from pixelmill.queue.finishing import Finishing
from pixelmill.queue.signals import Wakeup
from pixelmill.queue.store import TaskStore
from pixelmill.queue.upstream import UpstreamTasks
from pixelmill.settings import Settings
from pixelmill.tasks.actions import Lane
from pixelmill.tasks.record import Task
from pixelmill.work.execute import Executor
from pixelmill.work.finisher import Finisher
from pixelmill.work.upstream import UpstreamPoller

log = structlog.get_logger("pixelmill.worker")

_T = TypeVar("_T")

#: A loop that failed a round waits this long before the next: no busy loop against a dead database.
ERROR_PAUSE_SECONDS = 1.0
#: Claims failing for this long make the pool not ready (a restart of the database takes less).
CLAIM_FAILING_SECONDS = 10.0
#: How often the supervisor looks for ended threads.
SUPERVISE_SECONDS = 0.5


def _unreachable(exc: BaseException) -> bool:
    """The database could not be reached (restarting, connection lost): worth another try. A
    wrong statement (an integrity or data error) would fail the same way again."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError)


class WorkerPool:
    def __init__(
        self,
        store: TaskStore,
        executor: Executor,
        settings: Settings,
        wakeup: Wakeup,
        *,
        size: int,
        engines: Sequence[str] | None = None,
        chores: Sequence[Callable[[], object]] = (),
        metrics: WorkerMetrics | None = None,
        finishing: Finishing | None = None,
        upstream: UpstreamTasks | None = None,
        remote: Mapping[str, RemoteEngine] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._metrics = metrics
        #: Housekeeping run every chores_interval_seconds in a thread of its own (retention,
        #: expired idempotency keys, old rate-limit windows): nothing depends on it being prompt,
        #: and a slow or failing chore never delays lease recovery.
        self._chores = chores
        self._store = store
        self._executor = executor
        self._settings = settings
        self._wakeup = wakeup
        self._size = size
        #: The engines this process has: it claims only their tasks, so in a mixed fleet a CPU
        #: worker never takes (and burns the attempts of) a task for a GPU engine it lacks.
        self._engines = tuple(engines) if engines is not None else None
        #: Engines whose upstream accounts were all full, until when (``Busy``).
        self._full: dict[str, float] = {}
        self._full_lock = threading.Lock()
        self._stop = threading.Event()
        #: Every thread of the pool by name, with what it runs: the supervisor restarts from here.
        self._loops: dict[str, tuple[Callable[..., object], tuple[object, ...]]] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._restarts = 0
        self._running: dict[str, str] = {}  # task id -> worker id
        self._running_lock = threading.Lock()
        #: When claims last succeeded and, while they fail, since when and why.
        self._claim_failing_since: float | None = None
        self._claim_error = ""
        #: Interactive work first: a worker takes batch work only when no interactive task is
        #: due, and only while one of the pool's batch slots is free. So batch work delays an
        #: interactive task by at most the batch task a worker is finishing, and with the default
        #: slots (all workers but one) an interactive task always finds a worker free of batch work.
        self._lanes = tuple(sorted((Lane(name) for name in settings.worker_lanes), key=lambda lane: lane is Lane.BATCH))
        self._batch_slots = threading.BoundedSemaphore(settings.batch_workers or max(1, size - 1))
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        #: Makes the files owed after SUCCESS (renditions, provenance records), woken by completions.
        self._finisher = None if finishing is None else Finisher(
            finishing, store, executor, owner=self.process_id, lock_seconds=settings.lease_seconds, metrics=metrics,
        )
        self._finish_due = threading.Event()
        #: Follows the tasks that wait on an upstream, so that no worker thread does.
        self._upstream = upstream
        self._poller = None if upstream is None or not remote or clock is None else UpstreamPoller(
            store, upstream, remote, clock, run=lambda task: self.run_task(task, f"{self.process_id}:upstream", resumed=True),
            owner=f"{self.process_id}:upstream", threads=size, lease_seconds=settings.lease_seconds,
            retry_backoff_seconds=settings.retry_backoff_seconds, metrics=metrics,
        )

    def start(self) -> None:
        for i in range(self._size):
            self._spawn(f"worker-{i}", self._work_loop, f"{self.process_id}:{i}")
        if self._finisher is not None:
            self._spawn("finisher", self._finish_loop)
        self._spawn("heartbeat", self._heartbeat_loop)
        self._spawn("scheduler", self._scheduler_loop)
        self._spawn("chores", self._chores_loop)
        if self._poller is not None:
            assert self._upstream is not None
            self._upstream.parking = True
            self._spawn("upstream", self._poller.run_forever, self._stop)
        self._spawn("supervisor", self._supervise_loop)

    def _spawn(self, name: str, target: Callable[..., object], *args: object) -> None:
        self._loops[name] = (target, args)
        t = threading.Thread(target=target, args=args, name=f"pixelmill-{name}", daemon=True)
        t.start()
        self._threads[name] = t

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; let tasks in flight finish (up to ``timeout``). Anything still running
        afterwards is picked up again by another worker when its lease expires."""
        self._stop.set()
        self._wakeup.notify_all()
        self._finish_due.set()
        for t in list(self._threads.values()):
            t.join(timeout)
        if self._poller is not None:
            self._poller.close()

    # --- health --------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """What ``/readyz`` and ``/metrics`` show of this pool."""
        workers = [t for name, t in self._threads.items() if name.startswith("worker-")]
        with self._running_lock:
            busy = len(self._running)
        failing = self._claim_failing_since
        return {
            "process": self.process_id,
            "lanes": [lane.value for lane in self._lanes],
            "engines": list(self._engines) if self._engines is not None else None,
            "workers": self._size,
            "live": sum(t.is_alive() for t in workers),
            "busy": busy,
            "restarts": self._restarts,
            "claims": "ok" if failing is None else f"failing for {time.monotonic() - failing:.0f}s: {self._claim_error}",
        }

    def check(self) -> None:
        """Readiness: raise unless every worker is alive and claims work (or failed only briefly)."""
        health = self.health()
        if health["live"] != self._size:
            raise RuntimeError(f"{health['live']} of {self._size} workers alive")
        failing = self._claim_failing_since
        if failing is not None and time.monotonic() - failing >= CLAIM_FAILING_SECONDS:
            raise RuntimeError(f"workers cannot claim tasks: {health['claims']}")

    # --- loops -------------------------------------------------------------------------------

    def _work_loop(self, worker_id: str) -> None:
        while not self._stop.is_set():
            try:
                self._work_once(worker_id)
            except Exception:
                # A bug or a database error outside the guarded writes: this round is lost, the
                # worker is not. Its task (if any) is retried when its lease expires.
                log.exception("worker round failed", worker=worker_id)
                self._stop.wait(ERROR_PAUSE_SECONDS)

    def _work_once(self, worker_id: str) -> None:
        slot = Lane.BATCH in self._lanes and self._batch_slots.acquire(blocking=False)
        try:
            lanes = [lane for lane in self._lanes if lane is not Lane.BATCH or slot]
            claiming = time.perf_counter()
            task = self._claim(worker_id, lanes) if lanes else None
            if slot and (task is None or task.lane is not Lane.BATCH):
                self._batch_slots.release()
                slot = False
            if task is None:
                self._wakeup.wait(self._settings.worker_poll_seconds)
                return
            self.run_task(task, worker_id, claim_seconds=time.perf_counter() - claiming)
        finally:
            if slot:
                self._batch_slots.release()

    def _claim(self, worker_id: str, lanes: Sequence[Lane]) -> Task | None:
        engines = self._claimable()
        if engines is not None and not engines:
            return None
        try:
            task = self._store.claim(worker_id, lanes, self._settings.lease_seconds, engines=engines)
        except Exception as exc:  # noqa: BLE001 - whatever stops claims is reported by readiness, not raised
            if self._claim_failing_since is None:
                self._claim_failing_since = time.monotonic()
            self._claim_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("claim failed", error=self._claim_error)
            self._stop.wait(ERROR_PAUSE_SECONDS)
            return None
        self._claim_failing_since = None
        return task

    def run_task(self, task: Task, worker_id: str, claim_seconds: float | None = None, *, resumed: bool = False) -> None:
        """Run ``task``, which ``worker_id`` holds: claimed, or handed back by the upstream poller
        (``resumed``: its upstream task has ended)."""
        with self._running_lock:
            self._running[task.id] = worker_id
        context = {
            "task_id": task.id, "tenant": task.tenant_id, "action": task.action.value, "engine": task.engine,
            "attempt": task.attempt, "request_id": task.params.get("request_id"), "worker": worker_id,
        }
        try:
            with structlog.contextvars.bound_contextvars(**context):
                log.info("task started", lane=task.lane.value, queued_ms=(task.start_time or 0) - task.submit_time)
                self._execute(task, worker_id, claim_seconds, resumed=resumed)
        finally:
            with self._running_lock:
                self._running.pop(task.id, None)
                idle = not self._running
            if idle:  # the finisher waits for this while files are owed (work/finisher.py)
                self._finish_due.set()

    def _execute(self, task: Task, worker_id: str, claim_seconds: float | None = None, *, resumed: bool = False) -> None:
        lease = self._settings.lease_seconds
        last = [0]
        next_preview = [0.0]
        timer = StageTimer()
        if claim_seconds is not None:
            timer.add("claim", claim_seconds)
        if task.lease_expires_at is not None and not resumed:
            # Due (submitted, answered in /modal, or its retry's backoff over) until this claim,
            # in the database's clock: the claim set the lease from its own now.
            claimed_at = task.lease_expires_at - int(lease * 1000)
            timer.add("queue", max(0, claimed_at - task.scheduled_at) / 1000)
        # Previews are stored only while someone watches (an event stream, or a request that
        # asked for them); each progress write says whether someone started to.
        watched = [task.watched]

        def progress(fraction: float, preview: Image.Image | None = None) -> None:
            pct = int(fraction * 100)
            key = None
            if preview is not None and watched[0] and time.monotonic() >= next_preview[0]:
                next_preview[0] = time.monotonic() + self._settings.preview_interval_seconds
                # Timed here, on whichever thread the engine calls back from (diffusers: its own).
                with timer.measure("preview"):
                    key = self._executor.store_preview(task, preview)
            if pct >= last[0] + 5 or key:  # a database write per 5 % (or new preview), not per step
                last[0] = max(last[0], pct)
                try:
                    now = self._store.set_progress(task.id, worker_id, pct, lease, preview_key=key)
                    watched[0] = watched[0] or bool(now and now.watched)
                except SQLAlchemyError as exc:  # progress is a hint: a lost write must not fail the task
                    log.warning("progress not recorded", error=f"{type(exc).__name__}: {exc}"[:300])

        try:
            with timing(timer):
                outcome = self._executor.run(task, progress)
        except Waiting as waiting:
            self._park(task, worker_id, waiting, {**task.stages, **timer.milliseconds()})
            return
        except Busy as busy:
            self._defer(task, worker_id, busy)
            return
        except Exception as exc:
            if isinstance(exc, EngineError):
                reason = exc.description
            else:  # a bug or an unexpected library error
                log.exception("task crashed")
                reason = f"internal error: {type(exc).__name__}: {exc}"
            retryable = is_retryable(exc) or _unreachable(exc)  # the database restarting mid-run, say
            if self._metrics is not None:
                self._metrics.engine_errors.labels(task.engine, "retryable" if retryable else "fatal").inc()
            self._record_failure(task, worker_id, reason, retryable=retryable)
            return
        stages = {**task.stages, **timer.milliseconds()}
        finalizing = time.perf_counter()
        if self._recorded(lambda: self._store.complete(task.id, worker_id, outcome.result, outcome.description, stages=stages)):
            timer.add("finalize", time.perf_counter() - finalizing)
            if outcome.result.unfinished():  # it owes files (queue/finishing.py)
                self._finish_due.set()
            log.info("task succeeded", stages_ms=stages)
            if self._metrics is not None:
                for name, ms in timer.milliseconds().items():
                    self._metrics.observe_stage(name, ms / 1000)
        else:
            log.warning("task finished after its lease was lost; result discarded")

    def _park(self, task: Task, worker_id: str, waiting: Waiting, stages: dict[str, float]) -> None:
        """The task waits upstream: the poller follows it from here, and this worker is free."""
        poller = self._poller
        if poller is None:  # engines park only where a poller runs (UpstreamTasks.parking)
            self._record_failure(task, worker_id, f"{waiting}, and this process follows no upstream tasks", retryable=True)
        elif self._recorded(lambda: poller.park(task, worker_id, stages)):
            log.info("task parked while its upstream task runs", upstream_task_id=waiting.upstream_id)
        else:
            log.warning("task lost its lease before it was parked", upstream_task_id=waiting.upstream_id)
            upstream = self._upstream
            if upstream is not None:  # cancelled meanwhile: its upstream task must be cancelled too
                self._recorded(lambda: upstream.look_once(task.id))

    def _defer(self, task: Task, worker_id: str, busy: Busy) -> None:
        """Every account that could run the task is full: the task waits in the queue, and this
        process claims no more of its engine's tasks until one may have room."""
        if busy.whole_engine:
            with self._full_lock:
                self._full[busy.engine] = time.monotonic() + busy.retry_after
        if self._recorded(lambda: self._store.defer(task.id, worker_id, busy.retry_after)):
            log.info("task back in the queue: no upstream account has room", reason=str(busy)[:300], retry_after=busy.retry_after)

    def _claimable(self) -> Sequence[str] | None:
        """The engines whose tasks this process claims now: its engines, less those whose
        accounts were all full a moment ago (claiming their tasks would only put them back)."""
        if not self._full:
            return self._engines
        now = time.monotonic()
        with self._full_lock:
            for engine, until in list(self._full.items()):
                if until <= now:
                    del self._full[engine]
            full = set(self._full)
        if not full or self._engines is None:
            return self._engines
        return [e for e in self._engines if e not in full]

    def _record_failure(self, task: Task, worker_id: str, reason: str, *, retryable: bool) -> None:
        status = self._recorded(lambda: self._store.fail(
            task.id, worker_id, reason, retryable=retryable, backoff_seconds=self._settings.retry_backoff_seconds
        ))
        log.info("task attempt failed", reason=reason, retryable=retryable, next_status=status.value if status else None)

    def _recorded(self, write: Callable[[], _T]) -> _T:
        """Run the write that records an outcome until it lands. A database restart or a dropped
        connection costs a retry, not the task: the heartbeat keeps the lease meanwhile, and the
        write is conditional on that lease, so a retry after the task was handed on is harmless.
        Past one lease the task is someone else's; the error is raised and the round lost."""
        for attempt in Retrying(
            retry=retry_if_exception(_unreachable),
            stop=stop_after_delay(self._settings.lease_seconds) | stop_when_event_set(self._stop),
            wait=wait_exponential(multiplier=0.1, max=5.0) + wait_random(0, 0.1),
            sleep=self._pause,  # a stopping pool stops waiting and trying; the lease recovers the task
            reraise=True,
            before_sleep=lambda state: log.warning("outcome not recorded yet; retrying", error=repr(state.outcome and state.outcome.exception())[:300]),
        ):
            with attempt:
                return write()
        raise AssertionError("unreachable: Retrying either returns or raises")

    def _pause(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _finish_loop(self) -> None:
        assert self._finisher is not None
        while not self._stop.is_set():
            self._finish_due.clear()  # before looking: a wake-up from now on is not lost
            with self._running_lock:
                busy = bool(self._running)
            try:
                if self._finisher.run_once(busy=busy):
                    continue
            except Exception:
                log.exception("finisher round failed")
                self._stop.wait(ERROR_PAUSE_SECONDS)
                continue
            self._finish_due.wait(self._settings.worker_poll_seconds)

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
        while not self._stop.wait(self._settings.sweep_interval_seconds):
            try:
                requeued, failed = self._store.requeue_expired()
                if requeued or failed:
                    log.warning("lease sweep", requeued=requeued, failed=failed)
                if requeued:
                    self._wakeup.notify_all()
            except Exception:
                log.exception("lease sweep failed")
            try:
                timed_out = self._store.expire_stale(
                    self._settings.queue_timeout_seconds, self._settings.run_timeout_seconds
                )
                timed_out += self._store.expire_modal(self._settings.modal_timeout_seconds)
                if timed_out:
                    log.warning("timeout sweep: tasks failed or cancelled (refunded)", count=timed_out)
            except Exception:
                log.exception("timeout sweep failed")

    def _chores_loop(self) -> None:
        while not self._stop.wait(self._settings.chores_interval_seconds):
            for chore in self._chores:
                try:
                    chore()
                except Exception:  # one failing chore does not skip the others
                    log.exception("housekeeping chore failed", chore=getattr(chore, "__qualname__", repr(chore)))

    def _supervise_loop(self) -> None:
        """Restart any thread of the pool that ended while the pool runs. The loops catch every
        error of a round, so this is for what they cannot: a bug in the catching itself."""
        while not self._stop.wait(SUPERVISE_SECONDS):
            try:
                for name, thread in list(self._threads.items()):
                    if name != "supervisor" and not thread.is_alive() and not self._stop.is_set():
                        log.error("pool thread died; restarting it", thread=name)
                        self._restarts += 1
                        if self._metrics is not None:
                            self._metrics.thread_restarts.labels(name.split("-")[0]).inc()
                        target, args = self._loops[name]
                        self._spawn(name, target, *args)
                if self._metrics is not None:
                    self._metrics.report_pool(self.health())
            except Exception:
                log.exception("supervisor round failed")
