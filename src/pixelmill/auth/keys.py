"""API keys, stored as SHA-256 hashes.

Keys are 256-bit random strings, so a fast hash is the right choice: nobody can brute-force the
preimage of a random 256-bit secret, and a slow password hash would cap request throughput.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, insert, select, update

from pixelmill.clock import Clock
from pixelmill.db.engine import read_tx, write_tx
from pixelmill.db.schema import api_keys, tenants
from pixelmill.exceptions import AuthenticationError, ValidationError
from pixelmill.notify.signing import new_secret

KEY_PREFIX = "pm_"
_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: resolved from the bearer key on every request."""

    key_id: str
    tenant_id: str
    is_admin: bool
    #: This key's own caps; None = the deployment default (settings).
    rate_per_minute: int | None = None
    max_concurrent: int | None = None
    #: The key's default webhook, used by tasks that name none.
    webhook_url: str | None = None
    webhook_events: tuple[str, ...] | None = None
    #: The output profile of this key's tasks that name none; None = the deployment default.
    output_profile: str | None = None
    #: Imagines only through templates (an operator's policy for the key).
    require_template: bool = False


@dataclass(frozen=True)
class WebhookSettings:
    url: str | None
    events: tuple[str, ...] | None
    secret: str


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant_id: str
    prefix: str
    name: str
    is_admin: bool
    created_at: int
    revoked_at: int | None


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


#: Every request runs it: built once, bound per call. Looked up each time, never cached, so a
#: revoked key stops working at once in every process.
_AUTHENTICATE = select(
    api_keys.c.id, api_keys.c.tenant_id, api_keys.c.is_admin, api_keys.c.revoked_at,
    api_keys.c.rate_per_minute, api_keys.c.max_concurrent, api_keys.c.webhook_url,
    api_keys.c.webhook_events, api_keys.c.output_profile, api_keys.c.require_template,
).where(api_keys.c.key_hash == bindparam("b_hash"))


