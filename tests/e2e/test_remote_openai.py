"""The remote engine speaking the OpenAI Images API to a real upstream: server A (pixelmill, which
serves ``/v1/images`` too) behind a proxy, server B with ``"contract": "openai"``."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pixelmill.testing import FaultyProxy
from tests.e2e.test_remote import KEY_A, KEY_B
from tests.helpers import Server, download_image, upload_image, wait_terminal

GEN = "/v1/midjourney/generations"


def _engines(url: str) -> str:
    spec = {"kind": "remote", "contract": "openai", "base_url": url, "api_key": KEY_A, "upstream_model": "gpt-image-1",
            "sizes": ["256x256", "384x256", "256x384"], "backoff_seconds": [0.05], "max_tries": 3}
    return json.dumps({"procedural": {"kind": "procedural"}, "oa": spec})


def test_operations_map_onto_generations_and_edits_and_video_is_refused(tmp_path: Path) -> None:
    a = Server(tmp_path / "a", KEY_A, rate_per_minute=0, max_concurrent_tasks=0, workers=2).start()
    with FaultyProxy(a.url, rate=0) as proxy:
        b = Server(tmp_path / "b", KEY_B, engines=_engines(proxy.url), rate_per_minute=0, max_concurrent_tasks=0, workers=2,
                   image_size=256)
        try:
            b.start()
            with b.client() as api:
                def run(op: str, body: dict[str, Any], ok: bool = True) -> dict[str, Any]:
                    done = wait_terminal(api, api.post(f"{GEN}/{op}", json=body).json()["data"][0]["task_id"], timeout=60)
                    assert (done["status"] == "SUCCESS") is ok, (op, done.get("fail_reason"))
                    return done

                grid = run("imagine", {"prompt": "a lighthouse in fog", "engine": "oa"})
                assert len(grid["image_urls"]) == 4 and grid["engine_meta"]["upstream_account"] == "default"
                assert [r for r in proxy.requests if r.startswith("POST")] == ["POST /v1/images/generations"]

                before = len(proxy.requests)
                pick = run("upscale", {"task_id": grid["task_id"], "index": 2})
                assert len(proxy.requests) == before  # a pick is the stored picture: nothing goes upstream
                assert np.array_equal(np.asarray(download_image(api, pick["image_urls"][0])), np.asarray(download_image(api, grid["image_urls"][1])))

                run("variation", {"task_id": pick["task_id"], "mode": "strong"})
                mask = Image.new("L", (pick["params"]["width"], pick["params"]["height"]), 0)
                mask.paste(255, (0, 0, 100, 100))
                inpaint_id = api.post(f"{GEN}/inpaint", json={"task_id": pick["task_id"]}).json()["data"][0]["task_id"]
                api.post(f"{GEN}/modal", json={"task_id": inpaint_id, "prompt": "a red sun", "mask_url": upload_image(api, mask)})
                assert wait_terminal(api, inpaint_id, timeout=60)["status"] == "SUCCESS"
                run("pan", {"task_id": pick["task_id"], "direction": "left"})
                inputs = [upload_image(api, Image.new("RGB", (96, 96), colour)) for colour in ("red", "blue")]
                run("blend", {"image_urls": inputs, "engine": "oa"})

                clip = run("video", {"task_id": grid["task_id"], "index": 1}, ok=False)
                assert clip["fail_reason"] == "the OpenAI Images API makes no video" and clip["quota"] == 0
        finally:
            b.stop()
            a.stop()
    posts = [r for r in proxy.requests if r.startswith("POST")]
    assert posts == ["POST /v1/images/generations"] + ["POST /v1/images/edits"] * 4, posts
    assert len(set(proxy.submits)) == 5  # each under its own task's Idempotency-Key
    # Upstream, the inpaint's mask is transparent exactly where B's was white: the API's convention.
    with sqlite3.connect(a.data_dir / "pixelmill.db") as conn:
        rows = conn.execute("SELECT action, params FROM tasks ORDER BY submit_time").fetchall()
    assert [r[0] for r in rows] == ["IMAGINE", "IMAGINE", "INPAINT", "INPAINT", "IMAGINE"], rows
    masks = [json.loads(p)["mask"] for action, p in rows if action == "INPAINT"]
    sent = Image.open(io.BytesIO((a.data_dir / "files" / masks[0]["key"]).read_bytes()))
    alpha = np.asarray(sent.convert("RGBA"))[:, :, 3]
    assert sent.size == (pick["params"]["width"], pick["params"]["height"])
    assert (alpha[:100, :100] == 0).all() and (alpha[100:, :] == 255).all() and (alpha[:, 100:] == 255).all()


def test_dall_e_3_pictures_come_from_one_call_each_sent_at_once(tmp_path: Path) -> None:
    """dall-e-3 refuses ``n`` above 1: a grid is four calls, each a submit under its own key."""
    a = Server(tmp_path / "a", KEY_A, rate_per_minute=0, max_concurrent_tasks=0, workers=4).start()
    spec = json.loads(_engines("http://placeholder"))
    with FaultyProxy(a.url, rate=0) as proxy:
        spec["oa"] |= {"base_url": proxy.url, "upstream_model": "dall-e-3"}
        b = Server(tmp_path / "b", KEY_B, engines=json.dumps(spec), rate_per_minute=0, max_concurrent_tasks=0, workers=2, image_size=256,
                   fetch_allow='["127.0.0.1/32"]')  # dall-e answers URLs, here on loopback
        try:
            b.start()
            with b.client() as api:
                task_id = api.post(f"{GEN}/imagine", json={"prompt": "a lighthouse in fog", "engine": "oa"}).json()["data"][0]["task_id"]
                done = wait_terminal(api, task_id, timeout=60)
                assert done["status"] == "SUCCESS", done.get("fail_reason")
                pictures = [np.asarray(download_image(api, url)) for url in done["image_urls"]]
        finally:
            b.stop()
            a.stop()
    assert [r for r in proxy.requests if r.startswith("POST")] == ["POST /v1/images/generations"] * 4
    assert [json.loads(body)["n"] for body in proxy.submitted] == [1, 1, 1, 1]
    assert all(json.loads(body)["model"] == "dall-e-3" for body in proxy.submitted)
    assert len(set(proxy.submits)) == 4 and None not in proxy.submits
    # Four calls, four pictures: none is another's copy.
    assert len(pictures) == 4 and len({p.tobytes() for p in pictures}) == 4
