"""Webhooks against a real server and a real receiver on loopback: Standard Webhooks signatures
checked with the reference library, retries with a stable webhook-id, events in order."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from pixelmill.testing import WebhookReceiver
from tests.conftest import TEST_KEY
from tests.helpers import Server, wait_for

IMAGINE = "/v1/midjourney/generations/imagine"


@pytest.fixture
def hooked_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    # The receiver lives on 127.0.0.2, allow-listed like an operator's internal endpoint.
    srv = Server(
        tmp_path, TEST_KEY, fetch_allow='["127.0.0.2/32"]', webhook_retry_seconds="[0.2, 0.2, 0.2]",
        webhook_poll_seconds=0.1, procedural_delay_ms=60,
    ).start()
    yield srv
    srv.stop()


def completed(hooks: WebhookReceiver, task_id: str) -> list[dict]:  # type: ignore[type-arg]
    def done() -> list[dict] | None:  # type: ignore[type-arg]
        events = [json.loads(body) for _, _, body in hooks.delivered()]
        mine = [e for e in events if e["data"]["task_id"] == task_id]
        return mine if any(e["type"] == "task.completed" for e in mine) else None

    return wait_for(done, timeout=30, what=f"completed webhook of {task_id}")


def test_signed_events_arrive_in_order_after_retries(hooked_server: Server) -> None:
    with WebhookReceiver(host="127.0.0.2", fail_first=2) as hooks, hooked_server.client() as api:
        secret = api.get("/v1/webhook").json()["secret"]
        r = api.post(IMAGINE, json={"prompt": "a kite over the sea", "webhook_url": hooks.url})
        task_id = r.json()["data"][0]["task_id"]
        events = completed(hooks, task_id)
        task = api.get(f"/v1/midjourney/{task_id}").json()

    verifier = Webhook(secret)
    for _, headers, body in hooks.delivered():
        assert verifier.verify(body, headers) == json.loads(body)  # the reference library agrees
    types = [e["type"] for e in events]
    assert types[0] == "task.start" and types[-1] == "task.completed" and set(types) <= {"task.start", "task.progress", "task.completed"}
    sequences = [e["sequence"] for e in events]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)  # never an older state after a newer
    assert events[-1]["data"]["status"] == "SUCCESS" and events[-1]["data"]["image_urls"] == task["image_urls"]
    # Every delivered event was refused twice first, and retried under the same webhook-id. A
    # progress event waiting for its retry when a newer event came was dropped (superseded).
    by_id: dict[str, list[int]] = {}
    kinds: dict[str, str] = {}
    for _, headers, body, status in hooks.attempts:
        by_id.setdefault(headers["webhook-id"], []).append(status)
        kinds[headers["webhook-id"]] = json.loads(body)["type"]
    delivered = {i for i, statuses in by_id.items() if 204 in statuses}
    assert len(delivered) == len(events) and all(by_id[i] == [500, 500, 204] for i in delivered)
    assert all(kinds[i] == "task.progress" and set(by_id[i]) == {500} for i in set(by_id) - delivered)


def test_event_filter_and_the_keys_default_webhook(hooked_server: Server) -> None:
    with WebhookReceiver(host="127.0.0.2") as hooks, hooked_server.client() as api:
        put = api.put("/v1/webhook", json={"url": hooks.url, "events": ["completed"]})
        assert put.status_code == 200 and put.json()["url"] == hooks.url
        task_id = api.post(IMAGINE, json={"prompt": "a quiet harbour"}).json()["data"][0]["task_id"]
        events = completed(hooks, task_id)
        assert [e["type"] for e in events] == ["task.completed"]
        rotated = api.put("/v1/webhook", json={"url": None, "rotate_secret": True}).json()
        assert rotated["url"] is None and rotated["secret"] != put.json()["secret"]


def test_the_files_event_says_when_renditions_are_ready(hooked_server: Server) -> None:
    with WebhookReceiver(host="127.0.0.2") as hooks, hooked_server.client() as api:
        body = {"prompt": "a lighthouse in fog", "webhook_url": hooks.url, "webhook_events": ["completed", "files"]}
        task_id = api.post(IMAGINE, json=body).json()["data"][0]["task_id"]

        def both() -> list[dict] | None:  # type: ignore[type-arg]
            events = [json.loads(body) for _, _, body in hooks.delivered()]
            mine = [e for e in events if e["data"]["task_id"] == task_id]
            return mine if len(mine) == 2 else None

        done, files = wait_for(both, timeout=30, what=f"the files webhook of {task_id}")
    # SUCCESS comes first, with the images; the renditions and records follow.
    assert [done["type"], files["type"]] == ["task.completed", "task.files"] and done["sequence"] < files["sequence"]
    assert done["data"]["status"] == files["data"]["status"] == "SUCCESS" and done["data"]["renditions"] == [{}] * 4
    assert files["data"]["image_urls"] == done["data"]["image_urls"] and all(files["data"]["renditions"])


def test_webhook_targets_pass_the_address_rules(api: httpx.Client) -> None:
    r = api.post(IMAGINE, json={"prompt": "a cat", "webhook_url": "http://127.0.0.1:9/hook"})
    assert r.status_code == 400 and r.json()["code"] == 4
    assert r.json()["description"].startswith("webhook_url: http://127.0.0.1:9/hook: 127.0.0.1 is a loopback address")
    r = api.put("/v1/webhook", json={"url": "http://169.254.169.254/latest"})
    assert r.status_code == 400 and r.json()["description"].startswith("url: ")
    r = api.post(IMAGINE, json={"prompt": "a cat", "webhook_events": ["completed"]})
    assert r.status_code == 400 and r.json()["description"] == "webhook_events: needs webhook_url (or a default webhook on the API key)"
