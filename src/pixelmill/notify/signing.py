"""Standard Webhooks signatures (https://www.standardwebhooks.com).

A secret is ``whsec_`` + base64 of 32 random bytes. Each delivery carries ``webhook-id`` (stable
across retries, so receivers can drop duplicates), ``webhook-timestamp`` (Unix seconds of this
attempt) and ``webhook-signature``: ``v1,`` + base64 of HMAC-SHA256(secret, ``id.timestamp.body``).
``verify`` is what the SDK offers receivers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

SECRET_PREFIX = "whsec_"
#: Receivers refuse timestamps further than this from their clock (replay protection).
DEFAULT_TOLERANCE_SECONDS = 300


class WebhookVerificationError(Exception):
    """The delivery is not from pixelmill (bad or missing signature), or too old or too new."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signed_headers(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sign(secret, msg_id, ts, body)}


def verify(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a delivery and return its parsed JSON payload, or raise ``WebhookVerificationError``.

    ``body`` must be the raw request body, byte for byte (not re-serialised JSON)."""
    raw = body.encode() if isinstance(body, str) else body
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, ts_text, signatures = (lower.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and ts_text and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        ts = int(ts_text)
    except ValueError:
        raise WebhookVerificationError(f"webhook-timestamp {ts_text!r} is not Unix seconds") from None
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_seconds:
        raise WebhookVerificationError(f"webhook-timestamp is {current - ts:+.0f}s from now (tolerance {tolerance_seconds:g}s)")
    expected = sign(secret, msg_id, ts, raw)
    # Several signatures may be sent (secret rotation); any one that matches is enough.
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures.split()):
        raise WebhookVerificationError("no signature matches this secret")
    payload: dict[str, Any] = json.loads(raw)
    return payload
