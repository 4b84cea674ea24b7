"""Submits refused for their content (code 24), written down so that their share can be reported
from the database by any process (health report, ``pixelmill_banned_prompts_total``)."""

from __future__ import annotations

from sqlalchemy import Engine, insert

from pixelmill.clock import Clock
from pixelmill.db.engine import write_tx
from pixelmill.db.schema import refusals
from pixelmill.exceptions import PixelmillError


class RefusalLog:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def record(self, key_id: str | None, tenant_id: str | None, refusal: PixelmillError) -> None:
        with write_tx(self._engine) as conn:
            conn.execute(insert(refusals).values(
                key_id=key_id, tenant_id=tenant_id, code=refusal.code, reason=refusal.description[:1000],
                created_at=self._clock.now_ms(),
            ))
