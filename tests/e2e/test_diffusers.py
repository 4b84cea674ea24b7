"""The diffusers engine through the HTTP API: a tiny random pipeline built by the test, loaded
through the real loading path in the engine's own worker process, on the CPU."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import TEST_KEY
from tests.helpers import Server, require_extra, upload_image, wait_terminal

require_extra("diffusers", "diffusers")

GEN = "/v1/midjourney/generations"


@pytest.fixture(scope="module")
def sd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from tests.engines.tiny_pipeline import build_tiny_pipeline

    model = build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd"))
    engines = {"sd": {"kind": "diffusers", "model": str(model), "device": "cpu", "dtype": "fp32", "steps": 2,
                      "max_batch_size": 4, "batch_timeout_ms": 1000, "warmup": True}}
    srv = Server(tmp_path_factory.mktemp("sd-server"), TEST_KEY, engines=json.dumps(engines), engine="sd", image_size=64,
                 workers=4, rate_per_minute=0).start()
    yield srv
    srv.stop()


@pytest.fixture
def api(sd: Server) -> Iterator[httpx.Client]:
    with sd.client() as c:
        yield c


def done(api: httpx.Client, op: str, body: dict[str, Any]) -> dict[str, Any]:
    r = api.post(f"{GEN}/{op}", json=body)
    assert r.status_code == 200, r.text
    task = wait_terminal(api, r.json()["data"][0]["task_id"], timeout=120)
    assert task["status"] == "SUCCESS", task
    return task


def size(api: httpx.Client, url: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(api.get(url).content)).size


def pixels(api: httpx.Client, url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(api.get(url).content)).convert("RGB"))


def test_imagine_is_reproducible_image_by_image(api: httpx.Client) -> None:
    a = done(api, "imagine", {"prompt": "a red fox --ar 3:2", "seed": 11})
    assert a["engine"] == "sd" and [size(api, u) for u in a["image_urls"]] == [(80, 64)] * 4  # 3:2 at base 64, sides >= 64
    b = done(api, "imagine", {"prompt": "a red fox --ar 3:2", "seed": 11, "cache": False, "stylize": 100})  # not a cache hit
    assert "cache_hit" not in b["params"]
    assert all(np.array_equal(pixels(api, x), pixels(api, y)) for x, y in zip(a["image_urls"], b["image_urls"], strict=True))
    assert not np.array_equal(pixels(api, a["image_urls"][0]), pixels(api, a["image_urls"][1]))


def test_every_picture_operation_runs_on_the_model(api: httpx.Client) -> None:
    grid = done(api, "imagine", {"prompt": "a lighthouse", "seed": 3})
    pick = done(api, "upscale", {"task_id": grid["task_id"], "index": 1})
    assert size(api, done(api, "variation", {"task_id": pick["task_id"], "mode": "subtle"})["image_urls"][0]) == (64, 64)
    assert size(api, done(api, "upscale", {"task_id": pick["task_id"], "mode": "creative"})["image_urls"][0]) == (128, 128)
    assert size(api, done(api, "zoom", {"task_id": pick["task_id"], "zoom": 2})["image_urls"][0]) == (64, 64)
    pan = done(api, "pan", {"task_id": pick["task_id"], "direction": "right"})
    assert size(api, pan["image_urls"][0]) == (96, 64)
    assert np.array_equal(pixels(api, pan["image_urls"][0])[:, :64], pixels(api, pick["image_urls"][0]))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    mask_url = upload_image(api, mask)
    inpaint_id = api.post(f"{GEN}/inpaint", json={"task_id": pick["task_id"]}).json()["data"][0]["task_id"]
    api.post(f"{GEN}/modal", json={"task_id": inpaint_id, "prompt": "a storm", "mask_url": mask_url})
    inpaint = wait_terminal(api, inpaint_id, timeout=120)
    assert inpaint["status"] == "SUCCESS"
    assert np.array_equal(pixels(api, inpaint["image_urls"][0])[:, 32:], pixels(api, pick["image_urls"][0])[:, 32:])
    blend = done(api, "blend", {"image_urls": [pick["image_urls"][0], grid["image_urls"][1]], "dimensions": "PORTRAIT"})
    assert size(api, blend["image_urls"][0]) == (64, 80)


def test_concurrent_requests_are_batched(api: httpx.Client, sd: Server) -> None:
    ids: list[str] = []

    def submit(i: int) -> None:
        with sd.client() as c:
            ids.append(c.post(f"{GEN}/imagine", json={"prompt": f"a castle number {i}", "seed": 100 + i}).json()["data"][0]["task_id"])

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tasks = [wait_terminal(api, t, timeout=120) for t in ids]
    assert all(t["status"] == "SUCCESS" for t in tasks)
    batches = [t["engine_meta"]["batch"] for t in tasks]
    assert len(set(batches)) < len(batches)  # some requests shared one pipeline call
    assert max(t["engine_meta"]["batch_requests"] for t in tasks) >= 2
