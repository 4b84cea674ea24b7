"""Test-only helpers on top of ``pixelmill.testing``."""

from __future__ import annotations

import importlib
import io
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import httpx
import pytest
from PIL import Image
from sqlalchemy import Engine, event

from pixelmill import testing
from pixelmill.testing import free_port, wait_for

__all__ = [
    "Server",
    "download_image",
    "free_port",
    "require_detector",
    "require_extra",
    "sqlite_steps",
    "upload_image",
    "wait_files",
    "wait_for",
    "wait_terminal",
]


def require_extra(module: str, extra: str) -> ModuleType:
    """Import ``module``, which a test needs from an optional extra. When it is missing the test
    is skipped, naming the extra; under CI (``CI=true``), where every extra is installed, it fails
    instead, so a broken install can never pass as a run of skips."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        _missing(extra, f"{module}: {exc}")


def require_detector() -> None:
    """The safety extra's screening model (ONNX Runtime and NudeNet's weights), as ``require_extra``."""
    from pixelmill.safety.screening import detector_installed

    if not detector_installed():
        _missing("safety", "onnxruntime or NudeNet's weights not found")


def _missing(extra: str, what: str) -> NoReturn:
    message = f"needs the {extra} extra ({what}); install it with: pip install -e '.[{extra}]'"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and an extra is missing: {message}", pytrace=False)
    pytest.skip(message, allow_module_level=True)


class Server(testing.Server):
    """``pixelmill serve`` for a test. Output screening is off unless the test sets it: a test
    that is not about screening must not depend on what a detector thinks of a random picture."""

    def __init__(self, data_dir: Path, api_key: str, **env: Any) -> None:
        env.setdefault("screening", "off")
        super().__init__(data_dir, api_key, **env)


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


def wait_files(client: httpx.Client, task_id: str, timeout: float = 30) -> dict[str, Any]:
    """The task once every image it shows has its renditions and provenance record, which are
    made after SUCCESS (queue/finishing.py)."""

    def finished() -> dict[str, Any] | None:
        task = client.get(f"/v1/midjourney/{task_id}").json()
        return task if task["status"] == "SUCCESS" and all(task["renditions"]) else None

    return wait_for(finished, timeout=timeout, what=f"the renditions of task {task_id}")


def sqlite_steps(db: Engine, work: Callable[[], None]) -> int:
    """SQLite virtual-machine steps, in hundreds, that ``work`` costs on ``db``: what the
    database does for it, free of timing, so a test can say "the same with any history"."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    event.listen(db, "connect", lambda dbapi, _record: dbapi.set_progress_handler(count, 100))
    db.dispose()  # connections opened from here on count
    try:
        work()
    finally:
        db.dispose()
    return steps


def png_chunks(data: bytes) -> list[tuple[str, bytes]]:
    """A PNG file's chunks in order (kind, body), each checked against its CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, []
    while at < len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        assert int.from_bytes(data[at + 8 + length : at + 12 + length], "big") == zlib.crc32(kind + body)
        chunks.append((kind.decode(), body))
        at += 12 + length
    return chunks
