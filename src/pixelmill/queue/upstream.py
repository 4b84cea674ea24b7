"""Upstream tasks: what an upstream has accepted for a task, kept so that it is never sent twice.

An engine that runs operations upstream (``engines/remote/``) submits a task's operation and
follows the upstream task to its end. Between the two lies the risk issue 21 measured: a process
killed while its tasks waited upstream left no trace of them, and the retries after the restart
submitted every one again, under new Idempotency-Keys (a Midjourney-style upstream bills each).

So the record is in the database before and after the submit:
- before: the Idempotency-Key the submit carries. A crash between the submit and its answer
  leaves the key; the next attempt sends the same key, and the upstream answers with the task
  it already made instead of making a second one.
- after: the upstream task id, as soon as the upstream accepts. The next attempt of the task
  (after a restart, a lost lease, a download that failed) follows that upstream task.
- An upstream task that ended without a result (FAILURE, CANCEL) is forgotten, so that a retry
  of the task submits anew, under a new key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, bindparam, delete, select, update

from pixelmill.clock import Clock
from pixelmill.db.engine import dialect_insert, write_tx
from pixelmill.db.schema import tasks, upstream_tasks
from pixelmill.queue.accounts import Offer, Reserved, Slot, UpstreamAccounts
from pixelmill.tasks.status import TaskStatus

#: The account of an engine that names one upstream, not a pool (and of rows from before pools).
DEFAULT_ACCOUNT = "default"
#: The lease owner of a parked task: no worker holds it while it waits upstream; the upstream
#: poller of any process follows it and renews the lease (``work/upstream.py``).
PARKED = "upstream"


@dataclass(frozen=True)
class Due:
    """A parked task whose poll is due (``parked``: False when it no longer is, see ``due``)."""

    task_id: str
    engine: str
    account: str
    upstream_id: str | None
    accepted_at: int
    status: TaskStatus
    parked: bool
    progress: int


@dataclass(frozen=True)
class UpstreamTask:
    task_id: str
    engine: str
    #: The Idempotency-Key of the submit.
    submit_key: str
    #: None until the upstream accepted the submit.
    upstream_id: str | None
    #: The account of the engine's pool the submit went to (None: not chosen yet).
    account: str | None


class UpstreamTasks:
    def __init__(self, engine: Engine, clock: Clock, *, callback_base: str | None = None, callback_secret: str = "") -> None:
        self._engine = engine
        self._clock = clock
        self._insert = dialect_insert(engine)
        #: Where upstreams call back (the deployment's public URL), and the key of the tokens
        #: those URLs carry; None: no callbacks, the poller polls.
        self._callback_base = callback_base.rstrip("/") if callback_base else None
        self._callback_key = callback_secret.encode()
        #: The pools' shared state: where submits go, and how each account is doing.
        self.accounts = UpstreamAccounts(engine, clock)
        #: An upstream poller runs in this process (``work/upstream.py``): engines hand it their
        #: waiting tasks instead of polling in a worker thread.
        self.parking = False

    def submitting(self, task_id: str, engine: str, submit_key: str) -> UpstreamTask:
        """The record a submit of ``task_id`` works from: the one already there (its key, and its
        upstream task once accepted), else a new one with ``submit_key``, written before the submit."""
        with write_tx(self._engine) as conn:
            conn.execute(
                self._insert(upstream_tasks)
                .values(task_id=task_id, engine=engine, submit_key=submit_key, created_at=self._clock.now_ms())
                .on_conflict_do_nothing(index_elements=["task_id"])
            )
            row = conn.execute(select(upstream_tasks).where(upstream_tasks.c.task_id == task_id)).one()
        return UpstreamTask(row.task_id, row.engine, row.submit_key, row.upstream_id, row.account)

    def accepted(self, task_id: str, upstream_id: str) -> None:
        """The upstream took the submit as task ``upstream_id`` (and its account is healthy)."""
        now = self._clock.now_ms()
        with write_tx(self._engine) as conn:
            row = conn.execute(
                update(upstream_tasks)
                .where(upstream_tasks.c.task_id == task_id)
                .values(upstream_id=upstream_id, accepted_at=now, done_at=None)
                .returning(upstream_tasks.c.engine, upstream_tasks.c.account)
            ).first()
            if row is not None:
                self.accounts.accepted(conn, row.engine, row.account or DEFAULT_ACCOUNT)

    def done(self, task_id: str) -> None:
        """The upstream task ended with a result: it no longer takes a place on its account (the
        record stays: a retry of a failed download follows the same upstream task)."""
        now = self._clock.now_ms()
        with write_tx(self._engine) as conn:
            row = conn.execute(
                update(upstream_tasks)
                .where(upstream_tasks.c.task_id == task_id, upstream_tasks.c.done_at.is_(None))
                .values(done_at=now)
                .returning(upstream_tasks.c.engine, upstream_tasks.c.account, upstream_tasks.c.accepted_at)
            ).first()
            if row is not None:
                self.accounts.ended(conn, row.engine, row.account or DEFAULT_ACCOUNT, ok=True, latency_ms=now - (row.accepted_at or now))

    def answered(self, task_id: str, latency_ms: int) -> None:
        """A call that answers with its result (no upstream task: the OpenAI Images API) succeeded:
        counted for its account, and the record lets go of the account, so a later attempt of
        the task chooses one anew, under the limits."""
        with write_tx(self._engine) as conn:
            row = conn.execute(
                select(upstream_tasks.c.engine, upstream_tasks.c.account).where(upstream_tasks.c.task_id == task_id).with_for_update()
            ).first()
            if row is None or row.account is None:
                return
            conn.execute(update(upstream_tasks).where(upstream_tasks.c.task_id == task_id).values(account=None))
            self.accounts.accepted(conn, row.engine, row.account)
            self.accounts.ended(conn, row.engine, row.account, ok=True, latency_ms=latency_ms)

    def forget(self, task_id: str) -> None:
        """The upstream task ended without a result: the next attempt submits anew."""
        with write_tx(self._engine) as conn:
            row = conn.execute(
                delete(upstream_tasks).where(upstream_tasks.c.task_id == task_id)
                .returning(upstream_tasks.c.engine, upstream_tasks.c.account, upstream_tasks.c.upstream_id, upstream_tasks.c.done_at)
            ).first()
            if row is not None and row.upstream_id is not None and row.done_at is None:
                self.accounts.ended(conn, row.engine, row.account or DEFAULT_ACCOUNT, ok=False, latency_ms=0)

    def record(self, task_id: str, engine: str, attempt: int) -> TaskUpstream:
        """The record an attempt works from (``engines.base.UpstreamRecord``): the task's existing
        one, else a new one whose key names this attempt."""
        row = self.submitting(task_id, engine, f"{task_id}-{attempt}")
        return TaskUpstream(self, row, park=self.parking, callback_url=self.callback_url(task_id))

    # --- callbacks: an upstream says a task changed ---------------------------------------------

    @property
    def callbacks(self) -> bool:
        return self._callback_base is not None

    def callback_url(self, task_id: str) -> str | None:
        """The URL an upstream calls when ``task_id``'s upstream task changes (its webhook); None
        without a public URL. The token in it is what authenticates the call."""
        if self._callback_base is None:
            return None
        return f"{self._callback_base}/v1/upstream/callbacks/{task_id}?token={self._token(task_id)}"

    def _token(self, task_id: str) -> str:
        return hmac.new(self._callback_key, f"upstream-callback\n{task_id}".encode(), hashlib.sha256).hexdigest()[:40]

    def called_back(self, task_id: str, token: str) -> bool:
        """An upstream called back for ``task_id``: its poll is due now, so the poller asks the
        upstream what happened (the call's body is never trusted: a forged or replayed call
        can only make a poll early). False when the token is not this task's."""
        if not hmac.compare_digest(self._token(task_id), token):
            return False
        with write_tx(self._engine) as conn:
            conn.execute(
                update(upstream_tasks)
                .where(upstream_tasks.c.task_id == task_id, upstream_tasks.c.poll_at.is_not(None))
                .values(poll_at=self._clock.now_ms())
            )
        return True

    # --- parked tasks: the poller's side -------------------------------------------------------

    def schedule(self, conn: Connection, task_id: str, poll_at: int | None) -> None:
        """When the poller asks after ``task_id`` next (None: it does not; a worker holds it)."""
        conn.execute(update(upstream_tasks).where(upstream_tasks.c.task_id == task_id).values(poll_at=poll_at))

    def poll_sooner(self, polls: Mapping[str, int]) -> None:
        """Move the next polls of these tasks (id → ms) earlier: it ends sooner than the cadence."""
        with write_tx(self._engine) as conn:
            conn.execute(
                update(upstream_tasks)
                .where(upstream_tasks.c.task_id == bindparam("b_task"), upstream_tasks.c.poll_at > bindparam("b_at"))
                .values(poll_at=bindparam("b_at")),
                [{"b_task": task_id, "b_at": at} for task_id, at in polls.items()],
            )

    def look_once(self, task_id: str) -> None:
        """A worker lost a task it was about to park (cancelled meanwhile, say): the poller looks
        at it once, and cancels its upstream task when the task ended here."""
        with write_tx(self._engine) as conn:
            self.schedule(conn, task_id, self._clock.now_ms())

    def due(self, cadence_ms: Mapping[str, int], limit: int) -> list[Due]:
        """Parked tasks of these engines (name → ms between polls) whose poll is due, with the
        next poll set: a poller in another process does not take them meanwhile. A row whose task
        is no longer parked (a worker runs it, or it ended) leaves the poll schedule."""
        now = self._clock.now_ms()
        due: list[Due] = []
        with write_tx(self._engine) as conn:
            rows = conn.execute(
                select(upstream_tasks.c.task_id, upstream_tasks.c.engine, upstream_tasks.c.account, upstream_tasks.c.upstream_id,
                       upstream_tasks.c.accepted_at,
                       tasks.c.status, tasks.c.lease_owner, tasks.c.progress)
                .join(tasks, tasks.c.id == upstream_tasks.c.task_id)
                .where(upstream_tasks.c.poll_at <= now, upstream_tasks.c.engine.in_(list(cadence_ms)))
                .order_by(upstream_tasks.c.poll_at)
                .limit(limit)
                .with_for_update(skip_locked=True, of=upstream_tasks)  # not the tasks: workers take those
            ).all()
            next_poll: dict[int | None, list[str]] = {}  # one UPDATE per engine's cadence, not one per row
            for row in rows:
                parked = row.status == TaskStatus.IN_PROGRESS.value and row.lease_owner == PARKED and row.upstream_id is not None
                next_poll.setdefault(now + cadence_ms[row.engine] if parked else None, []).append(row.task_id)
                due.append(Due(row.task_id, row.engine, row.account or DEFAULT_ACCOUNT, row.upstream_id, row.accepted_at or now, TaskStatus(row.status), parked, row.progress))
            for poll_at, ids in next_poll.items():
                conn.execute(update(upstream_tasks).where(upstream_tasks.c.task_id.in_(ids)).values(poll_at=poll_at))
        return due


