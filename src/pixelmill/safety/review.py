"""The review queue: output images that screening routed to a person.

A held image lives in the database (lossless PNG), not in storage, so no URL can reach it until
someone approves it. A decision is one transaction: the review's state, the task's result (the
image published into its slot on approve), the audit log row, and the task's ``reviewed`` webhook
event. When the last undecided image of a task is rejected and none of its images was published,
the task becomes FAILURE and is refunded, like a task whose images were all blocked.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import structlog
from PIL import Image, ImageFilter
from sqlalchemy import ColumnElement, Connection, Engine, Text, cast, delete, insert, or_, select, update

from pixelmill.clock import Clock
from pixelmill.db.engine import read_tx, write_tx
from pixelmill.db.schema import reviews, tasks
from pixelmill.exceptions import Conflict, NotFound, PixelmillError
from pixelmill.observe.audit import AuditLog
from pixelmill.queue.store import TaskStore
from pixelmill.safety.detector import Finding
from pixelmill.tasks.record import Task, TaskResult
from pixelmill.tasks.status import TaskStatus

#: Stores image ``index`` of a task and returns its key: ``Executor.publish_one``. Its renditions
#: and provenance record follow after the decision (queue/finishing.py).
Publisher = Callable[[Task, int, Image.Image, str], str]


class _Rolled(Exception):
    """Raised inside a decision's transaction to undo it (someone else decided first)."""


log = structlog.get_logger("pixelmill.review")

#: How long a claim holds a review for its reviewer (claiming again extends it).
CLAIM_SECONDS = 300.0
#: The long edge of a review's blurred thumbnail.
THUMB_EDGE = 256


