"""Signed, expiring links: what the API hands out for pages a person opens without an API key
(an evaluation's contact sheet). A link names its path and an expiry and carries an HMAC of both
under the deployment's secret, so it can be shared like a presigned URL but neither guessed,
widened to another page, nor kept past its time.

The secret is made at first start and kept in the database (``instance_secrets``): every process
of a deployment signs and checks alike without a setting to distribute.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from pixelmill.db.engine import read_tx, write_tx
from pixelmill.db.schema import instance_secrets


def instance_secret(engine: Engine, name: str) -> str:
    """The deployment's secret ``name``, made now when missing (two processes starting together
    agree: the second insert fails and reads the first's)."""
    with read_tx(engine) as conn:
        value = conn.execute(select(instance_secrets.c.value).where(instance_secrets.c.name == name)).scalar()
    if value is not None:
        return str(value)
    try:
        with write_tx(engine) as conn:
            conn.execute(insert(instance_secrets).values(name=name, value=secrets.token_hex(32)))
    except IntegrityError:
        pass
    return instance_secret(engine, name)


class LinkSigner:
    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def sign(self, path: str, expires: int) -> str:
        return hmac.new(self._key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()[:40]

    def valid(self, path: str, expires: int, signature: str, now_seconds: float) -> bool:
        return now_seconds <= expires and hmac.compare_digest(self.sign(path, expires), signature)