class TaskUpstream:
    """One task's record, as an engine sees it (``engines.base.UpstreamRecord``)."""

    def __init__(self, store: UpstreamTasks, row: UpstreamTask, *, park: bool, callback_url: str | None) -> None:
        self._store = store
        self._task_id = row.task_id
        self._engine = row.engine
        self.submit_key = row.submit_key
        self.upstream_id = row.upstream_id
        #: Rows from before pools name no account: theirs was the one upstream, ``default``.
        self.account = row.account or (DEFAULT_ACCOUNT if row.upstream_id is not None else None)
        self.park = park
        self.callback_url = callback_url

    def reserve(self, offers: Sequence[Offer], pick: Callable[[Sequence[Slot]], str]) -> Reserved:
        reserved = self._store.accounts.reserve(self._task_id, self._engine, offers, pick)
        if reserved.account is not None:
            self.account = reserved.account
        return reserved

    def refused(self, account: str, reason: str, *, disable: bool, after: int, busy: bool = False) -> bool:
        if self.account == account:
            self.account = None
        return self._store.accounts.refused(self._task_id, self._engine, account, reason, disable=disable, after=after, busy=busy)

    def accepted(self, upstream_id: str) -> None:
        self._store.accepted(self._task_id, upstream_id)
        self.upstream_id = upstream_id

    def done(self) -> None:
        self._store.done(self._task_id)

    def answered(self, latency_ms: int) -> None:
        self._store.answered(self._task_id, latency_ms)
        self.account = None

    def ended(self) -> None:
        self._store.forget(self._task_id)
        self.upstream_id = None
        self.account = None
