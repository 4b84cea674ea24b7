"""Keys on both databases: whether one is live (long streams ask), and the admin overview."""

from __future__ import annotations

from sqlalchemy import Engine

from pixelmill.auth.keys import KeyStore
from pixelmill.clock import ManualClock


def test_keys_live_and_overview(db: Engine, clock: ManualClock) -> None:
    keys = KeyStore(db, clock)
    made, plaintext = keys.create(tenant_id="shop", name="web app")
    assert keys.live(made.id) and not keys.live("nope")
    [line] = [k for k in keys.overview() if k["id"] == made.id]
    assert (line["tenant_id"], line["name"], line["balance"], line["require_template"], line["revoked_at"]) == ("shop", "web app", None, False, None)
    assert plaintext not in str(line) and line["prefix"] == plaintext[:10]
    assert keys.revoke(made.id) and not keys.live(made.id) and not keys.revoke(made.id)
