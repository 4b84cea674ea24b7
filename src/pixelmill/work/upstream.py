"""The upstream poller: a task that waits on an upstream holds no worker thread.

An upstream task takes 30-90 s. A worker that slept between polls of it held a thread all that
time, so a process with the default two workers had at most two upstream tasks in flight
(issue 21). Now a worker submits the task's operation, records the upstream task id
(``queue/upstream.py``) and parks the task:

- A parked task stays IN_PROGRESS, with the lease owner ``PARKED`` and its poll due in the
  engine's ``poll_seconds``. The worker is free at once.
- One poller per worker process, on an asyncio event loop in a thread of its own, asks the
  upstream after every parked task whose poll is due, many at a time over keep-alive
  connections. It renews the lease of those still running and records their progress.
- When the upstream task has ended (or waits for /modal, or is lost), the poller takes the task
  back: the lease passes to this process, and a thread of the poller's own runs the task again
  through the worker's path. The engine finds the recorded upstream task, reads its end, then
  downloads, re-hosts, screens and stores as before.
- A task whose upstream reports progress is looked at again when that progress says it ends, if
  that comes before the next poll: the rate since the last look (or since the submit) gives the
  time left. So a result waits for the poll cadence (3 s) only when the upstream says nothing;
  it costs about one poll more per task, never more often than every ``SOONEST_POLL_SECONDS``.
- Nothing is lost on a crash. The poll schedule is in the database: after a restart, any
  process's poller continues where the dead one stopped. When no poller is left for a lease's
  length, the lease sweep requeues the task, and its next attempt follows the same upstream task
  (it never submits again).
- A parked task that is cancelled, or fails its run timeout, leaves the schedule; its upstream
  task is cancelled (best effort). One that outlives the engine's ``timeout_seconds`` fails this
  attempt, retryable, and its upstream task is cancelled and forgotten: the retry submits anew.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import structlog
from sqlalchemy import Connection

from pixelmill.clock import Clock
from pixelmill.engines.remote import RemoteEngine, upstream_progress, upstream_running
from pixelmill.observe.metrics import WorkerMetrics
from pixelmill.queue.store import TaskStore
from pixelmill.queue.upstream import PARKED, Due, UpstreamTasks
from pixelmill.tasks.record import Task
from pixelmill.tasks.status import TaskStatus

log = structlog.get_logger("pixelmill.upstream")

#: Parked tasks taken per round; a round with this many goes on at once.
ROUND_SIZE = 500
#: Upstream requests in flight at once, per engine: an upstream answers a poll in milliseconds,
#: so a few kept-alive connections carry thousands of polls a second.
CONCURRENCY = 16
#: Longest sleep between rounds when none is due (the stop is seen this fast too).
MAX_TICK_SECONDS = 0.25
#: How often the poller looks for disabled accounts whose probe is due.
PROBE_TICK_SECONDS = 1.0
#: After a round that failed (the database restarting, say).
ERROR_PAUSE_SECONDS = 1.0
#: The earliest look after another at a task whose progress says it ends soon.
SOONEST_POLL_SECONDS = 0.5
#: Progress seen per task is kept this long (a task another process took back is forgotten).
SEEN_SECONDS = 3600
#: A parked task's lease is this many of its engine's poll intervals (at least the worker lease):
#: a poller that misses a round or two does not lose it to the lease sweep.
LEASE_POLLS = 10


class UpstreamPoller:
    def __init__(
        self,
        store: TaskStore,
        upstream: UpstreamTasks,
        engines: Mapping[str, RemoteEngine],
        clock: Clock,
        *,
        run: Callable[[Task], None],
        owner: str,
        threads: int,
        lease_seconds: float,
        retry_backoff_seconds: Sequence[float],
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._upstream = upstream
        self._engines = dict(engines)
        self._clock = clock
        self._run = run
        #: The lease owner of tasks handed back to this process.
        self.owner = owner
        self._lease_seconds = lease_seconds
        self._backoff = tuple(retry_backoff_seconds)
        self._cadence_ms = {name: int(e.poll_seconds(upstream.callbacks) * 1000) for name, e in self._engines.items()}
        self._tick = min(MAX_TICK_SECONDS, *(e.config.poll_seconds / 4 for e in self._engines.values()))
        #: The last progress seen of each waiting upstream task (ms, fraction), by (task, upstream
        #: id): the time it has left. A resubmitted task starts afresh.
        self._seen: dict[tuple[str, str | None], tuple[int, float]] = {}
        self._prune_at = 0
        #: Runs handed-back tasks: downloading and storing are a worker's work, not the loop's.
        self._runner = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="pixelmill-upstream-run")

    def park_lease(self, engine: str) -> float:
        return max(self._lease_seconds, LEASE_POLLS * self._cadence_ms[engine] / 1000)

    def park(self, task: Task, worker_id: str, stages: Mapping[str, float]) -> bool:
        """Hand a task that waits upstream from its worker to the poller (``Waiting``). False
        when the worker no longer held it."""
        poll_at = self._clock.now_ms() + self._cadence_ms[task.engine]
        parked = self._store.hand_over(
            task.id, worker_id, PARKED, self.park_lease(task.engine), stages=stages,
            within=lambda conn: self._upstream.schedule(conn, task.id, poll_at),
        )
        return parked is not None

    def close(self) -> None:
        """Handed-back tasks not started yet are dropped: their lease runs out and the sweep
        requeues them, and their next attempt follows the same upstream task."""
        self._runner.shutdown(wait=False, cancel_futures=True)

    # --- the loop ------------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event) -> None:
        """The poller thread's body, until ``stop`` is set."""
        asyncio.run(self._main(stop))

    async def _main(self, stop: threading.Event) -> None:
        # One client per account (its own base URL and key), the request limit per engine.
        clients = {
            (name, account): engine.status_session(account, CONCURRENCY) for name, engine in self._engines.items() for account in engine.accounts
        }
        limits = {name: asyncio.Semaphore(CONCURRENCY) for name in self._engines}
        next_probe = 0.0
        probing: asyncio.Future[None] | None = None
        try:
            while not stop.is_set():
                try:
                    # Probes run beside the rounds: an account that does not answer at all must
                    # not hold up the polls of every other.
                    if time.monotonic() >= next_probe and (probing is None or probing.done()):
                        next_probe = time.monotonic() + PROBE_TICK_SECONDS
                        probing = asyncio.ensure_future(asyncio.to_thread(self._probe))
                    taken = await self._round(clients, limits)
                except Exception:  # a database restart, a bug: this round is lost, the poller is not
                    log.exception("upstream poll round failed")
                    await asyncio.sleep(ERROR_PAUSE_SECONDS)
                    continue
                if taken < ROUND_SIZE:
                    await asyncio.sleep(self._tick)
        finally:
            for client in clients.values():
                await client.close()

    def _probe(self) -> None:
        """Probe the accounts their health disabled, each every ``probe_seconds``: one that
        answers again is enabled again."""
        try:
            for name, engine in self._engines.items():
                for account in self._upstream.accounts.to_probe(name, list(engine.accounts), engine.config.probe_seconds):
                    problem = engine.probe(account)
                    if self._upstream.accounts.probed(name, account, problem):
                        log.info("upstream account answers again; enabled", engine=name, account=account)
        except Exception:  # the database restarting, say: the next tick probes again
            log.exception("upstream account probes failed")

    async def _round(self, clients: Mapping[tuple[str, str], aiohttp.ClientSession], limits: Mapping[str, asyncio.Semaphore]) -> int:
        due = await asyncio.to_thread(self._upstream.due, self._cadence_ms, ROUND_SIZE)
        if not due:
            return 0

        answers: dict[str, dict[str, Any] | None] = {}

        async def ask(item: Due) -> None:
            async with limits[item.engine]:
                engine, client = self._engines[item.engine], clients.get((item.engine, item.account))
                if client is None:  # its account left the configuration: the engine says so when handed back
                    answers[item.task_id] = {"status": "LOST"}
                    return
                if not item.parked:
                    if item.upstream_id and item.status in (TaskStatus.CANCEL, TaskStatus.FAILURE):
                        await engine.cancel(client, item.account, item.upstream_id)  # nobody here waits for it any more
                    return
                assert item.upstream_id is not None  # a parked task's upstream accepted it
                self._requested(item.engine)
                answers[item.task_id] = await engine.status(client, item.account, item.upstream_id)

        async def ask_many(engine_name: str, account: str, items: list[Due]) -> None:
            """One status call for many parked tasks on one account (``list-by-condition``)."""
            async with limits[engine_name]:
                self._requested(engine_name)
                found = await self._engines[engine_name].statuses(clients[(engine_name, account)], account, [i.upstream_id or "" for i in items])
            for item in items:
                answers[item.task_id] = found[item.upstream_id or ""]

        single: list[Due] = []
        batched: dict[tuple[str, str], list[Due]] = {}
        for item in due:
            key = (item.engine, item.account)
            if item.parked and key in clients and self._engines[item.engine].batch_size(item.account):
                batched.setdefault(key, []).append(item)
            else:
                single.append(item)
        calls = [ask(item) for item in single]
        for (engine_name, account), items in batched.items():
            size = self._engines[engine_name].batch_size(account)
            calls += [ask_many(engine_name, account, items[i:i + size]) for i in range(0, len(items), size)]
        await asyncio.gather(*calls)
        # A running upstream task past the engine's timeout_seconds is cancelled there; the
        # attempt is given up when the round is settled.
        overdue = [i for i in due if i.parked and (a := answers.get(i.task_id)) is not None and upstream_running(a) and self._overdue(i)]
        await asyncio.gather(*(self._engines[i.engine].cancel(clients[(i.engine, i.account)], i.account, i.upstream_id or "") for i in overdue))
        await asyncio.to_thread(self._settle, [(item, answers.get(item.task_id)) for item in due if item.parked])
        return len(due)

    def _requested(self, engine: str) -> None:
        if self._metrics is not None:
            self._metrics.upstream_poll_requests.labels(engine).inc()

    def _overdue(self, item: Due) -> bool:
        return self._clock.now_ms() - item.accepted_at > self._engines[item.engine].config.timeout_seconds * 1000

    def _settle(self, polled: Sequence[tuple[Due, dict[str, Any] | None]]) -> None:
        """Record what the round saw, in the worker's terms: leases renewed and progress for the
        tasks still waiting, the others taken back and run."""
        waiting: dict[str, list[str]] = {}
        sooner: dict[str, int] = {}
        now = self._clock.now_ms()
        for item, answer in polled:
            lease = self.park_lease(item.engine)
            if self._metrics is not None:
                seen = "no_answer" if answer is None else "running" if upstream_running(answer) else "ended"
                self._metrics.upstream_polls.labels(item.engine, seen).inc()
            if answer is None or upstream_running(answer):
                if answer is not None and self._overdue(item):
                    self._seen.pop((item.task_id, item.upstream_id), None)
                    self._give_up(item)
                    continue
                fraction = upstream_progress(answer) if answer is not None else None
                if fraction:  # 0 % says nothing of the pace (a task still queued upstream)
                    followed = (item.task_id, item.upstream_id)
                    last = self._seen.get(followed, (item.accepted_at, 0.0))
                    self._seen[followed] = (now, fraction) if fraction > last[1] else last
                    at = ends_at(now, fraction, last, self._cadence_ms[item.engine])
                    if at is not None:
                        sooner[item.task_id] = at
                if fraction is not None and int(fraction * 100) >= item.progress + 5:
                    self._store.set_progress(item.task_id, PARKED, int(fraction * 100), lease)
                else:
                    waiting.setdefault(item.engine, []).append(item.task_id)
                continue
            self._seen.pop((item.task_id, item.upstream_id), None)
            task = self._store.hand_over(item.task_id, PARKED, self.owner, self._lease_seconds, within=self._unscheduled(item.task_id))
            if task is not None:
                self._runner.submit(self._run, task)
        for engine, ids in waiting.items():
            self._store.heartbeat(PARKED, ids, self.park_lease(engine))
        if sooner:
            self._upstream.poll_sooner(sooner)
        if now >= self._prune_at:  # tasks another process took back, or that ended meanwhile
            self._prune_at = now + SEEN_SECONDS * 1000
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < SEEN_SECONDS * 1000}

    def _unscheduled(self, task_id: str) -> Callable[[Connection], None]:
        return lambda conn: self._upstream.schedule(conn, task_id, None)

    def _give_up(self, item: Due) -> None:
        timeout = self._engines[item.engine].config.timeout_seconds
        status = self._store.fail(
            item.task_id, PARKED, f"upstream task {item.upstream_id} still running after {timeout:g}s",
            retryable=True, backoff_seconds=self._backoff,
        )
        if status is not None:  # cancelled upstream (the round did): the retry submits anew
            self._upstream.forget(item.task_id)
        log.warning("upstream task overdue; attempt failed", task_id=item.task_id, upstream_task_id=item.upstream_id,
                    next_status=status.value if status else None)


def ends_at(now: int, fraction: float, last: tuple[int, float], cadence_ms: int) -> int | None:
    """When (ms) a task at ``fraction`` done ends, at its pace since ``last`` (ms, fraction), if
    that is before its next poll (``cadence_ms`` from ``now``); never sooner than
    ``SOONEST_POLL_SECONDS`` from now. None: the usual poll comes first, or there is no pace."""
    then, before = last
    if fraction <= before or now <= then:
        return None
    left = (1.0 - fraction) * (now - then) / (fraction - before)
    soonest = int(SOONEST_POLL_SECONDS * 1000)
    if left + soonest >= cadence_ms:
        return None
    return now + max(soonest, int(left))
