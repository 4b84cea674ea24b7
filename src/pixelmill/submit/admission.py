"""Admission: what every submit passes through on its way into the queue, whichever contract it
came by. Before planning: moderation of its texts (refusals counted). Around it: its
Idempotency-Key. At the end, in one transaction: the key's rate cap, the lane's queue limit and
the key's concurrency cap, the charge, the idempotency record and the insert."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import structlog
from pydantic import BaseModel
from sqlalchemy import Connection

from pixelmill.auth.keys import Principal
from pixelmill.billing.ledger import Ledger
from pixelmill.exceptions import BannedPrompt, IdempotencyInProgress, TaskNotFound
from pixelmill.observe.logs import current_request_id
from pixelmill.observe.refusals import RefusalLog
from pixelmill.observe.stages import StageObserver, since_request_start
from pixelmill.queue.store import TaskStore
from pixelmill.safety.moderation import Moderator
from pixelmill.settings import Settings
from pixelmill.tasks.actions import Lane
from pixelmill.tasks.idempotency import Claim, ClaimLost, IdempotencyStore, request_hash
from pixelmill.tasks.limits import RateLimiter
from pixelmill.tasks.record import NewTask, Task

log = structlog.get_logger("pixelmill.tasks")
#: A batch of thousands logs one summary line, not one line per task.
LOGGED_PER_SUBMIT = 10


class Admission:
    def __init__(
        self,
        store: TaskStore,
        settings: Settings,
        ledger: Ledger,
        limiter: RateLimiter,
        idempotency: IdempotencyStore,
        moderator: Moderator,
        refusals: RefusalLog,
        on_stage: StageObserver | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._ledger = ledger
        self._limiter = limiter
        self._idempotency = idempotency
        self.moderator = moderator
        self._refusals = refusals
        self._on_stage = on_stage

    def moderate(self, principal: Principal, req: BaseModel) -> None:
        """Code 24 when a text of ``req`` holds a banned term. Every submit and /modal passes
        here: the one place refusals are counted (health report)."""
        try:
            self.moderator.check_request(principal.tenant_id, req)
        except BannedPrompt as exc:
            self._refusals.record(principal.key_id, principal.tenant_id, exc)
            raise

    def guarded_submit(
        self,
        principal: Principal,
        action: str,
        req: BaseModel,
        idempotency_key: str | None,
        submit: Callable[[Claim | None], list[Task]],
    ) -> list[Task]:
        """Moderate the request's texts, then run one submit under its Idempotency-Key (if any).
        An input image refused by screening (code 24, raised while planning) is counted too."""
        self.moderate(principal, req)
        try:
            return self._idempotent(principal, action, req, idempotency_key, submit)
        except BannedPrompt as exc:
            self._refusals.record(principal.key_id, principal.tenant_id, exc)
            raise

    def _idempotent(
        self,
        principal: Principal,
        action: str,
        req: BaseModel,
        idempotency_key: str | None,
        submit: Callable[[Claim | None], list[Task]],
    ) -> list[Task]:
        if idempotency_key is None:
            return submit(None)
        body_hash = request_hash(action, req.model_dump(mode="json"))
        claim = self._idempotency.begin(principal.key_id, idempotency_key, body_hash)
        if isinstance(claim, list):  # answered before: the same tasks, the same answer
            return self._answered(principal, claim)
        try:
            return submit(claim)
        except ClaimLost:
            # This request was so slow that a retry took its key over; nothing of it was kept.
            # The answer is the retry's (or 409 while that one is still being accepted).
            answer = self._idempotency.begin(principal.key_id, idempotency_key, body_hash)
            if isinstance(answer, list):
                return self._answered(principal, answer)
            self._idempotency.abandon(answer)  # not expected: the taker's row vanished; free the key
            raise IdempotencyInProgress(
                f"Idempotency-Key: {idempotency_key!r}: another request with this key was accepted meanwhile; retry"
            ) from None
        except BaseException:
            self._idempotency.abandon(claim)
            raise

    def lane_limits(self, principal: Principal, lane: Lane) -> tuple[int, int]:
        """The lane's queue limit and the key's concurrency cap in it (0: none)."""
        limit = self._settings.interactive_queue_limit if lane is Lane.INTERACTIVE else self._settings.batch_queue_limit
        cap = principal.max_concurrent if principal.max_concurrent is not None else self._settings.max_concurrent_tasks
        # The concurrency cap guards the interactive lane; batch work is bounded by its lane's
        # queue limit and worker slots instead, so a 10,000-task batch is not refused by it.
        return limit, cap if lane is Lane.INTERACTIVE else 0

    def _rate_cap(self, principal: Principal) -> int | None:
        cap = principal.rate_per_minute if principal.rate_per_minute is not None else self._settings.rate_per_minute
        return cap or None

    def accept(
        self,
        plan: Sequence[NewTask | Task],
        principal: Principal,
        claim: Claim | None,
        *,
        submissions: int | None = None,
        before_insert: Callable[[Connection], None] | None = None,
    ) -> list[Task]:
        """Insert the new tasks of ``plan`` (existing ones were coalesced onto) and answer every
        task in plan order; the idempotency record is written in the same transaction.
        ``submissions``: what this counts against the key's rate cap (default: one per new
        task); ``before_insert`` writes rows that belong to the same transaction (a batch)."""
        request_id = current_request_id()
        if request_id is not None:  # the request's id travels with its tasks into the workers' logs
            plan = [replace(p, params={**p.params, "request_id": request_id}) if isinstance(p, NewTask) else p for p in plan]
        accepting = since_request_start()
        if accepting is not None:  # the stage budget's first figure (observe/stages.py)
            plan = [replace(p, stages={"accept": round(accepting * 1000, 2)}) if isinstance(p, NewTask) else p for p in plan]
        news = [p for p in plan if isinstance(p, NewTask)]

        def in_order(inserted: Sequence[Task]) -> list[Task]:
            fresh = iter(inserted)
            return [next(fresh) if isinstance(p, NewTask) else p for p in plan]

        def record(conn: Connection, inserted: list[Task]) -> None:
            # Charged in the accepting transaction: not enough quota (402) queues nothing.
            self._ledger.charge(conn, principal.key_id, inserted)
            if claim is not None:
                self._idempotency.finish(conn, claim, [t.id for t in in_order(inserted)])

        if not news:  # all coalesced onto running work: nothing to insert, nothing to count
            if claim is not None:
                self._idempotency.finish_now(claim, [t.id for t in plan if isinstance(t, Task)])
            return in_order([])
        lane = news[0].lane
        limit, cap = self.lane_limits(principal, lane)
        rate = self._rate_cap(principal)

        def admit(conn: Connection) -> None:
            # Every task created counts against the rate cap, cache hits included; a request
            # coalesced onto running work creates none.
            self._limiter.take_in(conn, principal.key_id, rate, len(news) if submissions is None else submissions)
            if before_insert is not None:
                before_insert(conn)

        inserted = self._store.insert_all(news, queue_limit=limit, max_concurrent=cap, admit=admit, on_insert=record)
        if accepting is not None and self._on_stage is not None:
            self._on_stage("accept", accepting)  # once per accepted request, refusals left out
        for task in inserted[:LOGGED_PER_SUBMIT]:
            log.info("task accepted", task_id=task.id, tenant=task.tenant_id, action=task.action.value, engine=task.engine,
                     lane=task.lane.value, status=task.status.value, quota=task.quota, batch_id=task.batch_id)
        if len(inserted) > LOGGED_PER_SUBMIT:
            log.info("tasks accepted", count=len(inserted), lane=lane.value, batch_id=inserted[0].batch_id)
        return in_order(inserted)

    def _answered(self, principal: Principal, task_ids: Sequence[str]) -> list[Task]:
        """The tasks an earlier request with the same Idempotency-Key was answered with."""
        # One task may stand in the answer twice (two equal requests of a batch coalesced onto it).
        found = {t.id: t for t in self._store.get_many(task_ids, principal.tenant_id)}
        for task_id in task_ids:
            if task_id not in found:
                raise TaskNotFound(task_id, expired=self._store.expired(task_id, principal.tenant_id))
        return [found[task_id] for task_id in task_ids]
