"""The audit log: who decided what and when (review decisions, template changes). Rows are
written in the transaction of the change they describe, so the log never disagrees with the data."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from pixelmill.clock import Clock
from pixelmill.db.engine import read_tx
from pixelmill.db.schema import audit_log


class AuditLog:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def record(self, conn: Connection, actor: str, kind: str, subject: str, action: str, detail: dict[str, Any] | None = None) -> None:
        conn.execute(insert(audit_log).values(
            at=self._clock.now_ms(), actor=actor, subject_kind=kind, subject_id=subject, action=action, detail=detail or {},
        ))

    def list(self, kind: str | None = None, subject: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first."""
        a = audit_log.c
        query = select(audit_log).order_by(a.id.desc()).limit(limit)
        if kind is not None:
            query = query.where(a.subject_kind == kind)
        if subject is not None:
            query = query.where(a.subject_id == subject)
        with read_tx(self._engine) as conn:
            return [
                {"id": r.id, "at": r.at, "actor": r.actor, "kind": r.subject_kind, "subject": r.subject_id,
                 "action": r.action, "detail": r.detail}
                for r in conn.execute(query)
            ]
