"""Test-only helpers on top of ``pixelmill.testing``."""

from __future__ import annotations

import io
from typing import Any

import httpx
from PIL import Image

from pixelmill.testing import Server, free_port, wait_for

__all__ = ["Server", "download_image", "free_port", "upload_image", "wait_for", "wait_terminal"]


def upload_image(client: httpx.Client, image: Image.Image) -> str:
    """Store ``image`` as PNG through ``POST /v1/uploads``; its pixelmill URL (masks, inputs)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return str(client.post("/v1/uploads", content=buf.getvalue(), headers={"Content-Type": "image/png"}).json()["data"][0]["url"])


def download_image(client: httpx.Client, url: str) -> Image.Image:
    """Fetch ``url`` and decode it fully: a file that does not decode fails the test here."""
    r = client.get(url)
    assert r.status_code == 200, f"{url}: {r.status_code}"
    with Image.open(io.BytesIO(r.content)) as im:
        im.load()
        return im


def wait_terminal(client: httpx.Client, task_id: str, timeout: float = 30) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        task = client.get(f"/v1/midjourney/{task_id}").json()
        return task if task["status"] in ("SUCCESS", "FAILURE", "CANCEL") else None

    return wait_for(done, timeout=timeout, what=f"task {task_id} to finish")
