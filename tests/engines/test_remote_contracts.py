"""The upstream contracts' wire forms (``engines/remote/contracts.py``): what each answer means,
and midjourney-proxy's Java line, which shows a grid as one picture and has no buttons."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image

from pixelmill.engines.base import GenerationRequest, UpstreamStep
from pixelmill.engines.remote import RemoteConfig, RemoteEngine
from pixelmill.engines.remote.contracts import Context, MidjourneyProxy, Seed004
from tests.engines.test_remote_table import Scripted, serving

COLOURS = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0)]


@pytest.mark.parametrize(
    ("status", "data", "kind"),
    [
        (200, {"code": 1, "result": "1"}, "ok"),
        (200, {"code": 21, "result": "1"}, "ok"),  # waiting in MODAL
        (200, {"code": 22, "result": "1", "properties": {"numberOfQueues": 3}}, "ok"),  # accepted behind others
        (200, {"id": "1", "status": "IN_PROGRESS"}, "ok"),  # a task
        (200, [{"id": "1", "status": "SUCCESS"}], "ok"),  # list-by-condition
        (200, None, "lost"),  # fetch of an unknown id
        (404, {"code": 3, "description": "关联任务不存在或已失效"}, "lost"),  # a missing parent
        (200, {"code": 3, "description": "无可用的账号实例"}, "busy"),  # no account instance: elsewhere
        (200, {"code": 23, "description": "queue full"}, "busy"),
        (429, None, "busy"),
        (409, None, "unsure"),  # an earlier submit with this key is still being accepted
        (504, None, "unsure"),  # a gateway gave up: the upstream may have taken it
        (200, {"code": 9, "description": "提交失败，队列已满"}, "retry"),
        (200, {"code": 4, "description": "prompt: required"}, "request"),
        (200, {"code": 24, "description": "banned word"}, "banned"),
        (401, None, "gone"),
        (200, {"code": 9, "description": "Your account has been banned"}, "gone"),
        (502, None, "unsure"),
        (503, None, "retry"),
    ],
)
def test_what_a_midjourney_proxy_answer_means(status: int, data: Any, kind: str) -> None:
    assert MidjourneyProxy().verdict(status, data, json.dumps(data) if data is not None else "").kind == kind


def test_seed_004_answers_keep_their_table() -> None:
    seed = Seed004()
    assert seed.verdict(404, {"code": 3, "description": "task 9 does not exist"}, "").kind == "lost"
    assert seed.verdict(200, {"code": 3, "description": "no instance free"}, "").kind == "busy"
    assert seed.verdict(500, {"code": 9, "description": "internal"}, "").kind == "retry"
    assert seed.verdict(403, {"code": 403, "description": "no"}, "").kind == "gone"
    assert seed.verdict(200, {"code": 1, "data": [{"task_id": "1"}]}, "").kind == "ok"


def _parent(buttons: list[str]) -> Context:
    return Context(task=lambda _: {"id": "7", "prompt": "a fox", "buttons": [{"customId": b} for b in buttons]}, read=lambda _: b"")


def test_follow_ups_press_the_parents_buttons_or_use_change_where_there_are_none() -> None:
    mj = MidjourneyProxy()
    buttons = ["MJ::JOB::upsample::2::abc", "MJ::JOB::variation::2::abc", "MJ::JOB::reroll::0::abc::SOLO"]
    upscale = mj.submit(UpstreamStep("upscale", {"task_id": "7", "index": 2}), None, _parent(buttons))
    assert (upscale.path, upscale.body) == ("/mj/submit/action", {"taskId": "7", "customId": "MJ::JOB::upsample::2::abc"})
    hooked = mj.submit(UpstreamStep("variation", {"task_id": "7", "index": 2, "mode": "strong"}), "https://me/cb?token=t", _parent(buttons))
    assert hooked.body == {"taskId": "7", "customId": "MJ::JOB::variation::2::abc", "notifyHook": "https://me/cb?token=t"}
    java = mj.submit(UpstreamStep("upscale", {"task_id": "7", "index": 3}), None, _parent([]))
    assert (java.path, java.body) == ("/mj/submit/change", {"taskId": "7", "action": "UPSCALE", "index": 3})
    with pytest.raises(Exception, match="upstream task 7 has no MJ::JOB::pan_left button"):
        mj.submit(UpstreamStep("pan", {"task_id": "7", "direction": "left"}), None, _parent(buttons))
    v7 = mj.submit(UpstreamStep("upscale", {"task_id": "7", "mode": "creative"}), None, _parent(["MJ::JOB::upsample_v7_2x_creative::1::abc::SOLO"]))
    assert v7.body == {"taskId": "7", "customId": "MJ::JOB::upsample_v7_2x_creative::1::abc::SOLO"}
    keyed = mj.submit(UpstreamStep("imagine", {"prompt": "a fox"}), None, Context(task=lambda _: {}, read=lambda _: b"", key="T-1"))
    assert keyed.body == {"prompt": "a fox", "state": "T-1"}  # the submit key, to find an unanswered submit by
    assert mj.confirm(UpstreamStep("variation", {"task_id": "7", "index": 1, "mode": "strong"}), _parent([])) == {"prompt": "a fox"}
    zoom = mj.confirm(UpstreamStep("zoom", {"task_id": "7", "zoom": 1.7}), _parent([]))
    assert zoom == {"prompt": "a fox --zoom 1.7"}
    imagine = mj.submit(UpstreamStep("imagine", {"prompt": "a fox"}, speed="relax"), None, _parent([]))
    assert imagine.body == {"prompt": "a fox", "accountFilter": {"modes": ["RELAX"]}}


@pytest.fixture
def java_line() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """midjourney-proxy's Java line on loopback: an imagine whose task shows only its grid."""
    seen: list[dict[str, str]] = []
    grid = Image.new("RGB", (128, 128))
    for i, colour in enumerate(COLOURS):
        grid.paste(colour, ((i % 2) * 64, (i // 2) * 64, (i % 2) * 64 + 64, (i // 2) * 64 + 64))
    png = io.BytesIO()
    grid.save(png, "PNG")

    class Handler(BaseHTTPRequestHandler):
        def _send(self, body: bytes, kind: str = "application/json") -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.append({"path": self.path, "secret": self.headers.get("mj-api-secret", "")})
            self._send(json.dumps({"code": 1, "description": "Submit success", "result": "7"}).encode())

        def do_GET(self) -> None:
            if self.path == "/grid.png":
                self._send(png.getvalue(), "image/png")
                return
            task = {"id": "7", "action": "IMAGINE", "status": "SUCCESS", "progress": "100%", "imageUrl": "/grid.png", "failReason": None}
            self._send(json.dumps(task).encode())

        def log_message(self, *_: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


def test_a_grid_shown_as_one_picture_is_cut_into_its_four(java_line: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = java_line
    engine = RemoteEngine("mj", RemoteConfig(base_url=url, api_key="secret", contract="midjourney-proxy", poll_seconds=0.01))
    try:
        result = engine.generate(GenerationRequest(prompt="a fox", width=64, height=64, seeds=(1, 2, 3, 4), source_prompt="a fox"))
    finally:
        engine.close()
    assert [im.getpixel((32, 32)) for im in result.images] == COLOURS
    assert seen == [{"path": "/mj/submit/imagine", "secret": "secret"}]
    assert result.meta["upstream_task_id"] == "7" and result.meta["upstream_account"] == "default"


@pytest.fixture
def older_pixelmill() -> Iterator[Scripted]:
    yield from serving()


def test_an_upstream_without_batched_status_is_polled_task_by_task(older_pixelmill: Scripted) -> None:
    """An older pixelmill has no ``list-by-ids``: the first batch finds out, and the engine asks
    after each task on its own from then on."""
    engine = RemoteEngine("mj", RemoteConfig(base_url=older_pixelmill.url, api_key="k"))
    older_pixelmill.script = [(404, {"code": 3, "description": "no such endpoint: POST /v1/midjourney/list-by-ids"}),
                              (200, {"task_id": "1", "status": "IN_PROGRESS", "progress": "40%"})]

    async def poll() -> tuple[dict[str, Any], int, dict[str, Any] | None]:
        session = engine.status_session("default", 2)
        try:
            batched = await engine.statuses(session, "default", ["1", "2"])
            return batched, engine.batch_size("default"), await engine.status(session, "default", "1")
        finally:
            await session.close()

    assert engine.batch_size("default") == 100
    batched, size, single = asyncio.run(poll())
    engine.close()
    assert batched == {"1": None, "2": None}  # asked again next round, one by one
    assert size == 0 and single is not None and single["progress"] == "40%"