class KeyStore:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def create(
        self,
        *,
        tenant_id: str = "default",
        name: str = "",
        is_admin: bool = False,
        plaintext: str | None = None,
        within: Callable[[Connection, ApiKey], None] | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key (and its tenant when new). Returns the record and the only copy of the key.
        ``within`` runs in the same transaction (the admin API's audit row)."""
        if not _TENANT_RE.match(tenant_id):
            raise ValidationError(
                "tenant", f"'{tenant_id}' must be 1-64 of a-z, 0-9, '_' or '-', starting alphanumeric"
            )
        plaintext = plaintext or generate_key()
        now = self._clock.now_ms()
        key = ApiKey(
            id=secrets.token_hex(8),
            tenant_id=tenant_id,
            prefix=plaintext[:10],
            name=name,
            is_admin=is_admin,
            created_at=now,
            revoked_at=None,
        )
        with write_tx(self._engine) as conn:
            if conn.execute(select(tenants.c.id).where(tenants.c.id == tenant_id)).first() is None:
                conn.execute(insert(tenants).values(id=tenant_id, name=tenant_id, created_at=now))
            conn.execute(
                insert(api_keys).values(
                    id=key.id,
                    tenant_id=tenant_id,
                    key_hash=hash_key(plaintext),
                    prefix=key.prefix,
                    name=name,
                    is_admin=is_admin,
                    created_at=now,
                    revoked_at=None,
                    webhook_secret=new_secret(),
                )
            )
            if within is not None:
                within(conn, key)
        return key, plaintext

    def get(self, key_id: str) -> ApiKey:
        with read_tx(self._engine) as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
        if row is None:
            raise ValidationError("key", f"no key with id {key_id}")
        return _key_from_row(row)

    def live(self, key_id: str) -> bool:
        """Whether the key exists and is not revoked (a long stream asks it now and then)."""
        with read_tx(self._engine) as conn:
            row = conn.execute(select(api_keys.c.revoked_at).where(api_keys.c.id == key_id)).first()
        return row is not None and row.revoked_at is None

    def overview(self) -> list[dict[str, Any]]:
        """Every key with what an admin manages on it (never its secret), newest first."""
        k = api_keys.c
        with read_tx(self._engine) as conn:
            rows = conn.execute(
                select(k.id, k.tenant_id, k.prefix, k.name, k.is_admin, k.created_at, k.revoked_at, k.balance, k.output_profile,
                       k.require_template, k.rate_per_minute, k.max_concurrent).order_by(k.created_at.desc(), k.id)
            ).all()
        return [{**r._mapping, "require_template": bool(r.require_template)} for r in rows]

    def list(self) -> list[ApiKey]:
        with read_tx(self._engine) as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).all()
        return [_key_from_row(r) for r in rows]

    def revoke(self, key_id: str, within: Callable[[Connection], None] | None = None) -> bool:
        """Revoke a live key (False: none such); ``within`` runs in the same transaction."""
        with write_tx(self._engine) as conn:
            res = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=self._clock.now_ms())
            )
            if res.rowcount == 1 and within is not None:
                within(conn)
        return res.rowcount == 1

    def authenticate(self, plaintext: str | None) -> Principal:
        if not plaintext:
            raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'")
        with read_tx(self._engine) as conn:
            row = conn.execute(_AUTHENTICATE, {"b_hash": hash_key(plaintext)}).first()
        if row is None or row.revoked_at is not None:
            raise AuthenticationError("invalid or revoked API key")
        return Principal(
            key_id=row.id, tenant_id=row.tenant_id, is_admin=row.is_admin,
            rate_per_minute=row.rate_per_minute, max_concurrent=row.max_concurrent,
            webhook_url=row.webhook_url, webhook_events=tuple(row.webhook_events) if row.webhook_events else None,
            output_profile=row.output_profile,
            require_template=bool(row.require_template),
        )

    def set_output_profile(self, key_id: str, profile: str | None) -> bool:
        """The key's default output profile (None: the deployment's); False when no such key."""
        with write_tx(self._engine) as conn:
            return conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(output_profile=profile)).rowcount == 1

    def set_require_template(self, key_id: str, required: bool) -> bool:
        """Whether the key may submit free prompts; False when no such key."""
        with write_tx(self._engine) as conn:
            return conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(require_template=required)).rowcount == 1

    def set_limits(self, key_id: str, *, rate_per_minute: int | None, max_concurrent: int | None) -> bool:
        """Give a key its own caps (None: back to the deployment default; 0: no cap)."""
        for name, value in (("rate_per_minute", rate_per_minute), ("max_concurrent", max_concurrent)):
            if value is not None and value < 0:
                raise ValidationError(name, f"must be 0 (no cap) or more, got {value}")
        with write_tx(self._engine) as conn:
            res = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(rate_per_minute=rate_per_minute, max_concurrent=max_concurrent)
            )
        return res.rowcount == 1

    def webhook_settings(self, key_id: str) -> WebhookSettings:
        """The key's default webhook and its signing secret (made now for keys older than
        webhooks)."""
        with write_tx(self._engine) as conn:
            conn.execute(
                update(api_keys).where(api_keys.c.id == key_id, api_keys.c.webhook_secret.is_(None)).values(webhook_secret=new_secret())
            )
            row = conn.execute(
                select(api_keys.c.webhook_url, api_keys.c.webhook_events, api_keys.c.webhook_secret).where(api_keys.c.id == key_id)
            ).one()
        return WebhookSettings(row.webhook_url, tuple(row.webhook_events) if row.webhook_events else None, row.webhook_secret)

    def webhook_secret(self, key_id: str) -> str:
        return self.webhook_settings(key_id).secret

    def set_webhook(self, key_id: str, url: str | None, events: tuple[str, ...] | None, *, rotate_secret: bool = False) -> WebhookSettings:
        """Set (or clear, with None) the key's default webhook; optionally a new signing secret."""
        values: dict[str, object] = {"webhook_url": url, "webhook_events": list(events) if events else None}
        if rotate_secret:
            values["webhook_secret"] = new_secret()
        with write_tx(self._engine) as conn:
            conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(**values))
        return self.webhook_settings(key_id)

    def ensure_bootstrap(self, configured: str | None) -> str | None:
        """Make sure an admin can call the service.

        With a configured key: create it if it does not exist (never resurrect a revoked one).
        Without: when no key exists at all, generate an admin key and return it so it is printed
        once. Returns the plaintext of a key created now, else None.
        """
        with read_tx(self._engine) as conn:
            if configured is not None:
                exists = conn.execute(
                    select(api_keys.c.id).where(api_keys.c.key_hash == hash_key(configured))
                ).first()
                if exists:
                    return None
            elif conn.execute(select(api_keys.c.id).limit(1)).first():
                return None
        _, plaintext = self.create(name="bootstrap admin", is_admin=True, plaintext=configured)
        return plaintext


def _key_from_row(row: Row[Any]) -> ApiKey:
    m = row._mapping
    return ApiKey(
        id=m["id"],
        tenant_id=m["tenant_id"],
        prefix=m["prefix"],
        name=m["name"],
        is_admin=m["is_admin"],
        created_at=m["created_at"],
        revoked_at=m["revoked_at"],
    )
