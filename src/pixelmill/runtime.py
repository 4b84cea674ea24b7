"""Build every long-lived part from the settings, in one place. String aliases from settings
("local", "procedural") become instances only here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine as DbEngine
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from pixelmill.auth.keys import KeyStore
from pixelmill.auth.links import LinkSigner, instance_secret
from pixelmill.auth.sessions import ConsoleSessions
from pixelmill.billing.ledger import Ledger
from pixelmill.billing.prices import PriceTable, read_price_file
from pixelmill.clock import Clock, clock_for
from pixelmill.db.engine import make_engine
from pixelmill.db.migrate import upgrade
from pixelmill.engines.base import Engine
from pixelmill.engines.registry import build_engines
from pixelmill.engines.remote import RemoteEngine
from pixelmill.media.fetch import FetchPolicy, SafeFetcher
from pixelmill.media.inputs import InputImages
from pixelmill.media.output import output_profiles
from pixelmill.notify.deliver import WebhookDeliverer
from pixelmill.notify.outbox import Outbox
from pixelmill.observe.audit import AuditLog
from pixelmill.observe.health import HealthReport, Thresholds
from pixelmill.observe.metrics import WorkerMetrics, make_registry
from pixelmill.observe.operations import OperationsReport
from pixelmill.observe.refusals import RefusalLog
from pixelmill.queue.finishing import Finishing
from pixelmill.queue.retention import Retention
from pixelmill.queue.signals import ChangeFeed, HostChannel, Listener, Signals, Wakeup
from pixelmill.queue.store import TaskStore
from pixelmill.queue.upstream import UpstreamTasks
from pixelmill.safety.moderation import Moderator
from pixelmill.safety.review import ReviewQueue
from pixelmill.safety.screening import Screening, detector_installed
from pixelmill.safety.semantic import MISSING as SEMANTIC_MISSING
from pixelmill.safety.semantic import installed as semantic_installed
from pixelmill.settings import Settings, checking
from pixelmill.storage.base import Storage
from pixelmill.storage.local import LocalStorage
from pixelmill.storage.tracked import TrackedStorage
from pixelmill.submit.admission import Admission
from pixelmill.submit.batches import BatchService
from pixelmill.submit.evaluations import Evaluations
from pixelmill.submit.operations import Operations
from pixelmill.submit.service import TaskService
from pixelmill.tasks.idempotency import IdempotencyStore
from pixelmill.tasks.limits import RateLimiter
from pixelmill.templates.store import TemplateStore
from pixelmill.work.execute import Executor
from pixelmill.work.worker import WorkerPool


@dataclass
class Runtime:
    settings: Settings
    db: DbEngine
    keys: KeyStore
    tasks: TaskStore
    storage: Storage
    inputs: InputImages
    idempotency: IdempotencyStore
    limiter: RateLimiter
    engines: dict[str, Engine]
    service: TaskService
    operations: Operations
    executor: Executor
    outbox: Outbox
    batches: BatchService
    prices: PriceTable
    ledger: Ledger
    metrics: CollectorRegistry
    worker_metrics: WorkerMetrics
    health: HealthReport
    #: The operations page's lanes, workers, failures and charts.
    operations_report: OperationsReport
    retention: Retention
    finishing: Finishing
    #: What upstreams accepted for tasks (engines that run operations upstream).
    upstream: UpstreamTasks
    clock: Clock
    screening: Screening
    reviews: ReviewQueue
    audit: AuditLog
    templates: TemplateStore
    evaluations: Evaluations
    signals: Signals
    links: LinkSigner
    #: The web console's sign-ins (API keys exchanged for sessions).
    sessions: ConsoleSessions
    pools: list[WorkerPool] = field(default_factory=list)
    listener: Listener | HostChannel | None = None
    deliverer: WebhookDeliverer | None = None

    def warm_up(self) -> None:
        """Load the safety models an API process uses (input screening, the semantic check) before
        it takes requests, so no caller's submit pays for loading them."""
        if self.screening.detector is not None:
            self.screening.detector.load()
        if self.service.admission.moderator.semantic is not None:
            self.service.admission.moderator.semantic.load()

    def listen(self) -> None:
        """Receive other processes' wake-ups, and send them ours: an API process for its streams,
        a worker process for queued work and webhook events. Once per process. On SQLite the
        processes of one database file meet in a directory beside it (``<file>.signals``)."""
        if self.listener is not None:
            return
        if self.db.dialect.name == "postgresql":
            self.listener = Listener(self.db, self.signals)
            self.listener.start()
        elif self.db.url.database:
            channel = HostChannel(HostChannel.directory_for(self.db.url.database), self.signals)
            if channel.start():
                self.listener = channel

    def start_workers(self, size: int) -> WorkerPool:
        """Task workers, plus the webhook deliverer beside them (one per process)."""
        if self.screening.detector is not None:
            self.screening.detector.load()  # the first task should not pay for it
        pool = WorkerPool(
            self.tasks, self.executor, self.settings, self.signals.queued, size=size, metrics=self.worker_metrics, engines=list(self.engines),
            finishing=self.finishing, upstream=self.upstream, clock=self.clock,
            remote={name: e for name, e in ((n, engine.unwrapped()) for n, engine in self.engines.items()) if isinstance(e, RemoteEngine)},
            chores=(
                self.retention.sweep,
                self.idempotency.purge_expired,
                self.limiter.purge,
                lambda: self.outbox.purge(self.settings.webhook_retention_seconds),
                self.evaluations.advance_all,
                self.sessions.purge,
            ),
        )
        self.listen()
        pool.start()
        self.pools.append(pool)
        if self.deliverer is None:
            self.deliverer = WebhookDeliverer(
                self.outbox, self.inputs.fetcher, self.keys.webhook_secret, self.signals.webhooks,
                concurrency=self.settings.webhook_concurrency,
                timeout_seconds=self.settings.webhook_timeout_seconds,
                poll_seconds=self.settings.webhook_poll_seconds,
                metrics=self.worker_metrics,
            )
            self.deliverer.start()
        return pool

    def readiness(self) -> dict[str, str]:
        """Each part's state: "ok" or what is wrong. Ready when every value is "ok"."""
        checks: dict[str, Callable[[], object]] = {"database": lambda: self._ping_database(), "storage": self.storage.check}
        checks.update({f"engine:{name}": engine.check for name, engine in self.engines.items()})
        if self.screening.detector is not None:
            checks["screening"] = self.screening.detector.load
        checks.update({"workers" if len(self.pools) == 1 else f"workers:{i}": pool.check for i, pool in enumerate(self.pools)})
        states = {}
        for name, check in checks.items():
            try:
                check()
                states[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready", said in words
                states[name] = f"{type(exc).__name__}: {exc}"[:300]
        return states

    def _ping_database(self) -> None:
        with self.db.connect() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        for pool in self.pools:
            pool.stop()
        if self.listener is not None:
            self.listener.stop()
        if self.deliverer is not None:
            self.deliverer.stop()
        self.executor.close()
        self.inputs.close()
        for engine in self.engines.values():
            engine.close()
        self.storage.close()
        self.db.dispose()


def open_database(settings: Settings) -> DbEngine:
    """Create the engine and bring the schema up to date; a database that cannot be reached or
    made stops the start naming the setting."""
    with checking(settings, "data_dir"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url
    with checking(settings, "database_url", value=url, errors=(SQLAlchemyError,)):  # its password is not printed
        db = make_engine(url)
        upgrade(db)
    return db


def make_storage(settings: Settings) -> Storage:
    if settings.storage == "local":
        return LocalStorage(settings.resolved_storage_dir)
    if settings.storage == "s3":
        try:
            from pixelmill.storage.s3 import S3Storage  # boto3 is optional: imported only when asked for
        except ImportError as exc:
            raise ImportError(f"storage s3 needs the s3 extra: pip install 'pixelmill[s3]' ({exc})") from exc

        assert settings.s3_bucket is not None
        return S3Storage(
            settings.s3_bucket, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region, prefix=settings.s3_prefix,
            url_mode=settings.s3_url_mode, public_base_url=settings.s3_public_base_url, presign_seconds=settings.s3_presign_seconds,
        )
    raise ValueError(f"unknown storage backend {settings.storage!r}")


def make_inputs(settings: Settings, storage: Storage, screening: Screening | None = None) -> InputImages:
    policy = FetchPolicy(
        max_bytes=settings.input_max_bytes,
        max_redirects=settings.fetch_max_redirects,
        timeout_seconds=settings.fetch_timeout_seconds,
        allow=settings.fetch_allow,
    )
    return InputImages(storage, SafeFetcher(policy), max_pixels=settings.input_max_pixels, screening=screening)


def build_runtime(settings: Settings, clock: Clock | None = None) -> Runtime:
    """Every part, from settings that were checked when they were loaded. What a setting names
    (files, extras, engines, the database, storage) is checked here, in that order: what can be
    checked without writing anything comes first. A bad one raises ``SettingsError`` naming it."""
    if settings.screening == "nudenet" and not detector_installed():
        with checking(settings, "screening"):
            raise ImportError("needs the safety extra (ONNX Runtime and NudeNet's weights): pip install 'pixelmill[safety]'")
    with checking(settings, "screening_file"):
        screening = Screening.from_settings(settings.screening, settings.screening_file, settings.screening_batch_size)
    if settings.semantic_moderation and not semantic_installed():
        with checking(settings, "semantic_moderation"):
            raise ImportError(SEMANTIC_MISSING)
    with checking(settings, "moderation_file"):
        moderator = Moderator.from_file(settings.moderation_file, settings.semantic_threshold if settings.semantic_moderation else None)
    with checking(settings, "prices_file"):
        price_file = read_price_file(settings.prices_file) if settings.prices_file else {}
    with checking(settings, "engines"):
        engines = build_engines(settings)  # models load on first use: building them writes nothing
    try:
        db = open_database(settings)
        with checking(settings, "storage_dir" if settings.storage == "local" else "storage"):
            storage = make_storage(settings)
    except BaseException:
        for engine in engines.values():
            engine.close()
        raise
    clock = clock or clock_for(db, settings.fault_clock_skew_seconds)
    storage = TrackedStorage(storage, db, clock)  # every write registered: retention owns every file
    postgres = db.dialect.name == "postgresql"
    # On SQLite the wake-ups from other processes may be missing (HostChannel could not bind its
    # socket): streams look more often there.
    feed = ChangeFeed(fallback_seconds=2.0 if postgres else 0.25, max_streams=settings.max_streams)
    signals = Signals(postgres, feed, queued=Wakeup(), webhooks=Wakeup())
    outbox = Outbox(db, clock, settings.webhook_retry_seconds, on_recorded=signals.webhook_due, url_for=storage.url)
    ledger = Ledger(db, clock)
    prices = PriceTable(db, clock)
    with checking(settings, "prices_file"):
        prices.seed(price_file)
    retention = Retention(db, clock, storage, settings.task_retention_seconds)
    finishing = Finishing(db, clock)
    tasks = TaskStore(db, clock, on_change=[ledger.on_change, outbox.record, retention.on_change, finishing.on_change], signals=signals)
    registry, worker_metrics = make_registry(db, clock)
    if not screening.enabled and settings.screening != "off":
        # auto without the detector installed: say so once, loudly, instead of passing everything quietly.
        structlog.get_logger("pixelmill").warning("image screening is off: install pixelmill[safety] or set PIXELMILL_SCREENING=off")
    screening.add_observer(worker_metrics.observe_screening)
    worker_metrics.open_streams.set_function(lambda: feed.open_streams)
    audit = AuditLog(db, clock)
    templates = TemplateStore(db, clock, audit, settings.template_promotion_needs_evaluation)
    reviews = ReviewQueue(db, clock, tasks, audit)
    inputs = make_inputs(settings, storage, screening)
    idempotency = IdempotencyStore(db, clock, settings.idempotency_ttl_seconds, settings.idempotency_pending_seconds)
    limiter = RateLimiter(db, clock, settings.rate_window_seconds)
    admission = Admission(tasks, settings, ledger, limiter, idempotency, moderator, RefusalLog(db, clock), on_stage=worker_metrics.observe_stage)
    service = TaskService(tasks, settings, {name: e.model for name, e in engines.items()}, inputs, prices, admission,
                          storage_has=storage.exists, templates=templates)
    upstream = UpstreamTasks(db, clock, callback_base=settings.public_url,
                             callback_secret=instance_secret(db, "upstream-callbacks") if settings.public_url else "")
    executor = Executor(engines, storage, tasks, public_url=settings.public_url, profiles=output_profiles(settings),
                        renditions=settings.renditions, screening=screening, reviews=reviews, upstream=upstream)
    keys = KeyStore(db, clock)
    return Runtime(
        settings=settings,
        db=db,
        keys=keys,
        sessions=ConsoleSessions(db, clock, keys),
        tasks=tasks,
        storage=storage,
        inputs=inputs,
        idempotency=idempotency,
        limiter=limiter,
        engines=engines,
        service=service,
        operations=Operations(service, tasks, prices, inputs, settings),
        executor=executor,
        outbox=outbox,
        signals=signals,
        links=LinkSigner(instance_secret(db, "links")),
        batches=BatchService(service, tasks, db, clock, settings, url_for=storage.url),
        prices=prices,
        ledger=ledger,
        metrics=registry,
        worker_metrics=worker_metrics,
        retention=retention,
        finishing=finishing,
        upstream=upstream,
        clock=clock,
        screening=screening,
        reviews=reviews,
        audit=audit,
        templates=templates,
        evaluations=Evaluations(db, clock, templates, tasks, service, storage, audit),
        health=HealthReport(db, clock, Thresholds(
            success_rate_min=settings.health_success_rate_min,
            avg_completion_seconds_max=settings.health_avg_completion_seconds_max,
            modal_max=settings.health_modal_max,
            banned_share_max=settings.health_banned_share_max,
            stuck_after_seconds=settings.health_stuck_after_seconds,
        )),
        operations_report=OperationsReport(db, clock),
    )