class ReviewQueue:
    def __init__(self, engine: Engine, clock: Clock, store: TaskStore, audit: AuditLog) -> None:
        self._engine = engine
        self._clock = clock
        self._store = store
        self._audit = audit

    def hold(self, task: Task, index: int, image: Image.Image, model: str, reasons: Sequence[Finding]) -> str:
        """Keep image ``index`` of ``task`` for review; a retried attempt replaces its own hold."""
        review_id = f"{task.id}-{index}"
        buf = io.BytesIO()
        image.convert("RGB").save(buf, "PNG")
        with write_tx(self._engine) as conn:
            conn.execute(delete(reviews).where(reviews.c.id == review_id))
            conn.execute(insert(reviews).values(
                id=review_id, task_id=task.id, tenant_id=task.tenant_id, idx=index, state="pending",
                reasons=[f.to_json() for f in reasons], image=buf.getvalue(), model=model, created_at=self._clock.now_ms(),
            ))
        return review_id

    # --- reading ---------------------------------------------------------------------------------

    def list(
        self, state: str = "pending", tenant_id: str | None = None, limit: int = 100, *,
        reason: str | None = None, older_than_ms: int | None = None,
    ) -> list[dict[str, Any]]:
        """Oldest first, narrowed to a ``tenant_id``, a screening ``reason`` (a label among the
        findings) and holds older than ``older_than_ms``. Pending holds of a task that did not
        end SUCCESS (a later attempt failed) are left out: there is nothing to publish them into."""
        r = reviews.c
        query = (
            select(*[c for c in reviews.c if c.name != "image"])
            .join(tasks, tasks.c.id == r.task_id)
            .where(r.state == state)
            .order_by(r.created_at, r.id)
        )
        if state == "pending":
            query = query.where(tasks.c.status == TaskStatus.SUCCESS.value)
        if tenant_id is not None:
            query = query.where(r.tenant_id == tenant_id)
        if older_than_ms is not None:
            query = query.where(r.created_at <= self._clock.now_ms() - older_than_ms)
        if reason is not None:  # a coarse cut in SQL (the label's text in the findings' JSON); exact below
            query = query.where(cast(r.reasons, Text).contains(json.dumps(reason), autoescape=True))
        found: list[dict[str, Any]] = []
        with read_tx(self._engine) as conn:
            # The findings are JSON, read the same way on every database: matched here, and
            # read in pages until ``limit`` match (a review queue is hundreds, not millions).
            result = conn.execute(query.execution_options(yield_per=500))
            try:
                for row in result:
                    if reason is None or any(f.get("label") == reason for f in row.reasons):
                        found.append(_view(row))
                        if len(found) == limit:
                            break
            finally:
                result.close()  # a server-side cursor on PostgreSQL, left part read
        return found

    def get(self, review_id: str) -> dict[str, Any]:
        return _view(self._row(review_id))

    def image(self, review_id: str) -> bytes:
        """The held PNG, for the reviewer; gone once decided."""
        row = self._row(review_id)
        if row.image is None:
            raise Conflict(f"review {review_id} is {row.state}; its held image is no longer kept")
        return bytes(row.image)

    def thumbnail(self, review_id: str) -> bytes:
        """The held image small, blurred and grey (WebP): what a queue shows before a reviewer
        chooses to look, so the picture itself is never sent until then."""
        with Image.open(io.BytesIO(self.image(review_id))) as im:
            small = im.convert("L")
            small.thumbnail((THUMB_EDGE, THUMB_EDGE))
        out = io.BytesIO()
        small.filter(ImageFilter.GaussianBlur(radius=max(4, THUMB_EDGE // 24))).save(out, "WEBP", quality=60)
        return out.getvalue()

    # --- claims --------------------------------------------------------------------------------

    def claim(self, review_id: str, actor: str, seconds: float = CLAIM_SECONDS) -> dict[str, Any]:
        """``actor`` takes the review for ``seconds`` (again, to extend it): no one else decides it
        meanwhile. Conflict when it is decided, or another reviewer's claim still runs."""
        now = self._clock.now_ms()
        with write_tx(self._engine) as conn:
            done = conn.execute(
                update(reviews)
                .where(reviews.c.id == review_id, reviews.c.state == "pending", _free_for(actor, now))
                .values(claimed_by=actor, claimed_until=now + int(seconds * 1000))
            )
        if done.rowcount != 1:
            row = self._row(review_id)
            if row.state != "pending":
                raise Conflict(f"review {review_id} is already {row.state} (by {row.decided_by})")
            if row.claimed_until is None or row.claimed_until <= now:  # released or run out meanwhile
                raise Conflict(f"review {review_id} changed hands meanwhile; claim it again")
            raise Conflict(f"review {review_id} is claimed by {row.claimed_by} for {(row.claimed_until - now) / 1000:.0f} s more")
        return self.get(review_id)

    def release(self, review_id: str, actor: str) -> None:
        """Give back ``actor``'s claim (nothing when it holds none)."""
        with write_tx(self._engine) as conn:
            conn.execute(
                update(reviews).where(reviews.c.id == review_id, reviews.c.claimed_by == actor).values(claimed_by=None, claimed_until=None)
            )

    def _row(self, review_id: str) -> Any:
        with read_tx(self._engine) as conn:
            row = conn.execute(select(reviews).where(reviews.c.id == review_id)).first()
        if row is None:
            raise NotFound(f"no review {review_id}")
        return row

    # --- deciding ----------------------------------------------------------------------------------

    def approve(self, review_id: str, actor: str, publish: Publisher, note: str | None = None) -> Task:
        row = self._pending(review_id, actor)
        task = self._store.get(row.task_id)
        if task is None or task.status is not TaskStatus.SUCCESS:
            raise Conflict(f"task {row.task_id} is not SUCCESS; review {review_id} has nothing to publish into")
        with Image.open(io.BytesIO(row.image)) as im:
            image = im.convert("RGB")
        # Stored before the transaction: content-addressed, so a lost race leaves only an
        # unreferenced object, never a wrong one.
        key = publish(task, row.idx, image, row.model)

        def revise(result: TaskResult) -> TaskResult:
            keys, renditions = list(result.image_keys), list(result.renditions)
            renditions += [{}] * (len(keys) - len(renditions))
            keys[row.idx - 1], renditions[row.idx - 1] = key, {}
            return replace(result, image_keys=tuple(keys), renditions=tuple(renditions),
                           screening=_decided(result.screening, row.idx, "approved", actor))

        return self._decide(row, "approved", actor, note, revise)

    def reject(self, review_id: str, actor: str, note: str | None = None) -> Task:
        row = self._pending(review_id, actor)

        def revise(result: TaskResult) -> TaskResult:
            return replace(result, screening=_decided(result.screening, row.idx, "rejected", actor))

        return self._decide(row, "rejected", actor, note, revise)

    def decide_many(
        self, review_ids: Sequence[str], decision: str, actor: str, publish: Publisher, note: str | None = None,
    ) -> Sequence[dict[str, Any]]:
        """Approve or reject each review; one that cannot be (decided already, claimed by another,
        unknown) says why, and the others go on."""
        outcomes = []
        for review_id in dict.fromkeys(review_ids):  # each once, in the order given
            try:
                if decision == "approve":
                    self.approve(review_id, actor, publish, note)
                else:
                    self.reject(review_id, actor, note)
                outcomes.append({"id": review_id, "state": "approved" if decision == "approve" else "rejected", "error": None})
            except PixelmillError as exc:
                outcomes.append({"id": review_id, "state": None, "error": exc.description})
            except Exception as exc:  # storage or the database failing on one: said, and the rest go on
                log.exception("review decision failed", review_id=review_id)
                outcomes.append({"id": review_id, "state": None, "error": f"internal error: {type(exc).__name__}: {exc}"[:300]})
        return outcomes

    def _pending(self, review_id: str, actor: str) -> Any:
        row = self._row(review_id)
        if row.state != "pending":
            raise Conflict(f"review {review_id} is already {row.state} (by {row.decided_by})")
        now = self._clock.now_ms()
        if row.claimed_by not in (None, actor) and row.claimed_until > now:
            raise Conflict(f"review {review_id} is claimed by {row.claimed_by} for {(row.claimed_until - now) / 1000:.0f} s more")
        return row

    def _decide(self, row: Any, state: str, actor: str, note: str | None, revise: Callable[[TaskResult], TaskResult]) -> Task:
        now = self._clock.now_ms()

        def within(conn: Connection, task: Task) -> None:
            done = conn.execute(
                update(reviews).where(reviews.c.id == row.id, reviews.c.state == "pending", _free_for(actor, now))
                .values(state=state, image=None, decided_at=now, decided_by=actor, note=note, claimed_by=None, claimed_until=None)
            )
            if done.rowcount != 1:
                raise _Rolled()
            self._audit.record(conn, actor, "review", row.id, state, {"task_id": row.task_id, "index": row.idx, "note": note})

        try:
            task = self._store.revise_result(row.task_id, revise, within, ends=_nothing_left)
        except _Rolled:
            raise Conflict(f"review {row.id} was decided or claimed by someone else first") from None
        if task is None:
            raise Conflict(f"task {row.task_id} is not SUCCESS; review {row.id} cannot be decided")
        return task


def _free_for(actor: str, now: int) -> ColumnElement[bool]:
    """A review ``actor`` may claim or decide: unclaimed, claimed by ``actor``, or its claim ran out."""
    r = reviews.c
    return or_(r.claimed_by.is_(None), r.claimed_by == actor, r.claimed_until <= now)


def _decided(screening: tuple[dict[str, Any], ...], index: int, decision: str, actor: str) -> tuple[dict[str, Any], ...]:
    return tuple(e | {"decision": decision, "decided_by": actor} if e.get("index") == index else e for e in screening)


def _nothing_left(result: TaskResult) -> str | None:
    """Why the task ends unsuccessfully, once no image is published and none is waiting."""
    if any(result.image_keys) or any(e.get("decision") == "review" for e in result.screening):
        return None
    return "every image was blocked by output screening or rejected in review"


def _view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "task_id": row.task_id, "tenant_id": row.tenant_id, "index": row.idx, "state": row.state,
        "reasons": row.reasons, "model": row.model, "created_at": row.created_at, "decided_at": row.decided_at,
        "decided_by": row.decided_by, "note": row.note, "claimed_by": row.claimed_by, "claimed_until": row.claimed_until,
    }
