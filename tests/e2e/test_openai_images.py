"""The OpenAI Images API against the real server, driven by the official ``openai`` SDK (pinned in
the dev extra): generations (url, b64_json), edits with a mask and with several images,
variations, streaming, the async mode, templates as models, and each error row as the SDK's own
exception class with its ``.code`` and ``.param``."""

from __future__ import annotations

import base64
import io
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from tests.conftest import TEST_KEY
from tests.helpers import Server, wait_for


def picture(color: tuple[int, int, int] = (30, 120, 200), size: tuple[int, int] = (512, 512)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def mask(size: tuple[int, int] = (512, 512)) -> bytes:
    """OpenAI's mask: transparent where the picture is to be repainted."""
    image = Image.new("RGBA", size, (0, 0, 0, 255))
    image.paste((0, 0, 0, 0), (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Slow enough that the engine's previews are seen by a stream; the fault rule fails a task
    # after it started.
    server = Server(tmp_path_factory.mktemp("openai"), TEST_KEY, rate_per_minute=0, max_concurrent_tasks=0, procedural_delay_ms=40,
                    fault_injection='[{"match": "doomed", "retryable": false, "error": "the model refused"}]').start()
    yield server
    server.stop()


@pytest.fixture
def client(srv: Server) -> Iterator[openai.OpenAI]:
    # An unchanged script: only base_url and api_key point at pixelmill.
    with openai.OpenAI(base_url=srv.url + "/v1", api_key=TEST_KEY) as c:
        yield c


def test_generations_answer_urls_or_base64_as_the_model_family_implies(client: openai.OpenAI) -> None:
    dalle = client.images.generate(model="dall-e-3", prompt="a red bicycle", n=1, quality="hd", response_format="url",
                                   size="1024x1024", style="vivid", user="u1")
    assert len(dalle.data) == 1 and dalle.data[0].b64_json is None and dalle.size == "1024x1024"
    assert dalle.data[0].revised_prompt and dalle.data[0].revised_prompt.startswith("a red bicycle")
    assert decoded(httpx.get(str(dalle.data[0].url)).content).size == (1024, 1024)
    # user is recorded with the task, which every door shows.
    raw = client.images.with_raw_response.generate(prompt="a red bicycle", safety_identifier="end-user-7")
    [task_id] = raw.headers["x-pixelmill-task-ids"].split(",")
    task = httpx.get(f"{client.base_url}midjourney/{task_id}", headers={"Authorization": f"Bearer {TEST_KEY}"}).json()
    assert task["params"]["client"] == {"end_user": "end-user-7"}

    # gpt-image models answer base64 unless asked; n above 4 takes a second grid.
    gpt = client.images.generate(model="gpt-image-1", prompt="a lemon tree", n=6, size="1536x1024", output_format="jpeg", output_compression=70)
    assert len(gpt.data) == 6 and all(d.url is None for d in gpt.data) and gpt.output_format == "jpeg"
    pictures = [decoded(base64.b64decode(str(d.b64_json))) for d in gpt.data]
    assert {(p.format, p.size) for p in pictures} == {("JPEG", (1536, 1024))}
    assert len({p.tobytes() for p in pictures}) == 6  # six different images, not one repeated

    plain = client.images.generate(prompt="a small house", size="auto", response_format="b64_json")
    assert decoded(base64.b64decode(str(plain.data[0].b64_json))).format == "PNG"


def test_edits_with_a_mask_with_several_images_and_variations(client: openai.OpenAI) -> None:
    masked = client.images.edit(image=("room.png", picture(), "image/png"), mask=("mask.png", mask(), "image/png"),
                                prompt="a green sofa", n=2, response_format="url")
    assert len(masked.data) == 2 and all(decoded(httpx.get(str(d.url)).content).size == (512, 512) for d in masked.data)

    several = client.images.edit(image=[("a.png", picture((200, 0, 0)), "image/png"), ("b.png", picture((0, 200, 0)), "image/png")],
                                 prompt="both colours in one scene", model="gpt-image-1", size="1024x1024")
    assert len(several.data) == 1 and decoded(base64.b64decode(str(several.data[0].b64_json))).size == (1024, 1024)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK deprecates variations; servers still get them
        varied = client.images.create_variation(image=("room.png", picture(), "image/png"), n=3, response_format="b64_json")
    assert len(varied.data) == 3 and all(decoded(base64.b64decode(str(d.b64_json))).size == (512, 512) for d in varied.data)


def test_streaming_sends_partial_images_then_completed(client: openai.OpenAI) -> None:
    events = list(client.images.generate(model="gpt-image-1", prompt="a lantern at night", stream=True, partial_images=2))
    kinds = [e.type for e in events]
    assert kinds[-1] == "image_generation.completed" and set(kinds[:-1]) == {"image_generation.partial_image"}
    assert 1 <= len(kinds) - 1 <= 2 and [e.partial_image_index for e in events[:-1]] == list(range(len(events) - 1))  # type: ignore[union-attr]
    final = events[-1]
    assert final.type == "image_generation.completed"
    width, height = map(int, final.size.split("x"))
    assert decoded(base64.b64decode(final.b64_json)).size == (width, height)

    edit_events = list(client.images.edit(image=("room.png", picture(), "image/png"), mask=("mask.png", mask(), "image/png"),
                                          prompt="a lamp", stream=True, partial_images=1))
    assert [e.type for e in edit_events][-1] == "image_edit.completed"
    assert {e.type for e in edit_events[:-1]} <= {"image_edit.partial_image"}


def test_each_error_is_the_sdks_exception_with_code_and_param(srv: Server, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(prompt="a cat", size="1001x1000")
    assert bad.value.code == "invalid_value" and bad.value.param == "size"
    with pytest.raises(openai.BadRequestError) as banned:
        client.images.generate(prompt="a n.u.d.e figure")
    assert banned.value.code == "content_policy_violation" and banned.value.param == "prompt"
    with pytest.raises(openai.NotFoundError) as model:
        client.images.generate(prompt="a cat", model="midjourney-v99")
    assert model.value.code == "model_not_found" and model.value.param == "model"
    with pytest.raises(openai.BadRequestError) as background:
        client.images.generate(prompt="a cat", background="transparent")
    assert background.value.param == "background"
    with openai.OpenAI(base_url=srv.url + "/v1", api_key="pm_wrong") as stranger, pytest.raises(openai.AuthenticationError) as auth:
        stranger.images.generate(prompt="a cat")
    assert auth.value.code == "invalid_api_key"

    # No quota left: 429 insufficient_quota (nothing was queued, nothing charged).
    out = srv.cli("keys", "create", "--tenant", "broke").stdout.split()
    srv.cli("keys", "balance", out[1], "--set", "0")
    with openai.OpenAI(base_url=srv.url + "/v1", api_key=out[-1]) as broke, pytest.raises(openai.RateLimitError) as quota:
        broke.images.generate(prompt="a cat")
    assert quota.value.code == "insufficient_quota" and quota.value.response.headers["x-should-retry"] == "false"
    assert quota.value.response.request.headers.get("x-stainless-retry-count") == "0"  # not retried: no quota stays no quota
    with pytest.raises(openai.BadRequestError) as many:
        client.images.edit(image=[(f"{i}.png", picture(), "image/png") for i in range(6)], prompt="six pictures")
    assert many.value.param == "image"

    # A failure after the work began: 500, which the SDK must not retry on its own.
    with openai.OpenAI(base_url=srv.url + "/v1", api_key=TEST_KEY) as sdk, pytest.raises(openai.InternalServerError) as failed:
        sdk.images.generate(prompt="a doomed ship")
    assert failed.value.code == "generation_failed" and failed.value.response.headers["x-should-retry"] == "false"
    assert failed.value.response.request.headers.get("x-stainless-retry-count") == "0"  # sent once


def test_a_rate_cap_is_a_429_with_retry_after(tmp_path: Path) -> None:
    srv = Server(tmp_path, TEST_KEY, rate_per_minute=1).start()
    try:
        with openai.OpenAI(base_url=srv.url + "/v1", api_key=TEST_KEY, max_retries=0) as sdk:
            sdk.images.generate(prompt="a cat")
            with pytest.raises(openai.RateLimitError) as capped:
                # Windows are whole minutes: the second may open a new one, the third cannot.
                for prompt in ("a dog", "a fox"):
                    sdk.images.generate(prompt=prompt)
        assert capped.value.code == "rate_limit_exceeded" and int(capped.value.response.headers["retry-after"]) >= 1
    finally:
        srv.stop()


def test_idempotency_async_mode_and_templates_as_models(srv: Server, client: openai.OpenAI) -> None:
    key = {"Idempotency-Key": "openai-retry-1"}
    first = client.images.generate(prompt="a blue kite", extra_headers=key)
    again = client.images.generate(prompt="a blue kite", extra_headers=key)
    assert first.data[0].url == again.data[0].url

    raw = client.images.with_raw_response.generate(prompt="a slow river", extra_headers={"Prefer": "respond-async"})
    assert raw.status_code == 202
    accepted: dict[str, Any] = raw.http_response.json()
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=30) as http:
        done = wait_for(lambda: (t := http.get(f"/v1/images/tasks/{accepted['id']}").json())["status"] == "completed" and t,
                        timeout=60, what="the async task")
        assert len(done["data"]) == 4 and done["data"][0]["url"].startswith(srv.url)

        spec = {"body": "studio photo of {prompt}", "variables": {"prompt": {"type": "text", "max_length": 60}},
                "locked": {"aspect_ratio": "1:1", "stylize": 100}}
        assert http.post("/v1/templates", json={"name": "product-shot", **spec}).status_code == 200
        assert http.post("/v1/templates/product-shot/versions/1/publish").status_code == 200
        assert http.put("/v1/templates/product-shot/releases/stable", json={"version": 1}).status_code == 200
    branded = client.images.generate(model="template:product-shot@stable", prompt="a leather bag")
    assert branded.data[0].revised_prompt is not None
    assert branded.data[0].revised_prompt.startswith("studio photo of a leather bag") and "--s 100" in branded.data[0].revised_prompt


def test_no_room_for_another_wait_refuses_before_any_work_is_queued(tmp_path: Path) -> None:
    # One stream place, taken by a long-poll: a waiting image request is refused with 503 before
    # its task is accepted, so the SDK's retry of that 503 cannot make the images twice. The
    # long-poll's 60 s wait ends when its client goes: the place is back within the deadline.
    srv = Server(tmp_path, TEST_KEY, workers=0, max_streams=1, metrics_public="true").start()
    try:
        with srv.client() as http, openai.OpenAI(base_url=srv.url + "/v1", api_key=TEST_KEY, max_retries=0) as sdk:
            waiting = http.post("/v1/midjourney/generations/imagine", json={"prompt": "a queued boat"}).json()["data"][0]["task_id"]
            # A long-poll holds the one place (no worker runs its task) until its client goes.
            url = httpx.URL(srv.url)
            with socket.create_connection((url.host, url.port or 80)) as poller:
                poller.sendall(f"GET /v1/midjourney/{waiting}?wait=60 HTTP/1.1\r\nHost: {url.host}\r\n"
                               f"Authorization: Bearer {TEST_KEY}\r\n\r\n".encode())
                wait_for(lambda: "pixelmill_open_streams 1.0" in http.get("/metrics").text, timeout=10, what="the long-poll's place")
                with pytest.raises(openai.InternalServerError) as full:
                    sdk.images.generate(prompt="a second boat")
                assert full.value.status_code == 503 and "retry-after" in full.value.response.headers
                recent = http.get("/mj/task/list", headers={"mj-api-secret": TEST_KEY}).json()
                assert [t["id"] for t in recent] == [waiting]  # nothing else was queued
            # A client that leaves gives its place back at once, not when its wait would end.
            wait_for(lambda: "pixelmill_open_streams 0.0" in http.get("/metrics").text, timeout=10, what="the place given back")
    finally:
        srv.stop()
