"""Prometheus metrics.

Two sources, chosen by what must agree:

- **From the database, at scrape time** (``DatabaseCollector``): everything about tasks, queues,
  the ledger, webhooks and refusals. Every API process reads the same rows, so any process
  answers the same figures and nothing is lost when a process restarts.
- **From this process** (``WorkerMetrics``): events that happen inside a worker and leave no row
  of their own, such as each engine error with its class and each retry. Counters, summed across
  processes in PromQL; ``pixelmill worker --metrics-port`` exposes a separate worker's.

The list of every metric with its meaning is in docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, Connection, Engine, case, func, select

from pixelmill.clock import Clock
from pixelmill.db.engine import read_tx
from pixelmill.db.schema import QUEUED_ROWS, ledger, refusals, tasks, upstream_accounts, webhook_events
from pixelmill.queue.accounts import live_upstream_tasks
from pixelmill.queue.upstream import PARKED
from pixelmill.tasks.actions import Lane
from pixelmill.tasks.status import TaskStatus

if TYPE_CHECKING:
    from pixelmill.safety.screening import Verdict

#: Seconds; from a cache hit (milliseconds) to a slow model run with a long queue.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 90, 120, 300, 600, 1800, 3600)
HOUR_MS = 3_600_000


def cache_hit() -> ColumnElement[bool]:
    """SQL: the task was answered from the request cache."""
    # as_string() is the JSON type's comparator, which SQLAlchemy's typing reaches through __getattr__ (Any).
    hit: ColumnElement[str | None] = tasks.c.params["cache_hit"].as_string()
    return hit.is_not(None)


class DatabaseCollector(Collector):
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self._clock.now_ms()
        t = tasks.c
        with read_tx(self._engine) as conn:
            by_state = GaugeMetricFamily(
                "pixelmill_tasks", "Tasks in the task table by action, status, engine and lane.",
                labels=["action", "status", "engine", "lane"],
            )
            for action, status, engine, lane, n in conn.execute(
                select(t.action, t.status, t.engine, t.lane, func.count()).group_by(t.action, t.status, t.engine, t.lane)
            ):
                by_state.add_metric([action, status, engine, lane], n)
            yield by_state

            yield self._histogram(
                conn, "pixelmill_task_completion_seconds",
                "Submit to SUCCESS of finished tasks (cache hits excluded), by lane.",
                t.finish_time - t.submit_time, [t.status == TaskStatus.SUCCESS.value, ~cache_hit()],
            )
            yield self._histogram(
                conn, "pixelmill_task_queue_wait_seconds",
                "Submit to first start of tasks a worker took, by lane.",
                t.start_time - t.submit_time, [t.start_time.is_not(None), ~cache_hit()],
            )

            depth = GaugeMetricFamily("pixelmill_queue_depth", "Tasks waiting (SUBMITTED or NOT_START) per lane.", labels=["lane"])
            oldest = GaugeMetricFamily("pixelmill_queue_oldest_age_seconds", "Age of the oldest waiting task per lane (0 when none).", labels=["lane"])
            waiting = {
                lane: (n, first) for lane, n, first in conn.execute(
                    select(t.lane, func.count(), func.min(t.submit_time)).where(QUEUED_ROWS).group_by(t.lane)
                )
            }
            for lane in Lane:
                n, first = waiting.get(lane.value, (0, None))
                depth.add_metric([lane.value], n)
                oldest.add_metric([lane.value], (now - first) / 1000 if first is not None else 0)
            yield depth
            yield oldest

            parked = GaugeMetricFamily(
                "pixelmill_upstream_waiting", "Tasks parked while their upstream task runs (no worker holds them), by engine.", labels=["engine"],
            )
            for engine, n in conn.execute(
                select(t.engine, func.count()).where(t.status == TaskStatus.IN_PROGRESS.value, t.lease_owner == PARKED).group_by(t.engine)
            ):
                parked.add_metric([engine], n)
            yield parked
            yield from self._accounts(conn)
            modal = conn.execute(select(func.count()).where(t.status == TaskStatus.MODAL.value)).scalar_one()
            yield GaugeMetricFamily("pixelmill_tasks_in_modal", "Tasks waiting for a /modal call.", value=modal)

            hits = CounterMetricFamily("pixelmill_cache_hits", "Tasks answered from the request cache.", labels=["action"])
            for action, n in conn.execute(select(t.action, func.count()).where(cache_hit()).group_by(t.action)):
                hits.add_metric([action], n)
            yield hits

            banned = conn.execute(select(func.count()).select_from(refusals).where(refusals.c.code == 24)).scalar_one()
            yield CounterMetricFamily("pixelmill_banned_prompts", "Submits refused with code 24 (banned prompt).", value=banned)

            retries = conn.execute(select(func.coalesce(func.sum(t.attempt - 1), 0)).where(t.attempt > 1)).scalar_one()
            yield CounterMetricFamily("pixelmill_task_retries", "Attempts beyond the first, over all tasks.", value=retries)

            units = CounterMetricFamily("pixelmill_ledger_units", "Quota units by ledger entry kind (charge, refund, credit).", labels=["kind", "price_key"])
            for kind, price_key, total in conn.execute(
                select(ledger.c.kind, ledger.c.price_key, func.sum(func.abs(ledger.c.amount))).group_by(ledger.c.kind, ledger.c.price_key)
            ):
                units.add_metric([kind, price_key or ""], total)
            yield units

            hooks = GaugeMetricFamily("pixelmill_webhook_events", "Webhook outbox events by state.", labels=["state"])
            attempts = CounterMetricFamily("pixelmill_webhook_attempts", "Delivery attempts of events still in the outbox.", labels=["state"])
            for state, n, tries in conn.execute(
                select(webhook_events.c.state, func.count(), func.sum(webhook_events.c.attempts)).group_by(webhook_events.c.state)
            ):
                hooks.add_metric([state], n)
                attempts.add_metric([state], tries or 0)
            yield hooks
            yield attempts

    @staticmethod
    def _accounts(conn: Connection) -> Iterator[Metric]:
        """The remote engines' upstream accounts, as every process shares them (queue/accounts.py)."""
        a = upstream_accounts.c
        labels = ["engine", "account"]
        enabled = GaugeMetricFamily("pixelmill_upstream_account_enabled", "1 while the account takes tasks, 0 while disabled.", labels=labels)
        in_flight = GaugeMetricFamily("pixelmill_upstream_account_in_flight", "Upstream tasks on the account now (running and queued there).",
                                      labels=labels)
        submits = CounterMetricFamily("pixelmill_upstream_account_submits", "Submits to the account by outcome (accepted, refused).",
                                      labels=[*labels, "outcome"])
        ended = CounterMetricFamily("pixelmill_upstream_account_tasks", "The account's upstream tasks that ended, by outcome (succeeded, failed).",
                                    labels=[*labels, "outcome"])
        latency = CounterMetricFamily("pixelmill_upstream_account_latency_seconds",
                                      "Accepted to ended, summed over the account's succeeded upstream tasks (divide by tasks{outcome=succeeded}).",
                                      labels=labels)
        counts = live_upstream_tasks(conn)
        for row in conn.execute(select(upstream_accounts).order_by(a.engine, a.name)):
            names = [row.engine, row.name]
            enabled.add_metric(names, 1 if row.disabled_reason is None else 0)
            in_flight.add_metric(names, counts.get((row.engine, row.name), 0))
            submits.add_metric([*names, "accepted"], row.submits)
            submits.add_metric([*names, "refused"], row.refused)
            ended.add_metric([*names, "succeeded"], row.succeeded)
            ended.add_metric([*names, "failed"], row.failed)
            latency.add_metric(names, row.latency_ms / 1000)
        yield from (enabled, in_flight, submits, ended, latency)

    @staticmethod
    def _histogram(
        conn: Connection, name: str, documentation: str, seconds_ms: ColumnElement[Any], where: Sequence[ColumnElement[bool]],
    ) -> HistogramMetricFamily:
        """A histogram over table rows, made in one query: one SUM(CASE) per bucket."""
        t = tasks.c
        columns = [func.sum(case((seconds_ms <= int(b * 1000), 1), else_=0)) for b in BUCKETS]
        rows = conn.execute(
            select(t.lane, func.count(), func.coalesce(func.sum(seconds_ms), 0), *columns).where(*where).group_by(t.lane)
        ).all()
        family = HistogramMetricFamily(name, documentation, labels=["lane"])
        for lane, count, total_ms, *cumulative in rows:
            buckets = [(str(b), int(c or 0)) for b, c in zip(BUCKETS, cumulative, strict=True)] + [("+Inf", int(count))]
            family.add_metric([lane], buckets, sum_value=total_ms / 1000)
        return family


