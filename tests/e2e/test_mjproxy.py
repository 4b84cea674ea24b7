"""midjourney-proxy's /mj API against the real server, replaying what its clients send and parse
(``contracts/midjourney-proxy.md`` §1.7): new-api's channel (mj-api-secret, list-by-condition
polling, Go's strict types), Dooy's web app (numeric ids, code 21 → modal) and Licoy's (a raw
Authorization header, ``result`` read without ``code``)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from pixelmill.testing import WebhookReceiver
from tests.conftest import TEST_KEY
from tests.helpers import Server, download_image, wait_for


def png_data_url(color: tuple[int, int, int], size: tuple[int, int] = (256, 256), mask: bool = False) -> str:
    image = Image.new("RGB", size, color)
    if mask:  # white = repaint: the middle of the picture
        image = Image.new("L", size, 0)
        image.paste(255, (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def go_types_hold(task: dict[str, Any]) -> None:
    """new-api unmarshals list-by-condition into MidjourneyDto: one wrong JSON type fails the
    whole batch (dto/midjourney.go)."""
    assert isinstance(task["id"], str)
    for name in ("submitTime", "startTime", "finishTime"):
        assert task[name] is None or (isinstance(task[name], int) and task[name] > 10**12), name  # milliseconds
    for name in ("status", "progress", "failReason", "imageUrl", "videoUrl", "prompt", "promptEn", "description", "action"):
        assert task[name] is None or isinstance(task[name], str), name
    assert task["progress"].endswith("%")
    assert all(isinstance(v["url"], str) for v in task["videoUrls"])
    assert all(isinstance(v, str) for v in task["properties"].values() if v is not None)
    assert isinstance(task["properties"]["finalPrompt"], str)
    assert isinstance(task["buttons"], list)


class NewApi:
    """new-api as a "Midjourney Proxy" channel: mj-api-secret, whole bodies re-serialised
    (accountFilter and notifyHook deleted), list-by-condition polling, actions on the same channel."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def submit(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(f"/mj/submit/{path}", content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text  # only an HTTP 200 is billed
        answer = r.json()
        assert set(answer) >= {"code", "description", "result", "properties"}
        return dict(answer)

    def poll(self, task_id: str) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            r = self.http.post("/mj/task/list-by-condition", json={"ids": [task_id]})
            assert r.status_code == 200 and isinstance(r.json(), list)
            for task in r.json():
                go_types_hold(task)
            return next((t for t in r.json() if t["id"] == task_id and t["progress"] == "100%"), None)

        return wait_for(finished, timeout=60, what=f"task {task_id} at 100%")

    def button(self, task: dict[str, Any], prefix: str) -> str:
        # new-api's own parse: split("::"); [2] after JOB, else [1]; the index from [3].
        found = [b["customId"] for b in task["buttons"] if b["customId"].startswith(prefix)]
        assert found, f"no {prefix} button in {[b['customId'] for b in task['buttons']]}"
        return str(found[0])


def test_a_new_api_channel_completes_imagine_upscale_vary_and_inpaint(server: Server) -> None:
    with httpx.Client(base_url=server.url, headers={"mj-api-secret": TEST_KEY}, timeout=30) as http:
        _new_api_loop(server, NewApi(http))


def _new_api_loop(server: Server, client: NewApi) -> None:
    answer = client.submit("imagine", {"prompt": "a lighthouse at dusk --ar 3:2", "base64Array": [], "botType": "MID_JOURNEY", "state": ""})
    assert answer["code"] in (1, 22) and isinstance(answer["result"], str)
    grid = client.poll(answer["result"])
    assert grid["status"] == "SUCCESS" and grid["failReason"] is None and grid["action"] == "IMAGINE"
    assert grid["properties"]["finalPrompt"].startswith("a lighthouse at dusk --ar 3:2")
    # new-api fetches imageUrl server-side: absolute, and a picture.
    w, h = grid["width"], grid["height"]
    assert w / h == 1.5 and grid["imageUrl"].startswith(server.url) and download_image(client.http, grid["imageUrl"]).size == (2 * w, 2 * h)

    u2 = client.button(grid, "MJ::JOB::upsample::2::")
    up = client.poll(client.submit("action", {"taskId": grid["id"], "customId": u2})["result"])
    assert up["status"] == "SUCCESS" and up["action"] == "UPSCALE" and up["parentId"] == grid["id"]
    assert download_image(client.http, up["imageUrl"]).size == (w, h)

    vary = client.poll(client.submit("action", {"taskId": up["id"], "customId": client.button(up, "MJ::JOB::high_variation::")})["result"])
    assert vary["status"] == "SUCCESS" and vary["action"] == "VARIATION" and len(vary["imageUrls"]) == 4

    # Vary (Region) is MJ::Inpaint::..., the form new-api maps to its inpaint action.
    inpaint = client.submit("action", {"taskId": up["id"], "customId": client.button(up, "MJ::Inpaint::")})
    assert inpaint["code"] == 21 and inpaint["properties"]["remix"] is True
    queued = client.submit("modal", {"taskId": inpaint["result"], "prompt": "a red door", "maskBase64": png_data_url((0, 0, 0), (w, h), mask=True)})
    assert queued["code"] in (1, 22) and queued["result"] == inpaint["result"]
    painted = client.poll(inpaint["result"])
    assert painted["status"] == "SUCCESS" and painted["action"] == "INPAINT" and painted["prompt"] == "a red door"


