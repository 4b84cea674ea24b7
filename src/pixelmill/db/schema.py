"""Table definitions used by the stores. Migrations (``pixelmill/migrations``) create them; keep
the two in step (``tests/db/test_migrations.py`` checks that they match)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    false,
    literal_column,
    text,
)

metadata = MetaData()

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    #: How long finished tasks and their files are kept; None: PIXELMILL_TASK_RETENTION_SECONDS.
    Column("retention_seconds", BigInteger, nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("name", String(200), nullable=False),
    Column("is_admin", Boolean, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    # Per-key limits; NULL = the deployment default (settings).
    Column("rate_per_minute", Integer, nullable=True),
    Column("max_concurrent", Integer, nullable=True),
    # The key's default webhook (tasks without their own webhook_url use it) and the secret every
    # delivery for this key is signed with (Standard Webhooks, "whsec_..."); made when first needed.
    Column("webhook_url", Text, nullable=True),
    Column("webhook_events", JSON, nullable=True),
    Column("webhook_secret", String(64), nullable=True),
    #: Quota units left; NULL = unlimited. Always equal to the sum of the key's ledger amounts
    #: while limited (billing/ledger.py keeps both in one transaction).
    Column("balance", BigInteger, nullable=True),
    #: The output profile of this key's tasks that name none; NULL = the deployment's default.
    Column("output_profile", String(64), nullable=True),
    #: The key may only submit imagines through templates (no free prompts).
    Column("require_template", Boolean, nullable=False, server_default=false()),
)

TASK_STATUSES = ("NOT_START", "SUBMITTED", "MODAL", "IN_PROGRESS", "SUCCESS", "FAILURE", "CANCEL")

#: Waiting tasks (tasks/status.py QUEUED): the partial indexes' condition. Queries over waiting
#: tasks use ``QUEUED_ROWS`` below, this condition with the values written into the SQL: only
#: then can the planner see that the partial index holds every row they want (a bound list could
#: hold anything), and walk the waiting tasks instead of the lane's whole history.
QUEUED_VALUES = ("NOT_START", "SUBMITTED")
STARRED = text("starred_at IS NOT NULL")
QUEUED_ONLY = text("status IN ({})".format(", ".join(f"'{value}'" for value in QUEUED_VALUES)))
#: Queued or running (tasks/status.py ACTIVE): what counts against a key's concurrency cap.
ACTIVE_VALUES = ("IN_PROGRESS", "NOT_START", "SUBMITTED")

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("action", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("progress", Integer, nullable=False),
    Column("prompt", Text, nullable=False),
    Column("final_prompt", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("params", JSON, nullable=False),
    Column("engine", String(64), nullable=False),
    Column("seed", BigInteger, nullable=True),
    Column("quota", Integer, nullable=False),
    Column("parent_task_id", String(32), ForeignKey("tasks.id"), nullable=True),
    Column("image_index", Integer, nullable=True),
    Column("result", JSON, nullable=True),
    Column("fail_reason", Text, nullable=True),
    Column("submit_time", BigInteger, nullable=False),
    Column("start_time", BigInteger, nullable=True),
    Column("finish_time", BigInteger, nullable=True),
    # Queue columns: the row is the job.
    Column("lane", String(16), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("scheduled_at", BigInteger, nullable=False),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires_at", BigInteger, nullable=True),
    Column("errors", JSON, nullable=False),
    Column("finalized_at", BigInteger, nullable=True),
    # Request cache: the canonical request with its seed, and without it (see tasks/cache.py).
    #: The API key that submitted the task (per-key concurrency caps count by it).
    Column("api_key_id", String(32), nullable=True),
    Column("cache_key", String(64), nullable=True),
    Column("prompt_key", String(64), nullable=True),
    #: Start-time fair queueing between tenants inside a lane (see queue/fairness.py).
    Column("fair_seq", BigInteger, nullable=False, server_default="0"),
    # No foreign key: SQLite cannot add one to an existing table without rebuilding it.
    Column("batch_id", String(32), nullable=True),
    Column("batch_index", Integer, nullable=True),
    #: Where this task's events go: {"url", "events", "base"}; NULL = no webhook.
    Column("webhook", JSON(none_as_null=True), nullable=True),
    #: Storage key of the latest low-resolution preview while the engine runs.
    Column("preview_key", String(128), nullable=True),
    #: Milliseconds per stage of the task's life (observe/stages.py); NULL for tasks from before.
    Column("stages", JSON(none_as_null=True), nullable=True),
    #: Someone watches the task (its event stream, or a request that asked for previews): the
    #: engine's previews are stored only then.
    Column("watched", Boolean, nullable=False, server_default=false()),
    #: When its tenant starred it (the console's gallery); NULL when not starred.
    Column("starred_at", BigInteger, nullable=True),
    CheckConstraint(f"status IN {TASK_STATUSES!r}", name="ck_tasks_status"),
    CheckConstraint("progress BETWEEN 0 AND 100", name="ck_tasks_progress"),
    CheckConstraint("lane IN ('interactive', 'batch')", name="ck_tasks_lane"),
    CheckConstraint("attempt >= 0 AND attempt <= max_attempts", name="ck_tasks_attempt"),
    CheckConstraint(
        "(status = 'IN_PROGRESS') = (lease_owner IS NOT NULL)", name="ck_tasks_lease_iff_running"
    ),
    # Claims walk these, over waiting tasks only (however long the history): a lane's next place
    # in the fair order, then the best task of that place's tenant (queue/fairness.py).
    Index("ix_tasks_queued_fair", "lane", "fair_seq", "tenant_id", postgresql_where=QUEUED_ONLY, sqlite_where=QUEUED_ONLY),
    Index("ix_tasks_queued_tenant", "lane", "tenant_id", "priority", "submit_time", "id",
          postgresql_where=QUEUED_ONLY, sqlite_where=QUEUED_ONLY),
    # A waiting task's place among its tenant's, for its queue position.
    Index("ix_tasks_queued_tenant_fair", "lane", "tenant_id", "fair_seq", postgresql_where=QUEUED_ONLY, sqlite_where=QUEUED_ONLY),
    # A tenant's newest place in a lane's fair order (queue/fairness.py).
    Index("ix_tasks_tenant_fair", "tenant_id", "lane", "fair_seq"),
    Index("ix_tasks_batch", "batch_id", "batch_index"),
    Index("ix_tasks_lease", "status", "lease_expires_at"),
    Index("ix_tasks_tenant", "tenant_id", "submit_time"),
    Index("ix_tasks_parent", "parent_task_id"),  # a task's children: lineage, and retention's FK checks
    Index("ix_tasks_status_finish", "status", "finish_time"),  # what finished lately (operations)
    Index("ix_tasks_tenant_starred", "tenant_id", "submit_time", postgresql_where=STARRED, sqlite_where=STARRED),
    Index("ix_tasks_cache", "tenant_id", "cache_key"),
    Index("ix_tasks_key_status", "api_key_id", "status"),
    Index("ix_tasks_prompt_key", "tenant_id", "prompt_key"),
    Index("ix_tasks_finish", "tenant_id", "finish_time"),
)

QUEUED_ROWS = tasks.c.status.in_([literal_column(f"'{value}'") for value in QUEUED_VALUES])

#: Kept by triggers (migration 0013) in the transaction that inserts, updates or deletes a task,
#: so that a submit reads its lane's queue depth and fair-order clock instead of counting rows.
#: ``waiting``: the lane's queued tasks; ``last_seq``: the last place given in its fair order
#: (queue/fairness.py). A lane's figures are the sum and the maximum over its rows (``shard``:
#: PostgreSQL spreads them over 8 rows against lock contention; SQLite keeps one).
lane_state = Table(
    "lane_state",
    metadata,
    Column("lane", String(16), nullable=False),
    Column("shard", Integer, nullable=False),
    Column("waiting", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    PrimaryKeyConstraint("lane", "shard"),
)

#: A key's queued and running tasks per lane, kept by the same triggers (its concurrency cap).
key_active = Table(
    "key_active",
    metadata,
    Column("api_key_id", String(32), nullable=False),
    Column("lane", String(16), nullable=False),
    Column("active", BigInteger, nullable=False),
    PrimaryKeyConstraint("api_key_id", "lane"),
)

#: One row per (API key, Idempotency-Key). ``task_ids`` NULL while the first request is still
#: being accepted; the primary key is what makes concurrent duplicates impossible.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key_id", String(32), ForeignKey("api_keys.id"), primary_key=True),
    Column("idem_key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    # none_as_null: Python None must be SQL NULL here ("pending" is tested with IS NULL).
    Column("task_ids", JSON(none_as_null=True), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

#: Submissions per API key per minute window: shared by every API process.
rate_windows = Table(
    "rate_windows",
    metadata,
    Column("key_id", String(32), ForeignKey("api_keys.id"), primary_key=True),
    Column("window", BigInteger, primary_key=True),
    Column("count", Integer, nullable=False),
)

#: A batch job: many tasks submitted together to the batch lane; counts come from its tasks.
batches = Table(
    "batches",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("api_key_id", String(32), nullable=True),
    Column("total", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("cancelled_at", BigInteger, nullable=True),
    Column("metadata", JSON, nullable=False),
    Index("ix_batches_tenant", "tenant_id", "created_at"),
)

WEBHOOK_STATES = ("pending", "delivered", "failed", "superseded")

#: The webhook outbox: one row per event, written in the transaction that changed the task, so an
#: event can be neither lost nor sent for a change that did not happen (notify/outbox.py).
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", String(40), primary_key=True),  # the webhook-id header, stable across retries
    Column("task_id", String(32), ForeignKey("tasks.id"), nullable=False),
    Column("seq", Integer, nullable=False),  # per task: the order a receiver must see
    Column("api_key_id", String(32), nullable=True),
    Column("url", Text, nullable=False),
    Column("event", String(16), nullable=False),
    Column("payload", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("locked_by", String(128), nullable=True),
    Column("locked_until", BigInteger, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("delivered_at", BigInteger, nullable=True),
    CheckConstraint(f"state IN {WEBHOOK_STATES!r}", name="ck_webhook_events_state"),
    Index("ix_webhook_events_due", "state", "next_attempt_at"),
    Index("ix_webhook_events_task", "task_id", "seq", unique=True),
)

LEDGER_KINDS = ("charge", "refund", "credit")

#: Append-only: every change of a key's balance, and every charge of an unlimited key (usage).
#: The unique (task_id, kind) makes a second charge or refund of one task impossible.
ledger = Table(
    "ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_id", String(32), ForeignKey("api_keys.id"), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("task_id", String(32), nullable=True),
    Column("kind", String(16), nullable=False),
    #: Signed units: a charge is negative, a refund or credit positive.
    Column("amount", BigInteger, nullable=False),
    Column("price_key", String(64), nullable=True),
    Column("engine", String(64), nullable=True),
    Column("note", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    CheckConstraint(f"kind IN {LEDGER_KINDS!r}", name="ck_ledger_kind"),
    Index("ux_ledger_task_kind", "task_id", "kind", unique=True),
    Index("ix_ledger_key_time", "key_id", "created_at"),
    Index("ix_ledger_time", "created_at"),
)

#: The price table: units per price key, set by file at start or by the admin API.
prices = Table(
    "prices",
    metadata,
    Column("price_key", String(64), primary_key=True),
    Column("units", Integer, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    CheckConstraint("units >= 0", name="ck_prices_units"),
)

#: Submits refused for their content (code 24, banned prompt), kept so the share of such refusals
#: can be reported from the database, the same in every process.
refusals = Table(
    "refusals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_id", String(32), nullable=True),
    Column("tenant_id", String(64), nullable=True),
    Column("code", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_refusals_time", "created_at"),
)

#: Every file ever written to storage, with when it was last written (``storage/tracked.py``):
#: retention deletes a file nobody points at once it is old, whatever wrote it (a result, an
#: upload, a fetched input, a preview, an evaluation sheet, a lost attempt's output).
stored_files = Table(
    "stored_files",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("last_put_at", BigInteger, nullable=False),
    Index("ix_stored_files_age", "last_put_at"),
)

#: Every stored file a task's result points at (several tasks may share one: cache hits, picks).
#: Retention deletes a file once no kept task points at it.
task_files = Table(
    "task_files",
    metadata,
    Column("task_id", String(32), nullable=False),
    Column("key", String(128), nullable=False),
    PrimaryKeyConstraint("task_id", "key"),
    Index("ix_task_files_key", "key"),
)

#: Finished tasks whose renditions and provenance records are still to be made (queue/finishing.py):
#: written in the transaction that gave the task its images, removed in the one that adds the files.
finishing = Table(
    "finishing",
    metadata,
    Column("task_id", String(32), primary_key=True),
    Column("due_at", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    #: A finisher's claim: until then no other finisher takes the row (a crash lets it run out).
    Column("locked_by", String(128), nullable=True),
    Column("locked_until", BigInteger, nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_finishing_due", "due_at"),
)

#: A task's operation as an upstream runs it (engines that run operations upstream, issue 21). The
#: row is written before the submit, with the Idempotency-Key it sends, and ``upstream_id`` as soon
#: as the upstream accepts: a later attempt (after a crash, or a failed download) continues that
#: upstream task instead of submitting again. Removed when the upstream task ended without a
#: result, so that the next attempt submits anew; otherwise kept with the task (retention).
upstream_tasks = Table(
    "upstream_tasks",
    metadata,
    Column("task_id", String(32), primary_key=True),
    Column("engine", String(64), nullable=False),
    Column("submit_key", String(160), nullable=False),
    Column("upstream_id", String(128), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("accepted_at", BigInteger, nullable=True),
    #: When the upstream poller asks after the task next: set while the task is parked (no worker
    #: holds it while it waits upstream, ``work/upstream.py``), NULL otherwise.
    Column("poll_at", BigInteger, nullable=True),
    #: The account of the engine's pool the submit went to (or is being sent to): follow-ups and
    #: later attempts go there too. NULL for rows written before pools (the "default" account).
    Column("account", String(64), nullable=True),
    #: When the upstream task ended with a result: it no longer takes a place on its account.
    Column("done_at", BigInteger, nullable=True),
    Index("ix_upstream_tasks_poll", "poll_at"),
    Index("ix_upstream_tasks_account", "engine", "account", "done_at"),
)

#: The accounts of remote engines' pools (issue 21), one row per engine and account, shared by
#: every process: health (disabled with the reason), the per-minute and daily submit windows,
#: the round-robin turn, and what the account did (for the admin API and metrics). The limits
#: themselves (capacity, weight, speeds) are configuration, read from ``PIXELMILL_ENGINES``.
upstream_accounts = Table(
    "upstream_accounts",
    metadata,
    Column("engine", String(64), primary_key=True),
    Column("name", String(64), primary_key=True),
    #: Why the account takes no new tasks; NULL while it does.
    Column("disabled_reason", Text, nullable=True),
    #: "health" (refusals in a row: a probe re-enables it), "account" (a ban, a refused key) or
    #: "admin" (only an admin enables those two).
    Column("disabled_by", String(16), nullable=True),
    Column("disabled_at", BigInteger, nullable=True),
    Column("probed_at", BigInteger, nullable=True),
    #: Submits refused in a row (reset by one that is accepted).
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("window_start", BigInteger, nullable=False, server_default="0"),
    Column("window_count", Integer, nullable=False, server_default="0"),
    #: Days since the epoch (UTC) that ``day_count`` counts.
    Column("day", Integer, nullable=False, server_default="0"),
    Column("day_count", Integer, nullable=False, server_default="0"),
    Column("last_pick", BigInteger, nullable=False, server_default="0"),
    Column("submits", BigInteger, nullable=False, server_default="0"),
    Column("refused", BigInteger, nullable=False, server_default="0"),
    Column("succeeded", BigInteger, nullable=False, server_default="0"),
    Column("failed", BigInteger, nullable=False, server_default="0"),
    #: Sum over succeeded upstream tasks of accepted → ended, for the mean latency.
    Column("latency_ms", BigInteger, nullable=False, server_default="0"),
)

#: The web console's sign-ins (console/): a session is made from an API key and holds only a hash
#: of its cookie; every request checks the key again, so revoking the key ends its sessions.
console_sessions = Table(
    "console_sessions",
    metadata,
    #: sha256 of the cookie's token: the token itself is never stored.
    Column("id", String(64), primary_key=True),
    Column("key_id", String(32), ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False),
    #: The CSRF token of the session's forms.
    Column("csrf", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("seen_at", BigInteger, nullable=False),
    Index("ix_console_sessions_key", "key_id"),
)

#: Tasks removed by retention, so that asking for one answers "expired", not "unknown".
expired_tasks = Table(
    "expired_tasks",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("expired_at", BigInteger, nullable=False),
)

REVIEW_STATES = ("pending", "approved", "rejected")

#: Output images that screening routed to a person. The image is held here, not in storage, so
#: nothing can serve it before someone approves it; approval publishes it and clears ``image``.
reviews = Table(
    "reviews",
    metadata,
    #: ``<task id>-<index>``: a retried attempt replaces its own earlier hold.
    Column("id", String(48), primary_key=True),
    Column("task_id", String(32), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    #: The findings that sent it here: [{label, score, box}].
    Column("reasons", JSON, nullable=False),
    #: Lossless PNG of the image as the engine made it; None once decided.
    Column("image", LargeBinary, nullable=True),
    Column("model", String(200), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("decided_at", BigInteger, nullable=True),
    Column("decided_by", String(64), nullable=True),
    Column("note", Text, nullable=True),
    #: A reviewer's claim: until then no one else decides it (a claim that runs out frees it).
    Column("claimed_by", String(64), nullable=True),
    Column("claimed_until", BigInteger, nullable=True),
    CheckConstraint(f"state IN {REVIEW_STATES!r}", name="ck_reviews_state"),
    Index("ix_reviews_state", "state", "created_at"),
    Index("ix_reviews_task", "task_id"),
)

#: Who decided what, when: review decisions and template changes. Append-only.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    #: The API key id (or "cli:<user>") that acted.
    Column("actor", String(64), nullable=False),
    #: What was acted on: "review", "template".
    Column("subject_kind", String(16), nullable=False),
    Column("subject_id", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("detail", JSON, nullable=False),
    Index("ix_audit_subject", "subject_kind", "subject_id", "at"),
)

TEMPLATE_STATES = ("draft", "published")

#: Versioned prompt templates (templates/). Names are deployment-wide.
templates = Table(
    "templates",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("description", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(64), nullable=False),
    #: The tenant whose keys may read and use it; NULL: every tenant (shared by an admin).
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=True),
)

#: Secrets of this deployment, made at first start and shared by every process through the
#: database: ``links`` signs the key-less links the API hands out (evaluation contact sheets).
instance_secrets = Table(
    "instance_secrets",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", String(128), nullable=False),
)

#: A draft may change; a published version never does (the store only updates drafts).
template_versions = Table(
    "template_versions",
    metadata,
    Column("template", String(64), ForeignKey("templates.name"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    #: templates.spec.TemplateSpec as JSON.
    Column("spec", JSON, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("author", String(64), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("published_at", BigInteger, nullable=True),
    PrimaryKeyConstraint("template", "version"),
    CheckConstraint(f"state IN {TEMPLATE_STATES!r}", name="ck_template_versions_state"),
)

#: A release tag (stable, canary, ...) of a template: the version it serves, and an optional
#: candidate served to ``percent`` of subjects while a rollout runs.
template_releases = Table(
    "template_releases",
    metadata,
    Column("template", String(64), ForeignKey("templates.name"), nullable=False),
    Column("tag", String(32), nullable=False),
    Column("version", Integer, nullable=False),
    Column("candidate", Integer, nullable=True),
    Column("percent", Integer, nullable=False),
    Column("paused", Boolean, nullable=False),
    #: What ``rollback`` returns to when no rollout is running.
    Column("previous_version", Integer, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", String(64), nullable=False),
    PrimaryKeyConstraint("template", "tag"),
    CheckConstraint("percent >= 0 AND percent <= 100", name="ck_template_releases_percent"),
)

#: Named lists of variable sets a template is evaluated on.
evaluation_sets = Table(
    "evaluation_sets",
    metadata,
    Column("template", String(64), ForeignKey("templates.name"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("items", JSON, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", String(64), nullable=False),
    PrimaryKeyConstraint("template", "name"),
)

EVALUATION_STATES = ("running", "done")

#: A candidate version against a baseline on an evaluation set: task pairs, scores, contact sheet.
evaluations = Table(
    "evaluations",
    metadata,
    #: Random and unguessable: the contact sheet page is reachable by its id alone.
    Column("id", String(40), primary_key=True),
    Column("template", String(64), ForeignKey("templates.name"), nullable=False),
    Column("set_name", String(64), nullable=False),
    Column("baseline", Integer, nullable=False),
    Column("candidate", Integer, nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    #: [{variables, baseline_task, candidate_task, score, ...}]
    Column("pairs", JSON, nullable=False),
    Column("summary", JSON, nullable=True),
    Column("sheet_key", String(128), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    CheckConstraint(f"state IN {EVALUATION_STATES!r}", name="ck_evaluations_state"),
    Index("ix_evaluations_template", "template", "created_at"),
)
