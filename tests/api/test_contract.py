"""The error table and envelope of DESIGN.md §3, against the real server process."""

from __future__ import annotations

import httpx
import pytest

from pixelmill.auth.keys import KeyStore
from pixelmill.clock import SystemClock
from pixelmill.db.engine import make_engine
from tests.helpers import Server, wait_terminal

IMAGINE = "/v1/midjourney/generations/imagine"


def test_submit_answers_the_envelope_and_the_task_is_pollable(api: httpx.Client) -> None:
    r = api.post(IMAGINE, json={"prompt": "a lighthouse at dusk --ar 16:9 --seed 7"})
    assert r.status_code == 200
    body = r.json()
    assert body["code"] == 1 and body["description"] == "submitted"
    task_id = body["data"][0]["task_id"]
    task = wait_terminal(api, task_id)
    assert task["status"] == "SUCCESS" and task["progress"] == "100%"
    assert task["final_prompt"] == "a lighthouse at dusk --ar 16:9 --seed 7"
    assert task["seed"] == 7 and task["params"]["width"] == 680 and task["params"]["height"] == 384
    assert task["submit_time"] <= task["start_time"] <= task["finish_time"]
    assert task["quota"] == 1 and task["fail_reason"] is None


def test_bare_generations_route_is_imagine(api: httpx.Client) -> None:
    r = api.post("/v1/midjourney/generations", json={"prompt": "a cat"})
    assert r.status_code == 200
    assert wait_terminal(api, r.json()["data"][0]["task_id"])["action"] == "IMAGINE"


def test_same_seed_same_pixels(api: httpx.Client) -> None:
    ids = [api.post(IMAGINE, json={"prompt": "red desert dunes", "seed": 99}).json()["data"][0]["task_id"] for _ in range(2)]
    a, b = (wait_terminal(api, i) for i in ids)
    assert a["image_urls"] == b["image_urls"]  # content-addressed: identical pixels, identical keys


@pytest.mark.parametrize(
    ("headers", "text"),
    [({}, "missing API key"), ({"Authorization": "Bearer pm_wrong"}, "invalid"), ({"Authorization": "Basic abc"}, "missing")],
)
def test_401_without_a_valid_key(server: Server, headers: dict, text: str) -> None:
    r = httpx.post(f"{server.url}{IMAGINE}", json={"prompt": "a cat"}, headers=headers)
    assert r.status_code == 401
    assert r.json()["code"] == 401 and text in r.json()["description"]
    # The submit and poll routes check a key in the thread that does their work, so a body that
    # fails validation may be told so before a wrong key is; naming no key at all is told first.
    for method, path, body in (("POST", IMAGINE, {"colour": "red"}), ("POST", "/mj/submit/action", {}), ("GET", "/v1/midjourney/nope", None),
                               ("GET", "/mj/task/nope/fetch", None)):
        if not headers:
            r = httpx.request(method, f"{server.url}{path}", json=body, headers=headers)
            assert r.status_code == 401, (path, r.text)


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({}, "prompt", "Field required"),
        ({"prompt": ""}, "prompt", "at least 1 character"),
        ({"prompt": "   "}, "prompt", "at least 1 character"),
        ({"prompt": "a cat", "colour": "red"}, "colour", "unknown field"),
        ({"prompt": "a cat", "seed": -1}, "seed", "greater than or equal to 0"),
        ({"prompt": "a cat", "aspect_ratio": "wide"}, "aspect_ratio", "needs a ratio W:H"),
        ({"prompt": "a cat --ar 1:0"}, "prompt", "--ar needs both sides of the ratio above 0"),
        ({"prompt": "a cat --zoomz 2"}, "prompt", "unknown parameter --zoomz"),
        ({"prompt": "--ar 16:9"}, "prompt", "the subject is empty"),
        ({"prompt": 42}, "prompt", "valid string"),
    ],
)
def test_400_code_4_names_the_field_and_rule(api: httpx.Client, body: dict, field: str, rule: str) -> None:
    r = api.post(IMAGINE, json=body)
    assert r.status_code == 400, r.text
    data = r.json()
    assert data["code"] == 4
    assert data["description"].startswith(f"{field}:") and rule in data["description"]


