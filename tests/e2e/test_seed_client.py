"""The client code of seed 004, pasted unchanged, against the real server process."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from pixelmill.media.grid import crop_quadrant
from tests.conftest import TEST_KEY
from tests.helpers import Server

SEED_DOC = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "004_7a40f4550d30b0be.txt"

# --- verbatim from seed 004 ----------------------------------------------------------------------
WAIT_TASK = '''import time, httpx

def wait_task(task_id, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        resp = httpx.get(f"{HOST}/v1/midjourney/{task_id}",
                         headers={"Authorization": f"Bearer {API_KEY}"}).json()
        if resp["status"] in ("SUCCESS", "FAILURE"):
            return resp
        if resp["status"] == "MODAL":
            raise RuntimeError(f"task {task_id} needs a /modal call to supply params and complete")
        time.sleep(3)
    raise TimeoutError(task_id)'''

SUBMIT_WITH_RETRY = '''import time, random, httpx

def submit_with_retry(payload, max_attempts=5):
    for attempt in range(max_attempts):
        try:
            r = httpx.post(f"{HOST}/v1/midjourney/generations/imagine",
                           json=payload,
                           headers={"Authorization": f"Bearer {API_KEY}"},
                           timeout=30)
            data = r.json()
            if r.status_code == 200 and data["code"] in (1, 200):
                return data
            if data["code"] in (4, 24):
                raise ValueError(data["description"])      # not retryable
            if data["code"] == 3 and "task" in data["description"]:
                raise ValueError(data["description"])      # task_id does not exist
            # the rest (9 / 429 / 5xx) are retryable
        except httpx.RequestError:
            pass
        time.sleep((4 ** attempt) + random.uniform(0, 1))  # 1s / 4s / 16s ...
    raise RuntimeError(f"reached max retry count {max_attempts}")'''

FLOW = '''# imagine → poll → upscale
imagine_id = submit({"prompt": "a cat"})["data"][0]["task_id"]
result = wait_task(imagine_id)           # grid_image_url + 4 image_urls + buttons
upscale_id = submit_to("/upscale", {"task_id": imagine_id, "index": 2})["data"][0]["task_id"]
final = wait_task(upscale_id)            # upscale is composed locally, 1–2s
single_image = final["image_urls"][0]'''

INPAINT_FLOW = '''imagine_id = submit({"prompt": "a portrait"})["data"][0]["task_id"]; wait_task(imagine_id)
upscale_id = submit_to("/upscale", {"task_id": imagine_id, "index": 1})["data"][0]["task_id"]; wait_task(upscale_id)

inpaint_id = submit_to("/inpaint", {"task_id": upscale_id})["data"][0]["task_id"]  # status=modal
# Frontend draws the mask (white = repaint area), uploads it to your own OSS to get mask_url
final = submit_to("/modal", {
    "task_id": inpaint_id,
    "prompt": "replace the eyes with cybernetic blue eyes",
    "mask_url": "https://your-oss.com/mask.png"
})
wait_task(final["data"][0]["task_id"])'''
# -------------------------------------------------------------------------------------------------


def test_pasted_code_is_the_seed_verbatim() -> None:
    if not SEED_DOC.exists():
        pytest.skip(f"{SEED_DOC} not beside the repository")
    text = SEED_DOC.read_text()
    for block in (WAIT_TASK, SUBMIT_WITH_RETRY, FLOW, INPAINT_FLOW):
        assert block in text


def _seed_namespace(server: Server) -> dict:
    ns: dict = {"HOST": server.url, "API_KEY": server.api_key}
    exec(WAIT_TASK, ns)
    exec(SUBMIT_WITH_RETRY, ns)
    # The seed leaves these two helpers to the reader; the obvious definitions:
    ns["submit"] = ns["submit_with_retry"]
    ns["submit_to"] = lambda path, payload: httpx.post(
        f"{server.url}/v1/midjourney/generations{path}",
        json=payload,
        headers={"Authorization": f"Bearer {server.api_key}"},
    ).json()
    return ns


def _image(url: str) -> Image.Image:
    r = httpx.get(url)
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(r.content)).convert("RGB")


def test_imagine_poll_upscale_flow_runs_unchanged(server: Server) -> None:
    ns = _seed_namespace(server)
    exec(FLOW, ns)
    result, final = ns["result"], ns["final"]

    assert result["status"] == "SUCCESS" and result["action"] == "IMAGINE"
    assert len(result["image_urls"]) == 4
    assert [b["label"] for b in result["buttons"]] == ["U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4", "🔄"]
    grid = _image(result["grid_image_url"])
    singles = [_image(u) for u in result["image_urls"]]
    w, h = singles[0].size
    assert grid.size == (2 * w, 2 * h)

    assert final["status"] == "SUCCESS" and final["action"] == "UPSCALE"
    assert final["parent_task_id"] == result["task_id"]
    upscaled = np.asarray(_image(ns["single_image"]))
    # The upscale is exactly image 2 of the grid: same pixels as its source and its quadrant.
    assert np.array_equal(upscaled, np.asarray(singles[1]))
    assert np.array_equal(upscaled, np.asarray(crop_quadrant(grid, 2)))


def test_submit_with_retry_stops_at_once_on_bad_parameters(server: Server) -> None:
    ns = _seed_namespace(server)
    with pytest.raises(ValueError, match="prompt"):
        ns["submit_with_retry"]({"prompt": "a cat --ar 0:1"})


def test_submit_with_retry_backs_off_past_a_low_rate_cap(tmp_path: Path) -> None:
    """The seed's retry loop, unchanged, against a cap of 3 submissions per 2-second window:
    every submit ends in success after backing off on 429, never in an unhandled error."""
    capped = Server(tmp_path, TEST_KEY, rate_per_minute=3, rate_window_seconds=2).start()
    try:
        ns = _seed_namespace(capped)
        ids = [ns["submit_with_retry"]({"prompt": f"a cat {i}"})["data"][0]["task_id"] for i in range(6)]
    finally:
        capped.stop()
    assert len(set(ids)) == 6


def test_inpaint_through_modal_runs_unchanged(server: Server) -> None:
    """The seed's inpaint flow. Its mask URL stands for "your own OSS"; no host outside is
    reachable here, so the mask goes to pixelmill's upload endpoint and that URL takes its place:
    the only edit to the pasted code."""
    ns = _seed_namespace(server)
    mask = Image.new("L", (512, 512), 0)
    mask.paste(255, (128, 128, 384, 256))  # repaint a band across the middle
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    upload = httpx.post(f"{server.url}/v1/uploads", content=buf.getvalue(),
                        headers={"Authorization": f"Bearer {server.api_key}", "Content-Type": "image/png"})
    mask_url = upload.json()["data"][0]["url"]
    modal_answers: list[dict] = []
    submit_to = ns["submit_to"]
    ns["submit_to"] = lambda path, payload: modal_answers.append(submit_to(path, payload)) or modal_answers[-1]
    exec(INPAINT_FLOW.replace("https://your-oss.com/mask.png", mask_url), ns)

    inpaint = modal_answers[1]
    assert (inpaint["code"], inpaint["description"]) == (21, "waiting for /modal")
    assert modal_answers[2]["code"] == 1 and modal_answers[2]["data"][0]["task_id"] == inpaint["data"][0]["task_id"]
    done = httpx.get(f"{server.url}/v1/midjourney/{inpaint['data'][0]['task_id']}", headers={"Authorization": f"Bearer {server.api_key}"}).json()
    assert done["status"] == "SUCCESS" and done["action"] == "INPAINT" and len(done["image_urls"]) == 4
    source = np.asarray(_image(httpx.get(f"{server.url}/v1/midjourney/{ns['upscale_id']}",
                                         headers={"Authorization": f"Bearer {server.api_key}"}).json()["image_urls"][0]))
    keep = np.asarray(mask) == 0
    for url in done["image_urls"]:
        painted = np.asarray(_image(url))
        assert np.array_equal(painted[keep], source[keep])  # outside the mask: the same pixels
        assert not np.array_equal(painted[~keep], source[~keep])  # inside: repainted
