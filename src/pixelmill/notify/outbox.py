"""The webhook outbox: events are rows written in the transaction that changed the task.

``Outbox.record`` is the task store's change observer. It writes one row per event the task's
webhook asked for, numbered per task (``seq``). Delivery (``notify/deliver.py``) claims due rows
under a short lock, so several worker processes can share the outbox without sending an event
twice at once.

Order at the receiver: a task's event is only due once every earlier event of that task is
delivered or given up, and a progress event still waiting when a newer event arrives is dropped
(``superseded``): a receiver therefore never gets an older state of a task after a newer one.
Every payload also carries ``sequence`` for receivers that want to check.
"""

from __future__ import annotations

import json
import random
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, insert, or_, select, update
from sqlalchemy.orm import aliased

from pixelmill.clock import Clock
from pixelmill.contracts.mjproxy import mj_task
from pixelmill.db.engine import read_tx, write_tx
from pixelmill.db.schema import webhook_events
from pixelmill.tasks.record import Task
from pixelmill.tasks.status import TaskEvent
from pixelmill.tasks.view import UrlFor, file_url, task_view

EVENTS = tuple(e.value for e in TaskEvent)


@dataclass(frozen=True)
class WebhookTarget:
    """Where one task's events go. ``base`` is the URL the caller reached pixelmill by, so file
    links in payloads match what a poll would show."""

    url: str
    events: tuple[str, ...]
    base: str
    #: The payload's form: "pixelmill" (an event wrapping the task object) or "midjourney-proxy".
    format: str = "pixelmill"

    def to_json(self) -> dict[str, Any]:
        hook: dict[str, Any] = {"url": self.url, "events": list(self.events), "base": self.base}
        return hook if self.format == "pixelmill" else {**hook, "format": self.format}


@dataclass(frozen=True)
class Delivery:
    id: str
    task_id: str
    seq: int
    url: str
    event: str
    payload: str
    attempts: int
    api_key_id: str | None


@dataclass(frozen=True)
class EventRecord:
    """An outbox row as operators and tests see it."""

    id: str
    seq: int
    event: str
    state: str
    attempts: int
    last_error: str | None
    created_at: int
    delivered_at: int | None


class Outbox:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        retry_seconds: Sequence[float],
        on_recorded: Callable[[Connection], None] = lambda conn: None,
        url_for: UrlFor = file_url,
    ) -> None:
        self._engine = engine
        self._url_for = url_for
        self._clock = clock
        #: Wait before attempt 2, 3, ...; once used up, the event is given up ("failed").
        self._retry_seconds = tuple(retry_seconds)
        self._on_recorded = on_recorded

    # --- writing (inside the task's transaction) ------------------------------------------------

    def record(self, conn: Connection, task: Task, event: TaskEvent) -> None:
        hook = task.webhook
        if not hook or event.value not in hook["events"]:
            return
        now = self._clock.now_ms()
        e = webhook_events.c
        seq = (conn.execute(select(func.max(e.seq)).where(e.task_id == task.id)).scalar() or 0) + 1
        conn.execute(
            update(webhook_events)
            .where(
                e.task_id == task.id, e.state == "pending", e.event == TaskEvent.PROGRESS.value,
                or_(e.locked_until.is_(None), e.locked_until < now),  # one being sent stays
            )
            .values(state="superseded")
        )
        payload: dict[str, Any]
        if hook.get("format") == "midjourney-proxy":
            # midjourney-proxy's notifyHook: the whole task, nothing around it.
            payload = mj_task(task, hook["base"], url_for=self._url_for)
        else:
            payload = {
                "type": f"task.{event.value}",
                "timestamp": datetime.fromtimestamp(now / 1000, UTC).isoformat().replace("+00:00", "Z"),
                "sequence": seq,
                "data": task_view(task, hook["base"], url_for=self._url_for).model_dump(mode="json"),
            }
        conn.execute(
            insert(webhook_events).values(
                id="msg_" + secrets.token_hex(16), task_id=task.id, seq=seq, api_key_id=task.api_key_id,
                url=hook["url"], event=event.value, payload=json.dumps(payload, separators=(",", ":")),
                state="pending", attempts=0, next_attempt_at=now, created_at=now,
            )
        )
        self._on_recorded(conn)  # inside the transaction: the wake-up goes out when it commits

    # --- delivering -----------------------------------------------------------------------------

    def claim_due(self, owner: str, limit: int, lock_seconds: float) -> list[Delivery]:
        """Lock up to ``limit`` due events for ``owner``: at most one per task, the earliest."""
        now = self._clock.now_ms()
        e = webhook_events.c
        earlier = aliased(webhook_events)
        due = (
            select(e.id)
            .where(
                e.state == "pending",
                e.next_attempt_at <= now,
                or_(e.locked_until.is_(None), e.locked_until < now),
                ~select(earlier.c.id)
                .where(earlier.c.task_id == e.task_id, earlier.c.state == "pending", earlier.c.seq < e.seq)
                .exists(),
            )
            .order_by(e.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with write_tx(self._engine) as conn:
            rows = conn.execute(
                update(webhook_events)
                .where(e.id.in_(due))
                .values(locked_by=owner, locked_until=now + int(lock_seconds * 1000))
                .returning(e.id, e.task_id, e.seq, e.url, e.event, e.payload, e.attempts, e.api_key_id)
            ).all()
        return [Delivery(*row) for row in rows]

    def delivered(self, delivery: Delivery, owner: str) -> None:
        now = self._clock.now_ms()
        self._finish(delivery, owner, state="delivered", attempts=delivery.attempts + 1, delivered_at=now, last_error=None)

    def failed(self, delivery: Delivery, owner: str, error: str) -> str:
        """Schedule the next attempt, or give the event up when the schedule is used up."""
        attempts = delivery.attempts + 1
        if attempts > len(self._retry_seconds):
            self._finish(delivery, owner, state="failed", attempts=attempts, last_error=error)
            return "failed"
        wait = self._retry_seconds[attempts - 1] * (1 + random.uniform(0, 0.1))
        self._finish(
            delivery, owner, state="pending", attempts=attempts, last_error=error,
            next_attempt_at=self._clock.now_ms() + int(wait * 1000),
        )
        return "pending"

    def _finish(self, delivery: Delivery, owner: str, **values: Any) -> None:
        e = webhook_events.c
        with write_tx(self._engine) as conn:
            conn.execute(
                update(webhook_events)
                .where(and_(e.id == delivery.id, e.locked_by == owner))
                .values(locked_by=None, locked_until=None, **values)
            )

    def purge(self, retention_seconds: float) -> int:
        """Forget events that are settled (delivered, given up or superseded) and older than the
        retention; pending ones are kept however old."""
        e = webhook_events.c
        cutoff = self._clock.now_ms() - int(retention_seconds * 1000)
        with write_tx(self._engine) as conn:
            return conn.execute(delete(webhook_events).where(e.state != "pending", e.created_at < cutoff)).rowcount

    def events_of(self, task_id: str) -> list[EventRecord]:
        e = webhook_events.c
        with read_tx(self._engine) as conn:
            rows = conn.execute(
                select(e.id, e.seq, e.event, e.state, e.attempts, e.last_error, e.created_at, e.delivered_at)
                .where(e.task_id == task_id)
                .order_by(e.seq)
            ).all()
        return [EventRecord(*row) for row in rows]
