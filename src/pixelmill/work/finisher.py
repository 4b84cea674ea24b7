"""The finisher: one thread of every worker pool that makes the files owed after SUCCESS (each
image's renditions and provenance record; queue/finishing.py says why and what survives a crash).

It runs beside the workers and takes a core only while tasks are owed files; a worker that
completes a task wakes it at once, and it looks for work of other processes every poll interval.
It runs at normal priority: a lowered one was tried, and a starved finisher holding the SQLite
write lock (its storage writes are recorded) would have stalled the workers behind it. Instead,
while its process runs tasks that callers wait for, it takes only files owed for ``BUSY_LAG_SECONDS``
(``run_once(busy=True)``): a burst's tasks have the cores first and the renditions follow when it
is over; under load that never ends they start that late, and keep up as long as the finisher
does. A gateway's burst of 48 re-hosted imagines spent a fifth of its CPU on them
(bench/remote_capacity.py). "Runs tasks" means a worker holds one: a worker waiting on an OpenAI
Images call counts, though the cores are idle then; the lag is the bound of that cost.
"""

from __future__ import annotations

import structlog

from pixelmill.observe.metrics import WorkerMetrics
from pixelmill.queue.finishing import Claimed, Finishing
from pixelmill.queue.store import TaskStore
from pixelmill.tasks.status import TaskStatus
from pixelmill.work.execute import Executor

log = structlog.get_logger("pixelmill.finisher")

#: Tasks claimed at a time: one, so that a lock never runs out on a task still waiting its turn
#: (and another process's finisher shares a burst).
BATCH = 1
#: While its process runs tasks, the finisher takes only files owed at least this long.
BUSY_LAG_SECONDS = 15.0


class Finisher:
    def __init__(
        self, finishing: Finishing, store: TaskStore, executor: Executor, *, owner: str, lock_seconds: float,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._finishing = finishing
        self._store = store
        self._executor = executor
        self._owner = owner
        self._lock_seconds = lock_seconds
        self._metrics = metrics

    def run_once(self, *, busy: bool = False) -> int:
        """Finish the due tasks claimed in one go; how many were claimed. ``busy``: the process
        runs tasks, so only files owed for ``BUSY_LAG_SECONDS`` are made."""
        claimed = self._finishing.claim(self._owner, BATCH, self._lock_seconds, due_for=BUSY_LAG_SECONDS if busy else 0.0)
        for one in claimed:
            self._finish(one)
        return len(claimed)

    def _finish(self, claimed: Claimed) -> None:
        task = self._store.get(claimed.task_id)
        if task is None or task.status is not TaskStatus.SUCCESS:  # removed by retention, or failed by a review
            self._finishing.drop(claimed.task_id)
            return
        with structlog.contextvars.bound_contextvars(task_id=task.id, attempt=claimed.attempts):
            try:
                made = self._executor.finish(task)
                self._finishing.add(self._store, claimed, self._owner, made)
            except Exception as exc:  # noqa: BLE001 - any failure is retried with backoff, then given up
                reason = f"{type(exc).__name__}: {exc}"[:500]
                again = self._finishing.failed(claimed, self._owner, reason)
                if again:
                    log.warning("renditions not made; retrying", error=reason)
                else:
                    log.error("renditions not made; given up", error=reason)
                self._count("retried" if again else "given_up")
                return
        self._count("done")

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.finishing.labels(outcome).inc()