@pytest.fixture
def mj(server: Server):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=server.url, headers={"mj-api-secret": TEST_KEY}, timeout=30) as http:
        yield http


def test_dooy_web_app_numeric_ids_modal_and_seed(server: Server, mj: httpx.Client) -> None:
    http = mj
    body = {"base64Array": [png_data_url((200, 40, 40))], "notifyHook": "", "prompt": "a fox in snow", "state": "chat-7",
            "botType": "NIJI_JOURNEY"}
    r = http.post("/mj/submit/imagine", json=body)
    assert r.status_code == 200 and r.json()["code"] in (1, 22)
    task_id = r.json()["result"]
    as_number = +float(task_id)  # what `+v.reqid` makes of it in JavaScript: a double
    assert int(as_number) == int(task_id) < 2**53

    def fetched() -> dict[str, Any] | None:
        task = http.get(f"/mj/task/{task_id}/fetch").json()
        return task if task["status"] in ("SUCCESS", "FAILURE") else None

    task = wait_for(fetched, timeout=60, what="imagine")
    assert task["status"] == "SUCCESS" and task["botType"] == "NIJI_JOURNEY" and task["state"] == "chat-7"
    assert "--niji" in task["promptEn"] and task["promptEn"].startswith(server.url)  # the image prompt was re-hosted
    listed = http.post("/mj/task/list-by-condition", json={"ids": [int(as_number)]}).json()
    assert [t["id"] for t in listed] == [task_id]
    seed = http.get(f"/mj/task/{task_id}/image-seed").json()
    assert seed["code"] == 1 and seed["result"] == str(task["seed"]) and seed["result"].isdigit()

    up = http.post("/mj/submit/change", json={"taskId": task_id, "action": "UPSCALE", "index": 1}).json()
    assert up["code"] in (1, 22)
    upscaled = wait_for(lambda: (t := http.get(f"/mj/task/{up['result']}/fetch").json())["status"] == "SUCCESS" and t, timeout=60, what="U1")
    # Code 21 sends the app to /submit/modal with the prompt it shows (properties.finalPrompt).
    zoom_id = next(b["customId"] for b in upscaled["buttons"] if b["customId"].startswith("MJ::CustomZoom::"))
    modal = http.post("/mj/submit/action", json={"taskId": upscaled["id"], "customId": zoom_id}).json()
    assert modal["code"] == 21 and modal["description"] == "Waiting for window confirm"
    # Confirmed as Dooy's app does it: finalPrompt sent back unchanged (it carries --zoom 2).
    assert modal["properties"]["finalPrompt"].endswith("--zoom 2")
    confirmed = http.post("/mj/submit/modal", json={"taskId": modal["result"], "prompt": modal["properties"]["finalPrompt"]})
    assert confirmed.json()["code"] in (1, 22)
    zoomed = wait_for(lambda: (t := http.get(f"/mj/task/{modal['result']}/fetch").json())["progress"] == "100%" and t, timeout=60, what="zoom")
    assert zoomed["status"] == "SUCCESS" and zoomed["action"] == "ZOOM"
    # An empty modal prompt keeps the task's own, and a custom zoom's factor defaults to 2.
    again = http.post("/mj/submit/action", json={"taskId": upscaled["id"], "customId": zoom_id}).json()
    assert http.post("/mj/submit/modal", json={"taskId": again["result"], "prompt": ""}).json()["code"] in (1, 22)


def test_licoy_raw_authorization_and_result_without_code(server: Server) -> None:
    # The browser sends Bearer; Licoy's server route forwards the key raw. Both work.
    for header in (f"Bearer {TEST_KEY}", TEST_KEY):
        with httpx.Client(base_url=server.url + "/mj/", headers={"Authorization": header}, timeout=30) as http:
            r = http.post("submit/imagine", json={"prompt": "a paper boat"})
            assert r.status_code == 200 and r.json()["result"]  # read as the task id, code unread
            fetch = f"task/{r.json()['result']}/fetch"
            task = wait_for(lambda: (t := http.get(fetch).json())["status"] == "SUCCESS" and t, timeout=60, what="imagine")  # noqa: B023
        assert task["imageUrl"] and {"customId", "emoji", "label", "type", "style"} <= set(task["buttons"][0])
        assert task["progress"] == "100%" and task["prompt"] == "a paper boat"
    assert httpx.post(server.url + "/mj/submit/imagine", json={"prompt": "x"}).status_code == 401
    assert httpx.post(server.url + "/mj/submit/imagine", json={"prompt": "x"}, headers={"Authorization": "wrong"}).status_code == 401


