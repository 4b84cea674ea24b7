"""TaskStore: the task table used as a queue.

Every state change is one conditional UPDATE whose WHERE clause names the statuses it may start
from (``tasks.status.sources_of``) and, for a worker's writes, the lease it must still hold. A
worker whose lease expired (and whose task was handed to someone else) therefore cannot overwrite
the newer attempt: its write matches no row and it learns it lost the task.

Claims are ``UPDATE ... WHERE id = (SELECT ... LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING``. On
PostgreSQL concurrent claimers skip each other's locked rows; SQLite ignores the locking clause and
serialises writers instead (``BEGIN IMMEDIATE``), which is equally safe. Inside a lane, claims
follow the fair order between tenants, and priority within a tenant (``queue/fairness.py``).

Every change a caller could observe is handed to the ``on_change`` observers inside its own
transaction, with the row as it now is: refunds and the webhook outbox are written there, so a
refund or an event exists exactly when its change does.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Select, Update, and_, bindparam, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from pixelmill.clock import Clock
from pixelmill.db.engine import dialect_insert, read_tx, write_tx
from pixelmill.db.schema import QUEUED_ROWS, expired_tasks, key_active, lane_state, tasks
from pixelmill.exceptions import QueueFull, RateLimited
from pixelmill.queue import listing
from pixelmill.queue.fairness import HEAD_ORDER, fair_start, queue_position, tenant_best, tenant_sorted
from pixelmill.queue.ids import new_task_id
from pixelmill.queue.listing import Page, TaskQuery
from pixelmill.queue.signals import Signals
from pixelmill.tasks.actions import Lane
from pixelmill.tasks.record import NewTask, Task, TaskResult
from pixelmill.tasks.status import ACTIVE, QUEUED, TaskEvent, TaskStatus, sources_of

#: Called inside the transaction of a change, with the changed task as it now is.
ChangeObserver = Callable[[Connection, Task, TaskEvent], None]


#: Built once: the statement is compiled and cached by its shape, and each submit only binds its
#: values (building it per row cost a seventh of a submit's CPU).
_INSERT_TASK = insert(tasks).returning(*tasks.c, sort_by_parameter_order=True)
#: What the queue limit and the concurrency cap compare with: counters the triggers of migration
#: 0013 keep, so a submit costs the same with 10 or 100,000 tasks in its lane.
_LANE_WAITING = select(func.coalesce(func.sum(lane_state.c.waiting), 0)).where(lane_state.c.lane == bindparam("lane"))


def _statuses(statuses: Iterable[TaskStatus]) -> list[str]:
    return sorted(s.value for s in statuses)


def _to(target: TaskStatus) -> Update:
    """The only way a status changes: an UPDATE that matches rows in a status allowed to precede
    ``target``. Callers add their own conditions (which task, which lease)."""
    return update(tasks).where(tasks.c.status.in_(_statuses(sources_of(target)))).values(
        status=target.value
    )


def _refunded_end(now: int) -> dict[str, Any]:
    """What every unsuccessful end writes: quota 0 (the charge is refunded; the ledger of a
    later issue books the refund), finished now."""
    return {"quota": 0, "finish_time": now, "finalized_at": now}


_NO_LEASE: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}


def _born_status(new: NewTask) -> TaskStatus:
    if new.cached is not None:
        return TaskStatus.SUCCESS
    return TaskStatus.MODAL if new.modal else TaskStatus.SUBMITTED


def _held(task_id: str, worker_id: str) -> Any:
    # The schema guarantees lease_owner IS NOT NULL only while IN_PROGRESS (ck_tasks_lease_iff_running).
    return and_(tasks.c.id == task_id, tasks.c.lease_owner == worker_id)


# --- statements built once ---------------------------------------------------------------------
# The hot paths (a poll's read, a claim, a completion) bind values into statements built here: a
# statement built per call spends more CPU on its construction and cache key than SQLite on it.
# Parameters are named b_*: SQLAlchemy reserves a column's own name in an UPDATE's SET.

_GET = select(tasks).where(tasks.c.id == bindparam("b_id"))
_GET_OWN = _GET.where(tasks.c.tenant_id == bindparam("b_tenant"))


@dataclass(frozen=True)
class _Claim:
    head: Select[Any]
    best: Select[Any]
    sorted_best: Select[Any]


def _claim_statements(*, engines: bool) -> _Claim:
    due = [tasks.c.lane == bindparam("b_lane"), QUEUED_ROWS, tasks.c.scheduled_at <= bindparam("b_now")]
    if engines:
        due.append(tasks.c.engine.in_(bindparam("b_engines", expanding=True)))
    return _Claim(
        head=select(tasks.c.id, tasks.c.tenant_id, tasks.c.fair_seq).where(*due).order_by(*HEAD_ORDER).limit(1)
        .with_for_update(skip_locked=True),
        best=tenant_best(due, bindparam("b_tenant", type_=tasks.c.tenant_id.type)).with_for_update(skip_locked=True),
        sorted_best=tenant_sorted(due, bindparam("b_tenant", type_=tasks.c.tenant_id.type)).with_for_update(skip_locked=True),
    )


_CLAIM = _claim_statements(engines=False)
_CLAIM_ENGINES = _claim_statements(engines=True)
_SWAP_PLACE = update(tasks).where(tasks.c.id == bindparam("b_id")).values(fair_seq=bindparam("b_seq"))
_START = (
    _to(TaskStatus.IN_PROGRESS)
    .where(tasks.c.id == bindparam("b_id"))
    .values(
        attempt=tasks.c.attempt + 1,
        lease_owner=bindparam("b_owner"),
        lease_expires_at=bindparam("b_expires"),
        start_time=func.coalesce(tasks.c.start_time, bindparam("b_now")),
        fair_seq=bindparam("b_seq"),
    )
    .returning(*tasks.c)
)
_SUCCEED = (
    _to(TaskStatus.SUCCESS)
    .where(tasks.c.id == bindparam("b_id"), tasks.c.lease_owner == bindparam("b_owner"))
    .values(
        progress=100, result=bindparam("b_result", type_=tasks.c.result.type), description=bindparam("b_description"),
        finish_time=bindparam("b_now"), finalized_at=bindparam("b_now"), **_NO_LEASE,
    )
    .returning(*tasks.c)
)
_SUCCEED_TIMED = _SUCCEED.values(stages=bindparam("b_stages", type_=tasks.c.stages.type))



class TaskStore:
    def __init__(
        self, engine: Engine, clock: Clock, on_change: Sequence[ChangeObserver] = (), signals: Signals | None = None
    ) -> None:
        self._engine = engine
        self._clock = clock
        #: In order: the ledger (refunds), then the webhook outbox.
        self._observers = tuple(on_change)
        #: Wake-ups for workers (work queued) and open streams (a task changed), sent at commit.
        self._signals = signals
        holding = dialect_insert(engine)(key_active).values(api_key_id=bindparam("b_key"), lane=bindparam("b_lane"), active=0)
        #: A key's queued + running tasks in a lane, read from its counter row and locking it
        #: (PostgreSQL): concurrent submits of one key take turns there, so two cannot both see
        #: room for the last slot. Not the api_keys row: the counter triggers lock this row
        #: before a refund locks api_keys, and a submit must take the two in that same order.
        self._key_active = holding.on_conflict_do_update(
            index_elements=[key_active.c.api_key_id, key_active.c.lane], set_={"active": key_active.c.active}
        ).returning(key_active.c.active)

    def _changed(self, conn: Connection, rows: Iterable[Any], event: TaskEvent) -> list[Task]:
        changed = [Task.from_row(row) for row in rows]
        for task in changed:
            for observe in self._observers:
                observe(conn, task, event)
        self._touched(conn, ((task.id, task.tenant_id) for task in changed))
        return changed

    def _touched(self, conn: Connection, changed: Iterable[tuple[str, str]], *, queued: bool = False) -> None:
        """Tell waiters, at commit: the streams of these tasks (id, tenant) and their tenants', and
        when ``queued``, idle workers."""
        if self._signals is None:
            return
        for task_id, tenant_id in changed:
            self._signals.task_changed(conn, task_id, tenant_id)
        if queued:
            self._signals.work_queued(conn)

    # --- submit side -------------------------------------------------------------------------

    def insert(self, new: NewTask, *, queue_limit: int) -> Task:
        return self.insert_all([new], queue_limit=queue_limit)[0]

    def insert_all(
        self,
        news: Sequence[NewTask],
        *,
        queue_limit: int,
        max_concurrent: int = 0,
        admit: Callable[[Connection], None] | None = None,
        on_insert: Callable[[Connection, list[Task]], None] | None = None,
    ) -> list[Task]:
        """Accept tasks, all or none, in one transaction: enqueue them in their lane unless that
        would put more than ``queue_limit`` tasks in it, or give their API key more than
        ``max_concurrent`` (0: no cap) queued or running tasks. Cache hits (``cached``) are
        inserted finished and count against neither. ``admit`` runs first inside the transaction
        (rate caps: it may refuse), ``on_insert`` last (the idempotency record)."""
        lanes = {new.lane for new in news}
        if len(lanes) != 1:
            raise ValueError("one insert fills one lane")
        while True:
            now = self._clock.now_ms()
            # Distinct among themselves: a batch mints thousands of ids at once, where random
            # suffixes alone would collide (and every collision would redo the insert). A
            # millisecond holds a thousand ids, so many ids spread over a few at most 10% full.
            minted: dict[str, None] = {}
            spread = 1 + len(news) // 100
            while len(minted) < len(news):
                minted[new_task_id(now, spread)] = None
            ids = sorted(minted)  # rising in plan order: a tenant's own order (queue/fairness.py)
            try:
                return self._insert_once(news, queue_limit, max_concurrent, admit, on_insert, ids, now)
            except IntegrityError:
                # Ids are random within their millisecond; a collision mints new ones. Any other
                # integrity error (a missing tenant or parent) is a real error.
                if len(set(ids)) == len(ids) and all(self.get(i) is None for i in ids):
                    raise

    def _insert_once(
        self,
        news: Sequence[NewTask],
        queue_limit: int,
        max_concurrent: int,
        admit: Callable[[Connection], None] | None,
        on_insert: Callable[[Connection, list[Task]], None] | None,
        ids: list[str],
        now: int,
    ) -> list[Task]:
        lane = news[0].lane
        queued = [new for new in news if _born_status(new) is TaskStatus.SUBMITTED]
        with write_tx(self._engine) as conn:
            if admit is not None:
                admit(conn)
            # Cache hits are born finished: they count against neither limit.
            self._make_room(conn, lane, news[0].api_key_id, len(queued), queue_limit, max_concurrent)
            fair = fair_start(conn, news[0].tenant_id, lane) if queued else 0
            params: list[dict[str, Any]] = []
            for new, task_id in zip(news, ids, strict=True):
                params.append({
                    "id": task_id,
                    "tenant_id": new.tenant_id,
                    "action": new.action.value,
                    "status": _born_status(new).value,
                    "progress": 0 if new.cached is None else 100,
                    "prompt": new.prompt,
                    "final_prompt": new.final_prompt,
                    "description": "",
                    "params": new.params,
                    "engine": new.engine,
                    "seed": new.seed,
                    "quota": new.quota,
                    "parent_task_id": new.parent_task_id,
                    "image_index": new.index,
                    "result": new.cached.to_json() if new.cached else None,
                    "fail_reason": None,
                    "submit_time": now,
                    "start_time": now if new.cached else None,
                    "finish_time": now if new.cached else None,
                    "finalized_at": now if new.cached else None,
                    "api_key_id": new.api_key_id,
                    "cache_key": new.cache_key,
                    "prompt_key": new.prompt_key,
                    "lane": new.lane.value,
                    "priority": new.priority,
                    "fair_seq": fair if _born_status(new) is TaskStatus.SUBMITTED else 0,
                    "attempt": 0,
                    "max_attempts": new.max_attempts,
                    "scheduled_at": now,
                    "errors": [],
                    "webhook": new.webhook,
                    "batch_id": new.batch_id,
                    "batch_index": new.batch_index,
                    "stages": new.stages,
                    "watched": new.watched,
                })
                fair += _born_status(new) is TaskStatus.SUBMITTED
            # A batch is one multi-row INSERT (per page of rows), not thousands of statements:
            # PostgreSQL's counter trigger then runs once per statement (migration 0013).
            rows = [conn.execute(_INSERT_TASK, params[0]).one()] if len(params) == 1 else list(conn.execute(_INSERT_TASK, params))
            accepted = [Task.from_row(row) for row in rows]
            self._changed(conn, (row for row in rows if row.status == TaskStatus.SUCCESS.value), TaskEvent.COMPLETED)
            self._touched(conn, (), queued=bool(queued))
            if on_insert is not None:
                on_insert(conn, accepted)
        return accepted

    def _make_room(self, conn: Connection, lane: Lane, key_id: str | None, adding: int, queue_limit: int, max_concurrent: int) -> None:
        """Refuse ``adding`` more queued tasks of a key in a lane past its concurrency cap
        (``RateLimited``) or the lane's queue limit (``QueueFull``). Every way into a queue passes
        here: a submit, and a MODAL task that ``/modal`` queues."""
        if not adding:
            return
        if max_concurrent and key_id:
            self._check_concurrency(conn, key_id, lane, adding, max_concurrent)
        # The lane's counter (kept by triggers in every transaction that moves a task), not a count.
        waiting = conn.execute(_LANE_WAITING, {"lane": lane.value}).scalar_one()
        if waiting + adding > queue_limit:
            raise QueueFull(
                f"the {lane.value} queue is full ({waiting} waiting, room for {queue_limit}); try again later",
                retry_after=5,
            )

    def _check_concurrency(self, conn: Connection, key_id: str, lane: Lane, adding: int, cap: int) -> None:
        """Per-key cap on a lane's queued + running tasks; batch work has its own lane limits, so
        a key's big batch never blocks its interactive submits."""
        active = conn.execute(self._key_active, {"b_key": key_id, "b_lane": lane.value}).scalar_one()
        if active + adding > cap:
            raise RateLimited(
                f"this key already has {active} tasks queued or running (cap {cap}); retry when some finish",
                retry_after=5,
            )

    def find_reusable(self, tenant_id: str, *, cache_key: str | None = None, prompt_key: str | None = None) -> Task | None:
        """The newest task of this tenant for the same request: a SUCCESS to answer from cache,
        else one still queued or running to coalesce onto."""
        if cache_key is not None:
            match = tasks.c.cache_key == cache_key
        elif prompt_key is not None:
            match = tasks.c.prompt_key == prompt_key
        else:
            return None
        wanted = _statuses({TaskStatus.SUCCESS} | ACTIVE)
        with read_tx(self._engine) as conn:
            row = conn.execute(
                select(tasks)
                .where(tasks.c.tenant_id == tenant_id, match, tasks.c.status.in_(wanted))
                .order_by(case((tasks.c.status == TaskStatus.SUCCESS.value, 0), else_=1), tasks.c.submit_time.desc())
                .limit(1)
            ).first()
        return Task.from_row(row) if row else None

    def cancel(self, task_id: str, tenant_id: str) -> Task | None:
        """Cancel a queued, waiting or running task (refunded). None when it is not cancellable
        (already final, or not this tenant's)."""
        cancelled = self._cancel_where(and_(tasks.c.id == task_id, tasks.c.tenant_id == tenant_id), "cancelled by the caller")
        return cancelled[0] if cancelled else None

    def cancel_batch(self, batch_id: str, tenant_id: str) -> int:
        """Cancel every unfinished task of a batch (refunded); returns how many."""
        where = and_(tasks.c.batch_id == batch_id, tasks.c.tenant_id == tenant_id)
        return len(self._cancel_where(where, "cancelled with its batch"))

    def _cancel_where(self, where: Any, reason: str) -> list[Task]:
        now = self._clock.now_ms()
        with write_tx(self._engine) as conn:
            rows = conn.execute(
                _to(TaskStatus.CANCEL).where(where).values(fail_reason=reason, **_refunded_end(now), **_NO_LEASE).returning(*tasks.c)
            ).all()
            return self._changed(conn, rows, TaskEvent.COMPLETED)

    def expire_stale(self, queue_timeout_seconds: float, run_timeout_seconds: float) -> int:
        """Fail (with a refund) tasks that waited or ran longer than allowed. Returns how many."""
        now = self._clock.now_ms()
        rules = [
            (_statuses(QUEUED), tasks.c.submit_time, queue_timeout_seconds, "waiting in the queue"),
            ([TaskStatus.IN_PROGRESS.value], tasks.c.start_time, run_timeout_seconds, "running"),
        ]
        total = 0
        with write_tx(self._engine) as conn:
            for statuses, since, limit, doing in rules:
                rows = conn.execute(
                    _to(TaskStatus.FAILURE)
                    .where(tasks.c.status.in_(statuses), since < now - int(limit * 1000))
                    .values(fail_reason=f"timed out after {limit:g}s {doing}; refunded", **_refunded_end(now), **_NO_LEASE)
                    .returning(*tasks.c)
                ).all()
                total += len(self._changed(conn, rows, TaskEvent.COMPLETED))
        return total

    def submit_modal(
        self,
        task_id: str,
        tenant_id: str,
        *,
        prompt: str,
        final_prompt: str,
        params: dict[str, Any],
        limits: Callable[[Lane], tuple[int, int]],
    ) -> Task | None:
        """MODAL → SUBMITTED with the input the ``/modal`` call supplied; the task joins the back
        of its lane, under the lane's queue limit and its key's concurrency cap like any submit
        (``limits`` gives both for a lane). None when it is not (or no longer) waiting."""
        now = self._clock.now_ms()
        with write_tx(self._engine) as conn:
            row = conn.execute(
                select(tasks.c.lane, tasks.c.api_key_id)
                .where(tasks.c.id == task_id, tasks.c.tenant_id == tenant_id, tasks.c.status == TaskStatus.MODAL.value)
            ).first()
            if row is None:
                return None
            limit, cap = limits(Lane(row.lane))
            self._make_room(conn, Lane(row.lane), row.api_key_id, 1, limit, cap)
            fair = fair_start(conn, tenant_id, Lane(row.lane))
            changed = conn.execute(
                _to(TaskStatus.SUBMITTED)
                .where(tasks.c.id == task_id, tasks.c.tenant_id == tenant_id)
                .values(prompt=prompt, final_prompt=final_prompt, params=params, fair_seq=fair, scheduled_at=now)
                .returning(*tasks.c)
            ).first()
            if changed is not None:
                self._touched(conn, [(task_id, tenant_id)], queued=True)
        return Task.from_row(changed) if changed else None

    def expire_modal(self, timeout_seconds: float) -> int:
        """Cancel (with a refund) tasks that waited in MODAL longer than allowed. Returns how many."""
        now = self._clock.now_ms()
        minutes = f"{timeout_seconds / 60:g} minutes" if timeout_seconds >= 60 else f"{timeout_seconds:g}s"
        with write_tx(self._engine) as conn:
            rows = conn.execute(
                _to(TaskStatus.CANCEL)
                .where(tasks.c.status == TaskStatus.MODAL.value, tasks.c.submit_time < now - int(timeout_seconds * 1000))
                .values(fail_reason=f"no /modal call within {minutes}; cancelled and refunded", **_refunded_end(now), **_NO_LEASE)
                .returning(*tasks.c)
            ).all()
            return len(self._changed(conn, rows, TaskEvent.COMPLETED))

    def get(self, task_id: str, *, tenant_id: str | None = None) -> Task | None:
        with read_tx(self._engine) as conn:
            if tenant_id is None:
                row = conn.execute(_GET, {"b_id": task_id}).first()
            else:
                row = conn.execute(_GET_OWN, {"b_id": task_id, "b_tenant": tenant_id}).first()
        return Task.from_row(row) if row else None

    def expired(self, task_id: str, tenant_id: str) -> bool:
        """Whether retention removed this task of the tenant (its poll then says so)."""
        with read_tx(self._engine) as conn:
            row = conn.execute(
                select(expired_tasks.c.id).where(expired_tasks.c.id == task_id, expired_tasks.c.tenant_id == tenant_id)
            ).first()
        return row is not None

    def get_many(self, task_ids: Sequence[str], tenant_id: str) -> list[Task]:
        """The tenant's tasks among ``task_ids``, in the order asked; unknown ids are left out."""
        with read_tx(self._engine) as conn:
            rows = conn.execute(select(tasks).where(tasks.c.id.in_(list(task_ids)), tasks.c.tenant_id == tenant_id)).all()
        found = {row.id: Task.from_row(row) for row in rows}
        return [found[i] for i in dict.fromkeys(task_ids) if i in found]

    def recent(self, tenant_id: str, limit: int) -> list[Task]:
        """The tenant's newest tasks, newest first."""
        with read_tx(self._engine) as conn:
            rows = conn.execute(
                select(tasks).where(tasks.c.tenant_id == tenant_id).order_by(tasks.c.submit_time.desc(), tasks.c.id.desc()).limit(limit)
            ).all()
        return [Task.from_row(row) for row in rows]

    def page(self, tenant_id: str, query: TaskQuery, *, limit: int, cursor: str | None = None) -> Page:
        """The tenant's tasks matching ``query``, newest first, a page at a time (``queue/listing.py``)."""
        return listing.page(self._engine, tenant_id, query, limit=limit, cursor=cursor)

    def queue_position(self, task: Task) -> int | None:
        """1 = the next task its lane's workers take; None when it is not waiting."""
        if task.status not in QUEUED:
            return None
        with read_tx(self._engine) as conn:
            return queue_position(conn, task)

    def batch_tasks(self, batch_id: str, tenant_id: str) -> list[Task]:
        with read_tx(self._engine) as conn:
            rows = conn.execute(
                select(tasks).where(tasks.c.batch_id == batch_id, tasks.c.tenant_id == tenant_id).order_by(tasks.c.batch_index)
            ).all()
        return [Task.from_row(r) for r in rows]

    def batch_counts(self, batch_id: str) -> dict[str, int]:
        with read_tx(self._engine) as conn:
            rows = conn.execute(
                select(tasks.c.status, func.count()).where(tasks.c.batch_id == batch_id).group_by(tasks.c.status)
            ).all()
        return {status: int(n) for status, n in rows}

    # --- worker side -------------------------------------------------------------------------

    def claim(
        self, worker_id: str, lanes: Sequence[Lane], lease_seconds: float, *, engines: Sequence[str] | None = None
    ) -> Task | None:
        """Take the next due task of the first lane in ``lanes`` that has one, under a lease;
        with ``engines``, only a task for one of them (the engines the worker's process has)."""
        for lane in lanes:
            task = self._claim_in(lane, worker_id, lease_seconds, engines)
            if task is not None:
                return task
        return None

    def _claim_in(self, lane: Lane, worker_id: str, lease_seconds: float, engines: Sequence[str] | None) -> Task | None:
        now = self._clock.now_ms()
        claim = _CLAIM if engines is None else _CLAIM_ENGINES
        due = {"b_lane": lane.value, "b_now": now, **({} if engines is None else {"b_engines": sorted(engines)})}
        with write_tx(self._engine) as conn:
            # The lane's next place, then the best task of that place's tenant; the two swap
            # places, so priority reorders a tenant's own work only (queue/fairness.py).
            head = conn.execute(claim.head, due).first()
            if head is None:
                return None
            own = {**due, "b_tenant": head.tenant_id}
            # None only on PostgreSQL, when other claimers hold every due task at the tenant's
            # best priority; the sorted form then finds the best free one (the head, ours, at worst).
            best = conn.execute(claim.best, own).first() or conn.execute(claim.sorted_best, own).one()
            if best.id != head.id:
                conn.execute(_SWAP_PLACE, {"b_id": head.id, "b_seq": best.fair_seq})
            row = conn.execute(_START, {
                "b_id": best.id, "b_owner": worker_id,
                "b_expires": now + int(lease_seconds * 1000), "b_now": now, "b_seq": head.fair_seq,
            }).first()
            claimed = self._changed(conn, [row] if row else [], TaskEvent.START)
        return claimed[0] if claimed else None

    def heartbeat(self, worker_id: str, task_ids: Sequence[str], lease_seconds: float) -> int:
        """Renew the leases ``worker_id`` still holds. Returns how many it holds."""
        if not task_ids:
            return 0
        expires = self._clock.now_ms() + int(lease_seconds * 1000)
        with write_tx(self._engine) as conn:
            res = conn.execute(
                update(tasks)
                .where(tasks.c.id.in_(list(task_ids)), tasks.c.lease_owner == worker_id)
                .values(lease_expires_at=expires)
            )
        return res.rowcount

    def set_progress(
        self, task_id: str, worker_id: str, progress: int, lease_seconds: float, preview_key: str | None = None
    ) -> Task | None:
        """Record progress (and the newest preview, when given); renews the lease. The task as it
        is now (whether someone started watching it, say), or None when the worker lost it."""
        expires = self._clock.now_ms() + int(lease_seconds * 1000)
        values: dict[str, Any] = {"progress": max(0, min(99, progress)), "lease_expires_at": expires}
        if preview_key is not None:
            values["preview_key"] = preview_key
        with write_tx(self._engine) as conn:
            row = conn.execute(update(tasks).where(_held(task_id, worker_id)).values(**values).returning(*tasks.c)).first()
            changed = self._changed(conn, [row] if row else [], TaskEvent.PROGRESS)
            return changed[0] if changed else None

    def hand_over(
        self, task_id: str, owner: str, to: str, lease_seconds: float, *,
        stages: Mapping[str, float] | None = None, within: Callable[[Connection], None] | None = None,
    ) -> Task | None:
        """Pass a running task from lease owner ``owner`` to ``to`` (a worker parks a task that
        waits upstream; the upstream poller hands it back: ``work/upstream.py``), with the stages
        so far when given, and run ``within`` in the same transaction. The task, or None when
        ``owner`` no longer holds it."""
        values: dict[str, Any] = {"lease_owner": to, "lease_expires_at": self._clock.now_ms() + int(lease_seconds * 1000)}
        if stages is not None:
            values["stages"] = dict(stages)
        with write_tx(self._engine) as conn:
            row = conn.execute(update(tasks).where(_held(task_id, owner)).values(**values).returning(*tasks.c)).first()
            if row is None:
                return None
            if within is not None:
                within(conn)
            return Task.from_row(row)

    def watch(self, task_id: str, tenant_id: str) -> None:
        """Someone watches the task from now on: its worker stores the engine's previews."""
        with write_tx(self._engine) as conn:
            conn.execute(
                update(tasks)
                .where(tasks.c.id == task_id, tasks.c.tenant_id == tenant_id, tasks.c.watched.is_(False), tasks.c.status.in_([s.value for s in ACTIVE | {TaskStatus.MODAL}]))
                .values(watched=True)
            )

    def star(self, task_id: str, tenant_id: str, on: bool) -> bool:
        """Star (or unstar) one of the tenant's tasks; False when it has no such task. A mark for
        its owner only: no event, no signal."""
        with write_tx(self._engine) as conn:
            done = conn.execute(
                update(tasks).where(tasks.c.id == task_id, tasks.c.tenant_id == tenant_id)
                .values(starred_at=func.coalesce(tasks.c.starred_at, self._clock.now_ms()) if on else None)
            )
        return done.rowcount == 1

    def complete(
        self, task_id: str, worker_id: str, result: TaskResult, description: str = "", stages: Mapping[str, float] | None = None
    ) -> bool:
        """IN_PROGRESS → SUCCESS, with where the task's time went (``stages``, ms; None keeps
        what is recorded). False when the worker no longer holds the task."""
        now = self._clock.now_ms()
        values = {"b_id": task_id, "b_owner": worker_id, "b_result": result.to_json(), "b_description": description, "b_now": now}
        with write_tx(self._engine) as conn:
            if stages is None:
                row = conn.execute(_SUCCEED, values).first()
            else:
                row = conn.execute(_SUCCEED_TIMED, {**values, "b_stages": dict(stages)}).first()
            return bool(self._changed(conn, [row] if row else [], TaskEvent.COMPLETED))

    def revise_result(
        self,
        task_id: str,
        revise: Callable[[TaskResult], TaskResult],
        within: Callable[[Connection, Task], None] | None = None,
        ends: Callable[[TaskResult], str | None] | None = None,
        event: TaskEvent = TaskEvent.REVIEWED,
    ) -> Task | None:
        """Change the result of a SUCCESS task (a review decision; files made after SUCCESS: say
        so with ``event``), tell observers (REVIEWED) and run ``within`` in the same transaction. When ``ends`` gives a reason for the revised
        result, the task becomes FAILURE instead, refunded (COMPLETED): the one way a finished
        task changes status (``tasks.status``), for a task left with no image at all. None when
        not SUCCESS, or when the status table does not allow the change."""
        with write_tx(self._engine) as conn:
            row = conn.execute(
                select(tasks).where(tasks.c.id == task_id, tasks.c.status == TaskStatus.SUCCESS.value).with_for_update()
            ).first()
            if row is None:
                return None
            current = Task.from_row(row)
            assert current.result is not None
            result = revise(current.result)
            reason = ends(result) if ends is not None else None
            still = and_(tasks.c.id == task_id, tasks.c.status == TaskStatus.SUCCESS.value)
            change = update(tasks).where(still).values(result=result.to_json())
            if reason is not None:  # SUCCESS → FAILURE, as the status table allows
                change = _to(TaskStatus.FAILURE).where(still).values(
                    result=result.to_json(), fail_reason=reason, **_refunded_end(self._clock.now_ms())
                )
            row = conn.execute(change.returning(*tasks.c)).first()
            if row is None:
                return None
            task = self._changed(conn, [row], TaskEvent.COMPLETED if reason else event)[0]
            if within is not None:
                within(conn, task)
            return task

    def fail(
        self,
        task_id: str,
        worker_id: str,
        reason: str,
        *,
        retryable: bool,
        backoff_seconds: Sequence[float],
    ) -> TaskStatus | None:
        """Record a failed attempt: retry after backoff when allowed, else FAILURE with a refund.

        Returns the new status, or None when the worker no longer holds the task.
        """
        now = self._clock.now_ms()
        with write_tx(self._engine) as conn:
            row = conn.execute(
                select(tasks.c.attempt, tasks.c.max_attempts, tasks.c.errors)
                .where(_held(task_id, worker_id))
                .with_for_update()
            ).first()
            if row is None:
                return None
            errors = [*row.errors, {"attempt": row.attempt, "at": now, "error": reason}]
            if retryable and row.attempt < row.max_attempts:
                delay = backoff_seconds[min(row.attempt - 1, len(backoff_seconds) - 1)]
                delay *= 1 + random.uniform(0, 0.25)
                target = TaskStatus.NOT_START
                values: dict[str, Any] = {"scheduled_at": now + int(delay * 1000)}
            else:
                target = TaskStatus.FAILURE
                values = self._failure_values(now, reason, row.attempt, retryable)
            changed = conn.execute(
                _to(target)
                .where(_held(task_id, worker_id))
                .values(errors=errors, lease_owner=None, lease_expires_at=None, **values)
                .returning(*tasks.c)
            ).all()
            if target is TaskStatus.FAILURE:
                self._changed(conn, changed, TaskEvent.COMPLETED)
            else:  # waiting for its retry: the streams show NOT_START
                self._touched(conn, [(row.id, row.tenant_id) for row in changed])
        return target

    def defer(self, task_id: str, worker_id: str, seconds: float) -> bool:
        """Put a task its engine has no room for (every upstream account full) back in the queue
        for ``seconds``: SUBMITTED, in its place, and the attempt it took is given back. False
        when the worker no longer holds the task."""
        now = self._clock.now_ms()
        with write_tx(self._engine) as conn:
            changed = conn.execute(
                _to(TaskStatus.SUBMITTED)
                .where(_held(task_id, worker_id))
                .values(attempt=tasks.c.attempt - 1, scheduled_at=now + int(seconds * 1000), lease_owner=None,
                        lease_expires_at=None, progress=0)
                .returning(tasks.c.id, tasks.c.tenant_id)
            ).all()
            if changed:
                self._touched(conn, [(row.id, row.tenant_id) for row in changed])
        return bool(changed)

    @staticmethod
    def _failure_values(now: int, reason: str, attempt: int, retryable: bool) -> dict[str, Any]:
        if retryable and attempt > 1:
            reason = f"{reason} (gave up after {attempt} attempts)"
        return {"fail_reason": reason, **_refunded_end(now)}

    # --- scheduler side ----------------------------------------------------------------------

    def requeue_expired(self) -> tuple[int, int]:
        """Put tasks whose worker vanished back in the queue, or fail them when out of attempts.

        Returns (requeued, failed).
        """
        now = self._clock.now_ms()
        requeued = failed = 0
        expired = and_(
            tasks.c.status == TaskStatus.IN_PROGRESS.value, tasks.c.lease_expires_at < now
        )
        with write_tx(self._engine) as conn:
            rows = conn.execute(
                select(tasks.c.id, tasks.c.attempt, tasks.c.max_attempts, tasks.c.errors, tasks.c.lease_owner)
                .where(expired)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                reason = f"worker {row.lease_owner} stopped answering (lease expired)"
                errors = [*row.errors, {"attempt": row.attempt, "at": now, "error": reason}]
                if row.attempt < row.max_attempts:
                    target = TaskStatus.SUBMITTED
                    values: dict[str, Any] = {"progress": 0}
                    requeued += 1
                else:
                    target = TaskStatus.FAILURE
                    values = self._failure_values(now, reason, row.attempt, retryable=True)
                    failed += 1
                changed = conn.execute(
                    _to(target)
                    .where(tasks.c.id == row.id, expired)
                    .values(errors=errors, lease_owner=None, lease_expires_at=None, **values)
                    .returning(*tasks.c)
                ).all()
                if target is TaskStatus.FAILURE:
                    self._changed(conn, changed, TaskEvent.COMPLETED)
                else:
                    self._touched(conn, [(r.id, r.tenant_id) for r in changed], queued=True)
        return requeued, failed

