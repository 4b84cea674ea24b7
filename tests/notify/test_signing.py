"""Standard Webhooks signatures, checked against the reference library in both directions."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from pixelmill.notify.signing import WebhookVerificationError, new_secret, signed_headers, verify

BODY = json.dumps({"type": "task.completed", "data": {"task_id": "1"}}).encode()


def test_our_signature_verifies_with_the_reference_library() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    headers = signed_headers(secret, "msg_1", BODY)
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_verify_accepts_the_reference_librarys_signature() -> None:
    secret = new_secret()
    now = datetime.now(UTC)
    signature = Webhook(secret).sign("msg_2", now, BODY.decode())
    headers = {"webhook-id": "msg_2", "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": f"v1,bogus {signature}"}
    assert verify(BODY, headers, secret) == json.loads(BODY)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h, b: (h, b + b" "), "no signature matches"),
        (lambda h, b: ({**h, "webhook-id": "msg_other"}, b), "no signature matches"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b), "missing"),
        (lambda h, b: ({**h, "webhook-timestamp": "yesterday"}, b), "not Unix seconds"),
    ],
)
def test_verify_refuses_tampering(change, message: str) -> None:  # type: ignore[no-untyped-def]
    secret = new_secret()
    headers, body = change(signed_headers(secret, "msg_3", BODY), BODY)
    with pytest.raises(WebhookVerificationError, match=message):
        verify(body, headers, secret)


def test_verify_refuses_another_secret_and_old_timestamps() -> None:
    secret = new_secret()
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(BODY, signed_headers(secret, "m", BODY), new_secret())
    old = signed_headers(secret, "m", BODY, timestamp=1_000_000)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify(BODY, old, secret)
    assert verify(BODY, old, secret, now=1_000_100) == json.loads(BODY)