def test_speed_prefixes_refusals_and_the_task_routes(mj: httpx.Client) -> None:
    http = mj
    relax = http.post("/mj-relax/mj/submit/imagine", json={"prompt": "a quiet pond"}).json()
    task = http.get(f"/mj-relax/mj/task/{relax['result']}/fetch").json()
    assert task["mode"] == "RELAX" and "--relax" in task["promptEn"]
    turbo = http.post("/mj/submit/imagine", json={"prompt": "a quiet pond", "accountFilter": {"modes": ["TURBO"]}}).json()
    assert http.get(f"/mj/task/{turbo['result']}/fetch").json()["mode"] == "TURBO"

    banned = http.post("/mj/submit/imagine", json={"prompt": "a n.u.d.e figure"})
    assert banned.status_code == 200 and banned.json()["code"] == 24 and banned.json()["properties"]["bannedWord"] == "nude"
    bad = http.post("/mj/submit/action", json={"taskId": relax["result"], "customId": "MJ::JOB::nonsense::1::x"})
    assert bad.status_code == 200 and bad.json()["code"] == 4
    missing = http.post("/mj/submit/action", json={"taskId": "1", "customId": "MJ::JOB::upsample::1::1"})
    assert missing.status_code == 200 and missing.json()["code"] == 4  # never 3: new-api disables a channel on 3
    assert http.post("/mj/submit/imagine", json={}).json()["code"] == 4
    assert http.post("/mj/submit/imagine", json={"prompt": "x", "base64Array": ["not base64!"]}).json()["code"] == 4
    assert http.get("/mj/task/1234/fetch").status_code == 404
    assert http.post("/mj/task/list-by-condition", json={"ids": ["1234", 5678]}).json() == []
    assert http.post("/mj/submit/simple-change", json={"content": f"{relax['result']} U9"}).json()["code"] == 4
    # Code 3 disables a new-api channel: an unknown template or route, or --repeat, is never 3.
    assert http.post("/mj/submit/imagine", json={"template": "no-such-template"}).json()["code"] == 4
    unserved = http.post("/mj/insight-face/swap", json={"sourceUrl": "x", "targetUrl": "y"})
    assert unserved.status_code == 404 and unserved.json()["code"] == 4
    assert http.post("/mj/submit/imagine", json={"prompt": "two boats --repeat 2"}).json()["code"] == 4

    cancelled = http.post(f"/mj/task/{relax['result']}/cancel").json()
    assert cancelled["code"] in (1, 4)  # it may have finished already
    recent = http.get("/mj/task/list").json()
    assert isinstance(recent, list) and {relax["result"], turbo["result"]} <= {t["id"] for t in recent}
    uploaded = http.post("/mj/submit/upload-discord-images", json={"base64Array": [png_data_url((1, 2, 3))]}).json()
    assert uploaded["code"] == 1 and download_image(http, uploaded["result"][0]).size == (256, 256)


@pytest.fixture
def hooked(tmp_path: Path):  # type: ignore[no-untyped-def]
    srv = Server(tmp_path, TEST_KEY, fetch_allow='["127.0.0.2/32"]', webhook_retry_seconds="[0.2, 0.2, 0.2]",
                 webhook_poll_seconds=0.1, procedural_delay_ms=60).start()
    yield srv
    srv.stop()


def test_notify_hook_posts_the_whole_task_in_order_and_retries(hooked: Server) -> None:
    # midjourney-proxy drops a hook that fails; pixelmill retries it.
    with WebhookReceiver(host="127.0.0.2", fail_first=1) as hooks:
        with httpx.Client(base_url=hooked.url, headers={"mj-api-secret": TEST_KEY}, timeout=30) as http:
            task_id = http.post("/mj/submit/imagine", json={"prompt": "a windmill", "notifyHook": hooks.url, "state": "s1"}).json()["result"]

        def final() -> list[dict[str, Any]] | None:
            bodies = [json.loads(body) for _, _, body in hooks.delivered()]
            return bodies if any(b["status"] == "SUCCESS" for b in bodies) else None

        bodies = wait_for(final, timeout=60, what="the SUCCESS notify")
    assert all(b["id"] == task_id and b["state"] == "s1" for b in bodies)
    order = ["SUBMITTED", "IN_PROGRESS", "SUCCESS"]
    ranks = [(order.index(b["status"]), int(b["progress"].rstrip("%"))) for b in bodies]
    assert ranks == sorted(ranks) and bodies[-1]["imageUrl"]