class WorkerMetrics:
    """Counters of one process's workers, in a registry of their own: ``serve`` shows them beside
    the database figures, a separate ``pixelmill worker --metrics-port`` shows only them."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.engine_errors = Counter(
            "pixelmill_engine_errors", "Failed attempts by engine and class (retryable, fatal).", ["engine", "error_class"], registry=registry,
        )
        self.webhook_deliveries = Counter(
            "pixelmill_webhook_deliveries", "Webhook delivery attempts by result (delivered, failed).", ["result"], registry=registry,
        )
        self.screening_seconds = Histogram(
            "pixelmill_screening_seconds", "Time of one screening call (a task's images, or a request's inputs), by purpose (output, input).",
            ["purpose"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=registry,
        )
        self.thread_restarts = Counter(
            "pixelmill_worker_thread_restarts", "Pool threads that ended and were restarted by the supervisor, by kind.", ["kind"], registry=registry,
        )
        self.workers_live = Gauge(
            "pixelmill_workers_live", "Worker threads alive in this process, by lane they take work from.", ["lane"], registry=registry,
        )
        self.workers_busy = Gauge("pixelmill_workers_busy", "Worker threads of this process running a task.", registry=registry)
        self.claims_failing = Gauge(
            "pixelmill_worker_claims_failing", "1 while this process's workers cannot claim tasks (database unreachable).", registry=registry,
        )
        self.stage_seconds = Histogram(
            "pixelmill_stage_seconds", "Where tasks' time goes, by stage (observe/stages.py): accept, queue, claim, engine, preview, "
            "screening, postprocess, storage, finalize.", ["stage"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300), registry=registry,
        )
        self.open_streams = Gauge(
            "pixelmill_open_streams", "Long-polls, event streams and waiting image requests this process holds (at most PIXELMILL_MAX_STREAMS).",
            registry=registry,
        )
        self.upstream_polls = Counter(
            "pixelmill_upstream_polls", "Polls of parked tasks' upstream tasks by this process's poller, by engine and what they saw "
            "(running, ended, no_answer).", ["engine", "seen"], registry=registry,
        )
        self.upstream_poll_requests = Counter(
            "pixelmill_upstream_poll_requests", "Status requests the poller sent upstream, by engine (one asks after up to 100 "
            "tasks where the upstream answers many at once).", ["engine"], registry=registry,
        )
        self.finishing = Counter(
            "pixelmill_finishing", "Tasks whose renditions and provenance records were made after SUCCESS, by outcome (done, retried, "
            "given_up).", ["outcome"], registry=registry,
        )
        self.screened_images = Counter(
            "pixelmill_screened_images", "Images screened, by purpose (output, input) and decision (pass, review, block).",
            ["purpose", "decision"], registry=registry,
        )

    def report_pool(self, health: Mapping[str, Any]) -> None:
        """Set the gauges from a worker pool's ``health()`` (the supervisor calls this)."""
        for lane in health["lanes"]:
            self.workers_live.labels(lane).set(health["live"])
        self.workers_busy.set(health["busy"])
        self.claims_failing.set(0 if health["claims"] == "ok" else 1)

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(stage).observe(max(0.0, seconds))

    def observe_screening(self, purpose: str, seconds: float, verdicts: Sequence[Verdict]) -> None:
        self.screening_seconds.labels(purpose).observe(seconds)
        for verdict in verdicts:
            self.screened_images.labels(purpose, verdict.decision).inc()


def make_registry(engine: Engine, clock: Clock) -> tuple[CollectorRegistry, WorkerMetrics]:
    """What an API process's /metrics serves: the database figures and its own workers' counters."""
    worker = WorkerMetrics()
    registry = CollectorRegistry(auto_describe=True)
    registry.register(DatabaseCollector(engine, clock))
    registry.register(worker.registry)
    return registry, worker
