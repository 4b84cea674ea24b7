"""The Python SDK against the real server: body fields go through the same request model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pixelmill.client import APIError, Client
from tests.helpers import Server
from tests.imageserver import png_bytes


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with Client(server.url, server.api_key) as c:
        yield c


def test_imagine_with_body_fields(client: Client) -> None:
    task = client.wait(client.imagine("a girl", niji=True, version=7, seed=3), timeout=30, poll_interval=0.05)
    assert task["final_prompt"] == "a girl --niji 7 --seed 3"


def test_a_bad_field_raises_the_code_4_answer(client: Client, server: Server) -> None:
    with pytest.raises(APIError) as local:
        client.imagine("a cat", chaos=101)
    with server.client() as raw:
        remote = raw.post("/v1/midjourney/generations/imagine", json={"prompt": "a cat", "chaos": 101}).json()
    assert (local.value.code, local.value.description) == (remote["code"], remote["description"])


def test_upload_then_use_it(client: Client) -> None:
    url = client.upload(png_bytes((32, 32)), "image/png")["url"]
    [one, two] = client.imagine_all(f"{url} a cat --repeat 2 --iw 0.5")
    assert client.wait(two, timeout=30, poll_interval=0.05)["status"] == "SUCCESS"
    assert one != two


def test_batches_and_webhooks_through_the_sdk(client: Client) -> None:
    import json

    from pixelmill.client import WebhookVerificationError, verify_webhook
    from pixelmill.testing import WebhookReceiver, wait_for

    with WebhookReceiver(host="127.0.0.2") as hooks:
        batch_id = client.batch(prompt_template="a {colour} door", variables=[{"colour": "red"}, {"colour": "blue"}],
                                webhook_url=hooks.url, webhook_events=["completed"])
        status = client.wait_batch(batch_id, timeout=60, poll_interval=0.1)
        deliveries = wait_for(lambda: len(hooks.delivered()) >= 2 and hooks.delivered(), timeout=30, what="two webhooks")
    assert status["status"] == "completed" and status["counts"]["SUCCESS"] == 2
    manifest = client.batch_manifest(batch_id)
    secret = client.webhook()["secret"]
    payloads = [verify_webhook(body, headers, secret) for _, headers, body in deliveries]
    assert {p["data"]["task_id"] for p in payloads} == {row["task_id"] for row in manifest}
    _, headers, body = deliveries[0]
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body.replace(b"SUCCESS", b"FAILURE"), headers, secret)
    assert json.loads(body)["type"] == "task.completed"
    with pytest.raises(APIError) as bad:
        client.batch(requests=[{"prompt": "a cat", "stylize": 5000}])
    assert bad.value.code == 4 and bad.value.description.startswith("requests[0].stylize")


def test_follow_ups_through_the_sdk(client: Client) -> None:
    from pixelmill.client import NeedsModal

    grid = client.wait(client.imagine("a forest at night", seed=21), timeout=30, poll_interval=0.05)
    picked = client.wait(client.press(grid["buttons"][0]["custom_id"]), timeout=30, poll_interval=0.05)
    assert picked["action"] == "UPSCALE" and picked["index"] == 1
    with pytest.raises(NeedsModal):
        client.wait(client.inpaint(picked["task_id"]), timeout=30, poll_interval=0.05)
    clip = client.wait(client.video(task_id=grid["task_id"], index=3), timeout=60, poll_interval=0.05)
    assert len(clip["video_urls"]) == 1 and client.download(clip["video_urls"][0])[4:8] == b"ftyp"
    with pytest.raises(APIError) as err:
        client.pan(picked["task_id"], "diagonal")
    assert err.value.code == 4 and err.value.description.startswith("direction: Input should be 'left'")
