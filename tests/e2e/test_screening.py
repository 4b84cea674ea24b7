"""Output and input screening through the real server, with the real NudeNet detector.

The pictures are built here: a portrait photograph that ships with matplotlib (Grace Hopper),
which the detector reliably labels FACE_FEMALE, pulled into procedural images with ``--iw 3``.
A face is harmless, so the tests make FACE_FEMALE a blocking or review label for their own
tenants: the detector's real behaviour drives every path (held, approved, rejected, blocked,
refused input) without any indecent picture in the repository."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from pixelmill.testing import WebhookReceiver
from tests.helpers import Server, download_image, require_detector, require_extra, wait_files, wait_for, wait_terminal

require_detector()
matplotlib = require_extra("matplotlib", "dev")

GEN = "/v1/midjourney/generations"
ADMIN_KEY = "pm_test_" + "s" * 32
PORTRAIT = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
#: A fixed seed: the procedural engine then draws the same four pictures every run.
FACE_PROMPT = "a portrait in a garden --iw 3 --seed 99"
RULES = {
    "tenants": {
        "review": {"review": {"FACE_FEMALE": 0.2}, "inputs": {}},
        "strict": {"block": {"FACE_FEMALE": 0.2}, "inputs": {}},
        "uploads": {"inputs": {"FACE_FEMALE": 0.3}},
    }
}


@pytest.fixture(scope="module")
def screened(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("screened")
    (tmp / "screening.json").write_text(json.dumps(RULES))
    srv = Server(tmp, ADMIN_KEY, screening="nudenet", screening_file=str(tmp / "screening.json"), fetch_allow='["127.0.0.2/32"]',
                 webhook_poll_seconds=0.1).start()
    yield srv
    srv.stop()


def key_of(server: Server, tenant: str, balance: int = 10) -> tuple[str, str]:
    out = server.cli("keys", "create", "--tenant", tenant).stdout.split()
    server.cli("keys", "balance", out[1], "--set", str(balance))
    return out[1], out[-1]


def upload_portrait(c: httpx.Client) -> str:
    return str(c.post("/v1/uploads", content=PORTRAIT.read_bytes(), headers={"Content-Type": "image/jpeg"}).json()["data"][0]["url"])


def face_task(c: httpx.Client, **fields: Any) -> dict[str, Any]:
    url = upload_portrait(c)
    r = c.post(f"{GEN}/imagine", json={"prompt": f"{url} {FACE_PROMPT}", **fields})
    assert r.status_code == 200, r.text
    return wait_terminal(c, r.json()["data"][0]["task_id"])


def test_clean_images_pass_and_are_counted_in_metrics(screened: Server) -> None:
    with screened.client() as c:
        task = wait_terminal(c, c.post(f"{GEN}/imagine", json={"prompt": "a lighthouse at dusk --seed 3"}).json()["data"][0]["task_id"])
        assert task["status"] == "SUCCESS" and len(task["image_urls"]) == 4 and task["screening"] == []
        assert task["fail_reason"] is None
        metrics = c.get("/metrics").text
    assert 'pixelmill_screened_images_total{decision="pass",purpose="output"}' in metrics
    assert 'pixelmill_screening_seconds_count{purpose="output"}' in metrics


def test_held_images_wait_privately_then_approve_publishes_and_reject_records(screened: Server) -> None:
    _, key = key_of(screened, "review")
    with WebhookReceiver(host="127.0.0.2") as hooks, screened.client(key) as c, screened.client() as admin:
        task = face_task(c, webhook_url=hooks.url)
        # All four are held: nothing is shown, no U/V button, and the reason is said.
        assert task["status"] == "SUCCESS" and task["image_urls"] == [] and task["renditions"] == []
        assert [e["decision"] for e in task["screening"]] == ["review"] * 4
        assert "image 1 held for review (FACE_FEMALE" in task["fail_reason"]
        assert [b["label"] for b in task["buttons"]] == ["🔄"]
        refused = c.post(f"{GEN}/upscale", json={"task_id": task["task_id"], "index": 1})
        assert refused.json()["code"] == 4 and "kept back by output screening" in refused.json()["description"]
        assert c.get("/v1/admin/reviews").status_code == 403  # reviewers are admins

        pending = [r for r in admin.get("/v1/admin/reviews", params={"tenant": "review"}).json() if r["task_id"] == task["task_id"]]
        assert [r["index"] for r in pending] == [1, 2, 3, 4] and pending[0]["reasons"][0]["label"] == "FACE_FEMALE"
        held = admin.get(f"/v1/admin/reviews/{pending[0]['id']}/image")
        assert held.headers["content-type"] == "image/png" and Image.open(io.BytesIO(held.content)).size == (512, 512)

        approved = admin.post(f"/v1/admin/reviews/{pending[0]['id']}/approve", json={"note": "a portrait, fine"}).json()
        assert approved["review"]["state"] == "approved" and len(approved["task"]["image_urls"]) == 1
        again = admin.post(f"/v1/admin/reviews/{pending[0]['id']}/approve", json={})
        assert again.status_code == 409
        for r in pending[1:]:
            assert admin.post(f"/v1/admin/reviews/{r['id']}/reject", json={"note": "off brand"}).json()["review"]["state"] == "rejected"
        assert admin.get(f"/v1/admin/reviews/{pending[1]['id']}/image").status_code == 409  # the held bytes are gone

        final = c.get(f"/v1/midjourney/{task['task_id']}").json()
        assert final["status"] == "SUCCESS" and final["quota"] == 1
        assert download_image(c, final["image_urls"][0]).size == (512, 512)
        # The approved image gets its renditions and record after the decision, like any output.
        record = c.get(wait_files(c, task["task_id"])["renditions"][0]["metadata"]).json()
        assert record["task_id"] == task["task_id"] and record["params"]["index"] == 1
        assert [b["label"] for b in final["buttons"]] == ["U1", "V1", "🔄"]
        assert [e["decision"] for e in final["screening"]] == ["approved", "rejected", "rejected", "rejected"]

        def reviewed() -> list[dict[str, Any]] | None:
            events = [json.loads(body) for _, _, body in hooks.delivered()]
            mine = [e for e in events if e["type"] == "task.reviewed" and e["data"]["task_id"] == task["task_id"]]
            return mine if len(mine) == 4 else None

        events = wait_for(reviewed, timeout=30, what="four reviewed webhooks")
        assert len(events[0]["data"]["image_urls"]) == 1

        log = admin.get("/v1/admin/audit", params={"kind": "review"}).json()
        mine = [e for e in log if e["detail"]["task_id"] == task["task_id"]]
        assert sorted(e["action"] for e in mine) == ["approved", "rejected", "rejected", "rejected"]
        # The admin key that decided, the same as the review records.
        assert {e["actor"] for e in mine} == {approved["review"]["decided_by"]} and approved["review"]["decided_by"]

    # The CLI lists the same queue.
    cli = screened.cli("reviews", "list", "--state", "approved", "--url", screened.url, "--api-key", ADMIN_KEY).stdout
    assert pending[0]["id"] in cli and "FACE_FEMALE" in cli


def test_rejecting_every_held_image_fails_the_task_and_refunds_it(screened: Server) -> None:
    key_id, key = key_of(screened, "review", balance=3)
    with screened.client(key) as c, screened.client() as admin:
        task = face_task(c)
        assert admin.get(f"/v1/admin/keys/{key_id}/balance").json()["balance"] == 2
        for r in [r for r in admin.get("/v1/admin/reviews").json() if r["task_id"] == task["task_id"]]:
            out = screened.cli("reviews", "reject", r["id"], "--note", "no", "--url", screened.url, "--api-key", ADMIN_KEY).stdout
            assert "rejected" in out
        final = c.get(f"/v1/midjourney/{task['task_id']}").json()
        assert final["status"] == "FAILURE" and final["quota"] == 0
        assert final["fail_reason"] == "every image was blocked by output screening or rejected in review"
        assert admin.get(f"/v1/admin/keys/{key_id}/balance").json()["balance"] == 3


def test_blocked_images_are_never_stored_and_a_fully_blocked_task_is_refunded(screened: Server) -> None:
    key_id, key = key_of(screened, "strict", balance=3)
    with screened.client(key) as c, screened.client() as admin:
        upload_portrait(c)
        files_before = sum(len(f) for _, _, f in os.walk(screened.data_dir / "files"))
        task = face_task(c)
        assert task["status"] == "FAILURE" and task["quota"] == 0 and task["image_urls"] == []
        assert task["fail_reason"].startswith("blocked by output screening: image 1 blocked (FACE_FEMALE ")
        assert task["fail_reason"].count("FACE_FEMALE") == 4
        assert admin.get(f"/v1/admin/keys/{key_id}/balance").json()["balance"] == 3
    # Nothing was added to storage: no grid, image, rendition or preview of the task.
    assert sum(len(f) for _, _, f in os.walk(screened.data_dir / "files")) == files_before


def test_an_input_image_the_tenant_blocks_is_refused_with_code_24_before_charging(screened: Server) -> None:
    key_id, key = key_of(screened, "uploads", balance=3)
    with screened.client(key) as c, screened.client() as admin:
        url = upload_portrait(c)
        r = c.post(f"{GEN}/imagine", json={"prompt": "a portrait", "image_urls": [url]})
        assert r.status_code == 400 and r.json()["code"] == 24
        props = r.json()["properties"]
        assert props["field"] == "image_urls[0]" and props["check"] == "image" and props["label"] == "FACE_FEMALE"
        blend = c.post(f"{GEN}/blend", json={"image_urls": [url, url]})
        assert blend.json()["code"] == 24 and blend.json()["properties"]["field"] == "image_urls[0]"
        assert admin.get(f"/v1/admin/keys/{key_id}/balance").json()["balance"] == 3


def test_reviewers_claim_see_blurred_thumbnails_and_decide_in_bulk(screened: Server) -> None:
    _, key = key_of(screened, "review")
    other_admin = screened.cli("keys", "create", "--tenant", "ops", "--admin").stdout.split()[-1]
    with screened.client(key) as c, screened.client() as admin, screened.client(other_admin) as bob:
        task = face_task(c)
        pending = [r for r in admin.get("/v1/admin/reviews", params={"tenant": "review", "reason": "FACE_FEMALE"}).json()
                   if r["task_id"] == task["task_id"]]
        assert [r["index"] for r in pending] == [1, 2, 3, 4] and all(r["claimed_by"] is None for r in pending)
        assert admin.get("/v1/admin/reviews", params={"tenant": "review", "reason": "NO_SUCH_LABEL"}).json() == []

        thumb = admin.get(f"/v1/admin/reviews/{pending[0]['id']}/thumbnail")
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp" and thumb.headers["cache-control"] == "private, max-age=3600"
        with Image.open(io.BytesIO(thumb.content)) as im:
            pixels = [tuple(p) for p in np.asarray(im.convert("RGB")).reshape(-1, 3)]
        # Small and grey (lossy WebP keeps grey within a step or two of each channel).
        assert im.size == (256, 256) and all(max(p) - min(p) <= 3 for p in pixels[::97])

        claimed = admin.post(f"/v1/admin/reviews/{pending[0]['id']}/claim")
        assert claimed.status_code == 200 and claimed.json()["claimed_by"] and claimed.json()["claimed_until"]
        refused = bob.post(f"/v1/admin/reviews/{pending[0]['id']}/approve", json={})
        assert refused.status_code == 409 and "is claimed by" in refused.json()["description"]
        assert bob.post(f"/v1/admin/reviews/{pending[0]['id']}/claim").status_code == 409

        outcomes = bob.post("/v1/admin/reviews/decide", json={"ids": [r["id"] for r in pending], "decision": "reject", "note": "off brand"}).json()
        assert [o["state"] for o in outcomes] == [None, "rejected", "rejected", "rejected"]
        assert "is claimed by" in outcomes[0]["error"]
        assert admin.delete(f"/v1/admin/reviews/{pending[0]['id']}/claim").status_code == 204
        last = bob.post("/v1/admin/reviews/decide", json={"ids": [pending[0]["id"]], "decision": "approve"}).json()
        assert last == [{"id": pending[0]["id"], "state": "approved", "error": None}]
        done = c.get(f"/v1/midjourney/{task['task_id']}").json()
        assert done["status"] == "SUCCESS" and len(done["image_urls"]) == 1
