"""Idempotency keys: a retried submit with the same ``Idempotency-Key`` gets the same task.

One row per (API key, idempotency key). The first request inserts it with no task ids yet (the
primary key makes a concurrent duplicate's insert fail: exactly one request goes on), and its
task ids are written in the same transaction that inserts the tasks, so a crash can never leave
tasks without their key or a key pointing at nothing. Afterwards:

- same key, same body → the stored task ids: the same answer;
- same key, other body → ``IdempotencyMismatch`` (422);
- same key while the first is still being accepted → ``IdempotencyInProgress`` (409, retry).

A pending row whose request died (process killed, or the database restarted, before its
transaction) is taken over after ``pending_timeout_seconds`` (``PIXELMILL_IDEMPOTENCY_PENDING_SECONDS``);
every row expires after ``ttl_seconds``. A claim is one row *as created*: a request that was only
slow and lost its row to a takeover cannot record its tasks (``finish`` matches no row and raises
``ClaimLost``, which rolls its insert back), so one key never creates or charges two sets of tasks;
that request answers with the tasks of the one that took over.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from pixelmill.clock import Clock
from pixelmill.db.engine import read_tx, write_tx
from pixelmill.db.schema import idempotency_keys
from pixelmill.exceptions import IdempotencyInProgress, IdempotencyMismatch, ValidationError

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255


@dataclass(frozen=True)
class Claim:
    """This request owns the key: it must ``finish`` (in its insert transaction) or ``abandon``."""

    key_id: str
    idem_key: str
    request_hash: str
    #: When the row was created: which row is this request's, after a takeover.
    created_at: int


class ClaimLost(Exception):
    """The claim was taken over by a later request with the same key (this one was too slow):
    nothing of this request may be recorded; the caller answers with the other request's tasks."""


def request_hash(action: str, body: dict[str, Any]) -> str:
    """The validated body, canonically serialised, with the operation it was sent to."""
    return hashlib.sha256(json.dumps([action, body], sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_key(value: str) -> str:
    if not 1 <= len(value) <= MAX_KEY_CHARS or not value.isprintable():
        raise ValidationError(HEADER, f"must be 1-{MAX_KEY_CHARS} printable characters")
    return value


class IdempotencyStore:
    def __init__(self, engine: Engine, clock: Clock, ttl_seconds: float, pending_timeout_seconds: float = 30) -> None:
        self._engine = engine
        self._clock = clock
        self._ttl_ms = int(ttl_seconds * 1000)
        self._pending_ms = int(pending_timeout_seconds * 1000)

    def begin(self, key_id: str, idem_key: str, body_hash: str) -> Claim | list[str]:
        """Claim the key, or return the task ids of the request that already used it."""
        check_key(idem_key)
        while True:
            now = self._clock.now_ms()
            claim = Claim(key_id, idem_key, body_hash, now)
            try:
                with write_tx(self._engine) as conn:
                    conn.execute(
                        insert(idempotency_keys).values(
                            key_id=key_id, idem_key=idem_key, request_hash=body_hash, task_ids=None,
                            created_at=now, expires_at=now + self._ttl_ms,
                        )
                    )
                return claim
            except IntegrityError:
                pass
            with read_tx(self._engine) as conn:
                row = conn.execute(select(idempotency_keys).where(*self._match(claim))).first()
            if row is None:
                continue  # expired and removed in between: try again
            stale = row.expires_at <= now or (row.task_ids is None and row.created_at + self._pending_ms <= now)
            if stale:
                with write_tx(self._engine) as conn:  # only the row we looked at, not a newer one
                    conn.execute(delete(idempotency_keys).where(*self._match(claim), idempotency_keys.c.created_at == row.created_at))
                continue
            if row.request_hash != body_hash:
                raise IdempotencyMismatch(
                    f"{HEADER}: {idem_key!r} was already used with a different request; use a new key",
                    properties={"field": HEADER},
                )
            if row.task_ids is None:
                raise IdempotencyInProgress(
                    f"{HEADER}: {idem_key!r}: the first request with this key is still being accepted; retry shortly"
                )
            return list(row.task_ids)

    def finish(self, conn: Connection, claim: Claim, task_ids: list[str]) -> None:
        """Record the answer; call inside the transaction that inserts the tasks. ``ClaimLost``
        when the row is no longer this claim's: raised inside that transaction, it undoes it."""
        done = conn.execute(
            update(idempotency_keys)
            .where(*self._mine(claim), idempotency_keys.c.task_ids.is_(None))
            .values(task_ids=task_ids)
        )
        if done.rowcount != 1:
            raise ClaimLost(claim.idem_key)

    def finish_now(self, claim: Claim, task_ids: list[str]) -> None:
        """``finish`` in a transaction of its own: nothing new was inserted (all coalesced)."""
        with write_tx(self._engine) as conn:
            self.finish(conn, claim, task_ids)

    def abandon(self, claim: Claim) -> None:
        """The request failed before any task was accepted: free the key for a retry."""
        with write_tx(self._engine) as conn:
            conn.execute(delete(idempotency_keys).where(*self._mine(claim), idempotency_keys.c.task_ids.is_(None)))

    def purge_expired(self) -> int:
        with write_tx(self._engine) as conn:
            return conn.execute(delete(idempotency_keys).where(idempotency_keys.c.expires_at <= self._clock.now_ms())).rowcount

    @staticmethod
    def _match(claim: Claim) -> tuple[Any, ...]:
        return (idempotency_keys.c.key_id == claim.key_id, idempotency_keys.c.idem_key == claim.idem_key)

    @classmethod
    def _mine(cls, claim: Claim) -> tuple[Any, ...]:
        """The claim's own row: not one a later request created after taking the key over."""
        return (*cls._match(claim), idempotency_keys.c.created_at == claim.created_at)
