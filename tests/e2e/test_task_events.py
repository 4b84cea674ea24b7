"""``GET /v1/tasks/events``: one stream for all of a tenant's tasks, against the real server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import Server, wait_for

KEY = "pm_events_" + "e" * 32
IMAGINE = "/v1/midjourney/generations/imagine"


@contextmanager
def listening(server: Server, api_key: str | None = None) -> Iterator[list[dict[str, Any]]]:
    """The tasks the stream sends, in order, collected by a thread until the block ends."""
    seen: list[dict[str, Any]] = []
    stop = threading.Event()

    def read() -> None:
        headers = {"Authorization": f"Bearer {api_key or server.api_key}"}
        try:
            with httpx.Client(timeout=httpx.Timeout(5, read=None)) as client, \
                    client.stream("GET", f"{server.url}/v1/tasks/events", headers=headers) as r:
                seen.append({"http_status": r.status_code, "content_type": r.headers["content-type"]})
                for line in r.iter_lines():
                    if stop.is_set():
                        return
                    if line.startswith("data: "):
                        seen.append(json.loads(line[6:]))
        except httpx.HTTPError:  # the server stopped under an open stream: the test is over
            return

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        wait_for(lambda: seen, timeout=30, what="the stream to open")
        assert seen.pop(0) == {"http_status": 200, "content_type": "text/event-stream; charset=utf-8"}
        yield seen
    finally:
        stop.set()  # the thread ends at the next line it reads, or with the process


def _last(seen: list[dict[str, Any]], task_id: str) -> dict[str, Any] | None:
    return next((t for t in reversed(seen) if t["task_id"] == task_id), None)


def test_one_stream_follows_every_task_of_the_tenant_and_a_new_one_re_attaches(tmp_path: Path) -> None:
    srv = Server(tmp_path, KEY, workers=0, rate_per_minute=0, max_concurrent_tasks=0).start()
    try:
        other = srv.cli("keys", "create", "--tenant", "elsewhere").stdout.split()[-1]
        with srv.client() as api, srv.client(other) as api_other:
            ids = [api.post(IMAGINE, json={"prompt": f"a kite {i}"}).json()["data"][0]["task_id"] for i in range(2)]
            foreign = api_other.post(IMAGINE, json={"prompt": "not yours"}).json()["data"][0]["task_id"]
            with listening(srv) as seen:
                # It opens with the tasks on their way, each with its place in the queue.
                wait_for(lambda: all(_last(seen, t) for t in ids), timeout=30, what="the waiting tasks")
                assert {(t["task_id"], t["status"]) for t in seen} == {(ids[0], "SUBMITTED"), (ids[1], "SUBMITTED")}
                assert sorted(t["queue_position"] for t in seen) == [1, 3]  # fair order: the other tenant's task is second
                third = api.post(IMAGINE, json={"prompt": "a kite 2"}).json()["data"][0]["task_id"]
                wait_for(lambda: _last(seen, third), timeout=30, what="the new task on the stream")
                with srv.worker():
                    wait_for(lambda: all((_last(seen, t) or {}).get("status") == "SUCCESS" for t in [*ids, third]), timeout=60,
                             what="every task's SUCCESS on the stream")
            done = _last(seen, third)
            assert done is not None and done["image_urls"] and done["progress"] == "100%"
            assert all(t["task_id"] != foreign for t in seen)  # another tenant's task never shows
            # Progress rises through the events of one task, and nothing follows its SUCCESS.
            third_events = [t for t in seen if t["task_id"] == third]
            assert third_events[-1]["status"] == "SUCCESS" and [t["status"] for t in third_events].count("SUCCESS") == 1
            with listening(srv) as again:  # nothing on its way: a new stream opens empty
                api.post(IMAGINE, json={"prompt": "one more"})
                wait_for(lambda: len(again) >= 1, timeout=30, what="the next task")
                assert [t["prompt"] for t in again][:1] == ["one more"]
    finally:
        srv.stop()
