"""The remote engine speaking midjourney-proxy's contract to a real upstream: server A (pixelmill,
which serves ``/mj`` too) behind a proxy, server B with ``"contract": "midjourney-proxy"``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from pixelmill.media.video import probe_mp4
from pixelmill.testing import FaultyProxy
from tests.e2e.test_remote import GEN, KEY_A, KEY_B, _count, _png, _remote
from tests.helpers import Server, upload_image, wait_for, wait_terminal


def _engines(url: str, **knobs: Any) -> str:
    return _remote(url, contract="midjourney-proxy", **knobs)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("a"), KEY_A, fetch_allow='["127.0.0.1/32"]', rate_per_minute=0,
                 max_concurrent_tasks=0, video_seconds=1, video_fps=8).start()
    yield srv
    srv.stop()


def _mj(a: httpx.Client, upstream_id: str) -> dict[str, Any]:
    r = a.get(f"/mj/task/{upstream_id}/fetch", headers={"mj-api-secret": KEY_A})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_every_operation_runs_through_midjourney_proxys_routes(upstream: Server, tmp_path: Path) -> None:
    with FaultyProxy(upstream.url, rate=0) as proxy:
        front = Server(tmp_path, KEY_B, engines=_engines(proxy.url), rate_per_minute=0, max_concurrent_tasks=0, workers=4,
                       fetch_allow='["127.0.0.1/32"]')
        front.env["PUBLIC_URL"] = front.url  # B's masks and blend inputs, read by B itself and sent as base64
        try:
            front.start()
            with front.client() as b, upstream.client() as a:
                grid = wait_terminal(b, b.post(f"{GEN}/imagine", json={"prompt": "a lake at dawn --ar 3:2", "seed": 5, "engine": "mj"}).json()["data"][0]["task_id"])
                assert grid["status"] == "SUCCESS" and len(grid["image_urls"]) == 4, grid
                there = _mj(a, grid["engine_meta"]["upstream_task_id"])
                assert there["action"] == "IMAGINE" and there["promptEn"] == "a lake at dawn --ar 3:2 --seed 5"
                # Re-hosted: B serves the same pixels as A's second picture.
                assert np.array_equal(_png(b, grid["image_urls"][1]), _png(a, there["imageUrls"][1]["url"]))

                def run(op: str, body: dict[str, Any]) -> dict[str, Any]:
                    done = wait_terminal(b, b.post(f"{GEN}/{op}", json=body).json()["data"][0]["task_id"], timeout=60)
                    assert done["status"] == "SUCCESS", (op, done.get("fail_reason"))
                    return done

                pick = run("upscale", {"task_id": grid["task_id"], "index": 2})
                up = _mj(a, pick["engine_meta"]["upstream_task_id"])
                assert up["action"] == "UPSCALE" and up["parentId"] == there["id"]
                assert _mj(a, run("variation", {"task_id": pick["task_id"], "mode": "subtle"})["engine_meta"]["upstream_task_id"])["action"] == "VARIATION"
                assert _mj(a, run("pan", {"task_id": pick["task_id"], "direction": "left"})["engine_meta"]["upstream_task_id"])["action"] == "PAN"
                assert _mj(a, run("zoom", {"task_id": pick["task_id"], "zoom": 2})["engine_meta"]["upstream_task_id"])["action"] == "ZOOM"
                # A reroll does again what made its parent's grid: a new imagine upstream.
                reroll = _mj(a, run("reroll", {"task_id": grid["task_id"]})["engine_meta"]["upstream_task_id"])
                assert reroll["action"] == "IMAGINE" and reroll["id"] != there["id"]

                # Custom zoom: MODAL here, then MODAL upstream, confirmed with the factor.
                custom_id = b.post(f"{GEN}/zoom", json={"task_id": pick["task_id"], "custom": True}).json()["data"][0]["task_id"]
                b.post(f"{GEN}/modal", json={"task_id": custom_id, "zoom": 1.7})
                custom = wait_terminal(b, custom_id, timeout=60)
                assert custom["status"] == "SUCCESS", custom.get("fail_reason")
                assert a.get(f"/v1/midjourney/{custom['engine_meta']['upstream_task_id']}").json()["params"]["zoom"] == 1.7

                # Inpaint: the mask goes upstream as base64 through /mj/submit/modal.
                mask = Image.new("L", (pick["params"]["width"], pick["params"]["height"]), 0)
                mask.paste(255, (0, 0, 100, 100))
                inpaint_id = b.post(f"{GEN}/inpaint", json={"task_id": pick["task_id"]}).json()["data"][0]["task_id"]
                b.post(f"{GEN}/modal", json={"task_id": inpaint_id, "prompt": "a red sun", "mask_url": upload_image(b, mask)})
                inpaint = wait_terminal(b, inpaint_id, timeout=60)
                assert inpaint["status"] == "SUCCESS", inpaint.get("fail_reason")
                upstream_inpaint = _mj(a, inpaint["engine_meta"]["upstream_task_id"])
                assert upstream_inpaint["action"] == "INPAINT" and upstream_inpaint["prompt"] == "a red sun"

                inputs = [upload_image(b, Image.new("RGB", (96, 96), colour)) for colour in ("red", "blue")]
                blend = run("blend", {"image_urls": inputs, "dimensions": "LANDSCAPE", "engine": "mj"})
                assert _mj(a, blend["engine_meta"]["upstream_task_id"])["action"] == "BLEND"

                clip = run("video", {"task_id": grid["task_id"], "index": 1})
                assert probe_mp4(b.get(clip["video_urls"][0]).content).frames == 8
        finally:
            front.stop()
    routes = {r.rsplit("/", 1)[-1] for r in proxy.requests if r.startswith("POST /mj/submit/")}
    assert routes == {"imagine", "action", "modal", "blend", "video"}, routes
    assert all(r.startswith(("POST /mj/", "GET /mj/", "GET /files/")) for r in proxy.requests), proxy.requests


def test_tasks_waiting_upstream_are_followed_in_batches_and_by_notify_hook(tmp_path: Path) -> None:
    """Parked tasks are asked after with one list-by-condition per round; with ``callbacks``,
    each submit carries a signed notifyHook, and A's hook call makes B ask at once."""
    a = Server(tmp_path / "a", KEY_A, workers=0, rate_per_minute=0, max_concurrent_tasks=0, fetch_allow='["127.0.0.1/32"]').start()
    with FaultyProxy(a.url, rate=0) as proxy:
        b = Server(tmp_path / "b", KEY_B, engines=_engines(proxy.url), rate_per_minute=0, max_concurrent_tasks=0, workers=2,
                   fetch_allow='["127.0.0.1/32"]')
        hooked = Server(tmp_path / "c", KEY_B, engines=_engines(proxy.url, callbacks=True, callback_poll_seconds=600), rate_per_minute=0,
                        max_concurrent_tasks=0, fetch_allow='["127.0.0.1/32"]')
        hooked.env["PUBLIC_URL"] = hooked.url
        try:
            b.start()
            hooked.start()
            with b.client() as api, hooked.client() as api_c:
                ids = [api.post(f"{GEN}/imagine", json={"prompt": f"a fox in snow {i}", "engine": "mj"}).json()["data"][0]["task_id"]
                       for i in range(6)]
                hooked_id = api_c.post(f"{GEN}/imagine", json={"prompt": "a heron at dusk", "engine": "mj"}).json()["data"][0]["task_id"]
                parked = "SELECT count(*) FROM tasks WHERE lease_owner = 'upstream'"
                wait_for(lambda: _count(b.data_dir / "pixelmill.db", parked) == 6, timeout=30, what="6 tasks to wait upstream")
                wait_for(lambda: _count(hooked.data_dir / "pixelmill.db", parked) == 1, timeout=30, what="the hooked task to wait upstream")
                batches = proxy.requests.count("POST /mj/task/list-by-condition")
                wait_for(lambda: proxy.requests.count("POST /mj/task/list-by-condition") >= batches + 3, timeout=30, what="more batched polls")
                assert not any(r.endswith("/fetch") and r.startswith("GET /mj/task/") for r in proxy.requests[-20:] if "list" not in r)
                with a.worker():
                    done = [wait_terminal(api, t, timeout=60) for t in ids]
                    hooked_done = wait_terminal(api_c, hooked_id, timeout=60)
                polls = sum(float(line.rsplit(" ", 1)[1]) for line in api_c.get("/metrics").text.splitlines()
                            if line.startswith("pixelmill_upstream_polls_total{"))
        finally:
            hooked.stop()
            b.stop()
            a.stop()
    assert [t["status"] for t in done] == ["SUCCESS"] * 6, [t.get("fail_reason") for t in done]
    assert hooked_done["status"] == "SUCCESS", hooked_done.get("fail_reason")
    assert polls >= 1  # asked because A called the hook: C's own polls come every 10 minutes