def test_400_for_a_body_that_is_not_json(api: httpx.Client) -> None:
    r = api.post(IMAGINE, content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == 4


def test_404_code_3_mentions_task(api: httpx.Client) -> None:
    r = api.get("/v1/midjourney/123456789")
    assert r.status_code == 404
    assert r.json()["code"] == 3 and "task" in r.json()["description"]


def test_another_tenants_task_answers_like_an_unknown_one(server: Server, api: httpx.Client) -> None:
    db = make_engine(f"sqlite:///{server.data_dir / 'pixelmill.db'}")
    _, other_key = KeyStore(db, SystemClock()).create(tenant_id="other-tenant")
    db.dispose()
    mine = wait_terminal(api, api.post(IMAGINE, json={"prompt": "a cat"}).json()["data"][0]["task_id"])
    with server.client(other_key) as other:
        foreign = other.get(f"/v1/midjourney/{mine['task_id']}")
        unknown = other.get("/v1/midjourney/0000000000000")
        assert foreign.status_code == unknown.status_code == 404
        assert foreign.json()["description"].replace(mine["task_id"], "X") == unknown.json()["description"].replace("0000000000000", "X")
        up = other.post("/v1/midjourney/generations/upscale", json={"task_id": mine["task_id"], "index": 1})
        assert up.status_code == 404 and "task" in up.json()["description"]


def test_unknown_route_and_method_use_the_envelope(api: httpx.Client) -> None:
    r = api.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["code"] == 3 and "task" not in r.json()["description"]
    r = api.delete(IMAGINE)
    assert r.status_code == 405 and r.json()["code"] == 4


def test_upscale_by_button_custom_id(api: httpx.Client) -> None:
    parent = wait_terminal(api, api.post(IMAGINE, json={"prompt": "a cat"}).json()["data"][0]["task_id"])
    button = next(b for b in parent["buttons"] if b["label"] == "U3")
    r = api.post("/v1/midjourney/generations/upscale", json={"custom_id": button["custom_id"]})
    up = wait_terminal(api, r.json()["data"][0]["task_id"])
    assert up["image_urls"] == [parent["image_urls"][2]] and up["index"] == 3
    assert [b["label"] for b in up["buttons"]][:2] == ["Upscale (Subtle)", "Upscale (Creative)"]


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"task_id": "PARENT", "index": 5}, "index: Input should be less than or equal to 4"),
        ({"task_id": "PARENT"}, "index: task PARENT is a grid: say which image (1-4)"),
        ({"custom_id": "MJ::JOB::variation::1::PARENT"}, "is a variation button; send it to /variation or /action"),
        ({"custom_id": "hello"}, "not a button id"),
    ],
)
def test_upscale_refusals(api: httpx.Client, body: dict, text: str) -> None:
    parent = wait_terminal(api, api.post(IMAGINE, json={"prompt": "a cat"}).json()["data"][0]["task_id"])
    body = {k: (v.replace("PARENT", parent["task_id"]) if isinstance(v, str) else v) for k, v in body.items()}
    r = api.post("/v1/midjourney/generations/upscale", json=body)
    assert r.status_code == 400 and r.json()["code"] == 4 and text.replace("PARENT", parent["task_id"]) in r.json()["description"]


def test_upscale_of_an_upscale_is_refused(api: httpx.Client) -> None:
    parent = wait_terminal(api, api.post(IMAGINE, json={"prompt": "a cat"}).json()["data"][0]["task_id"])
    up = api.post("/v1/midjourney/generations/upscale", json={"task_id": parent["task_id"], "index": 1}).json()
    up_task = wait_terminal(api, up["data"][0]["task_id"])
    r = api.post("/v1/midjourney/generations/upscale", json={"task_id": up_task["task_id"], "index": 1})
    assert r.status_code == 400 and "is a single picture already; upscale it with mode subtle or creative" in r.json()["description"]


def test_files_are_immutable_and_conditional(api: httpx.Client) -> None:
    task = wait_terminal(api, api.post(IMAGINE, json={"prompt": "a cat"}).json()["data"][0]["task_id"])
    url = task["grid_image_url"]
    assert url.startswith("http://127.0.0.1:")
    r = httpx.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert "immutable" in r.headers["cache-control"]
    again = httpx.get(url, headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    bad = httpx.get(url.rsplit("/files/", 1)[0] + "/files/../../etc/passwd")
    assert bad.status_code == 404


def test_openapi_docs_are_served(server: Server) -> None:
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1/midjourney/generations/imagine" in schema["paths"]
    assert httpx.get(f"{server.url}/docs").status_code == 200
