"""Console sessions: an API key exchanged once for a server-side session behind an HttpOnly cookie.

The key is checked at sign-in and never reaches the browser's storage. The cookie holds a random
token; the database holds only its hash. Every request resolves the session and its key in one
query, so a revoked key ends its sessions at once, in every process. A session ends after 12 hours
without a request, and after 7 days in any case. Each session has its own CSRF token, which every
form that changes something carries.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update

from pixelmill.auth.keys import KeyStore, Principal
from pixelmill.clock import Clock
from pixelmill.db.engine import read_tx, write_tx
from pixelmill.db.schema import api_keys, console_sessions

IDLE_MS = 12 * 3_600_000
LIFETIME_MS = 7 * 86_400_000
#: A session's last-seen time is written at most this often (not on every request).
SEEN_EVERY_MS = 60_000


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str

    def csrf_ok(self, token: str | None) -> bool:
        # As bytes: compare_digest refuses a str with characters beyond ASCII (a 500, not a no).
        return token is not None and hmac.compare_digest(self.csrf.encode(), token.encode("utf-8", "surrogateescape"))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ConsoleSessions:
    def __init__(self, engine: Engine, clock: Clock, keys: KeyStore) -> None:
        self._engine = engine
        self._clock = clock
        self._keys = keys

    def open(self, api_key: str) -> str:
        """A new session for ``api_key`` (AuthenticationError when it is not a live key); its token."""
        principal = self._keys.authenticate(api_key)
        token = secrets.token_urlsafe(32)
        now = self._clock.now_ms()
        with write_tx(self._engine) as conn:
            conn.execute(insert(console_sessions).values(
                id=_hash(token), key_id=principal.key_id, csrf=secrets.token_urlsafe(24), created_at=now, seen_at=now,
            ))
        return token

    def get(self, token: str | None) -> Session | None:
        """The session of ``token``, while it and its key are live."""
        if not token:
            return None
        now = self._clock.now_ms()
        s, k = console_sessions.c, api_keys.c
        with read_tx(self._engine) as conn:
            row = conn.execute(
                select(s.csrf, s.created_at, s.seen_at, k.id, k.tenant_id, k.is_admin, k.revoked_at, k.rate_per_minute,
                       k.max_concurrent, k.webhook_url, k.webhook_events, k.output_profile, k.require_template)
                .join(api_keys, k.id == s.key_id)
                .where(s.id == _hash(token))
            ).first()
        if row is None or row.revoked_at is not None or now - row.seen_at > IDLE_MS or now - row.created_at > LIFETIME_MS:
            return None
        if now - row.seen_at > SEEN_EVERY_MS:
            with write_tx(self._engine) as conn:
                conn.execute(update(console_sessions).where(s.id == _hash(token)).values(seen_at=now))
        principal = Principal(
            key_id=row.id, tenant_id=row.tenant_id, is_admin=row.is_admin, rate_per_minute=row.rate_per_minute,
            max_concurrent=row.max_concurrent, webhook_url=row.webhook_url,
            webhook_events=tuple(row.webhook_events) if row.webhook_events else None, output_profile=row.output_profile,
            require_template=bool(row.require_template),
        )
        return Session(principal, row.csrf)

    def close(self, token: str | None) -> None:
        if token:
            with write_tx(self._engine) as conn:
                conn.execute(delete(console_sessions).where(console_sessions.c.id == _hash(token)))

    def purge(self) -> int:
        """Remove sessions past their idle or total lifetime (a chore)."""
        now = self._clock.now_ms()
        with write_tx(self._engine) as conn:
            gone = conn.execute(delete(console_sessions).where(
                (console_sessions.c.seen_at < now - IDLE_MS) | (console_sessions.c.created_at < now - LIFETIME_MS)
            ))
        return gone.rowcount
