"""Lanes, priorities and failure handling against real server processes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import TEST_KEY
from tests.helpers import Server, wait_for, wait_terminal

IMAGINE = "/v1/midjourney/generations/imagine"
FAULTS = (
    '[{"match": "flaky", "times": 2, "retryable": true, "error": "upstream timed out"},'
    ' {"match": "broken", "retryable": false, "error": "model refused the input"}]'
)


def test_interactive_work_is_not_held_behind_a_500_task_batch(tmp_path: Path) -> None:
    srv = Server(tmp_path, TEST_KEY, workers=2, procedural_delay_ms=20, rate_per_minute=0).start()
    try:
        with srv.client() as api:
            batch = api.post("/v1/batches", json={
                "prompt_template": "a {thing} in fog", "variables": [{"thing": f"tower {i}"} for i in range(500)],
            })
            assert batch.status_code == 200, batch.text
            batch_id = batch.json()["data"][0]["batch_id"]
            last = api.get(f"/v1/batches/{batch_id}/manifest").json()["tasks"][-1]
            waiting = api.get(f"/v1/midjourney/{last['task_id']}").json()
            assert waiting["lane"] == "batch" and waiting["queue_position"] > 400
            finished = []
            for i in range(5):
                task_id = api.post(IMAGINE, json={"prompt": f"a lighthouse {i}"}).json()["data"][0]["task_id"]
                finished.append(wait_terminal(api, task_id))
            status = api.get(f"/v1/batches/{batch_id}").json()
        assert all(t["status"] == "SUCCESS" and t["lane"] == "interactive" for t in finished)
        # Five interactive tasks ran one after another while the batch had barely started.
        assert status["status"] == "running" and status["done"] < 100
    finally:
        srv.stop()


def test_priority_orders_work_inside_a_lane(tmp_path: Path) -> None:
    # No worker until all four wait; then one worker takes them: the urgent one first, the rest
    # in the order they came.
    srv = Server(tmp_path, TEST_KEY, workers=0).start()
    try:
        with srv.client() as api:
            ids = [api.post(IMAGINE, json={"prompt": f"a cat {i}", **extra}).json()["data"][0]["task_id"]
                   for i, extra in enumerate([{}, {}, {}, {"priority": 5}])]
            with srv.worker("--concurrency", "1"):
                tasks = [wait_terminal(api, task_id, timeout=90) for task_id in ids]
        assert [t["task_id"] for t in sorted(tasks, key=lambda t: t["start_time"])] == [ids[3], ids[0], ids[1], ids[2]]
    finally:
        srv.stop()


def test_retryable_faults_are_retried_and_the_rest_fail_at_once(tmp_path: Path) -> None:
    srv = Server(tmp_path, TEST_KEY, fault_injection=FAULTS, retry_backoff_seconds="[0.1]").start()
    try:
        with srv.client() as api:
            flaky = wait_terminal(api, api.post(IMAGINE, json={"prompt": "a flaky bridge"}).json()["data"][0]["task_id"])
            broken = wait_terminal(api, api.post(IMAGINE, json={"prompt": "a broken bridge"}).json()["data"][0]["task_id"])
        assert flaky["status"] == "SUCCESS" and len(flaky["image_urls"]) == 4
        assert [(a["attempt"], a["error"]) for a in flaky["attempts"]] == [
            (1, "upstream timed out (injected, attempt 1)"), (2, "upstream timed out (injected, attempt 2)"),
        ]
        assert broken["status"] == "FAILURE" and broken["quota"] == 0
        assert broken["fail_reason"] == "model refused the input (injected, attempt 1)"
        assert [a["attempt"] for a in broken["attempts"]] == [1]
    finally:
        srv.stop()


def test_previews_appear_while_the_engine_runs_for_whoever_watches(tmp_path: Path) -> None:
    srv = Server(tmp_path, TEST_KEY, procedural_delay_ms=500, preview_interval_seconds=0.05).start()
    try:
        with srv.client() as api:
            # previews: true, as if watched from the start (by default only an event stream's
            # watcher makes the worker store them).
            task_id = api.post(IMAGINE, json={"prompt": "a red barn", "previews": True}).json()["data"][0]["task_id"]
            running = wait_for(lambda: (t := api.get(f"/v1/midjourney/{task_id}").json())["preview_url"] and t,
                               timeout=30, what="a preview")
            preview = api.get(running["preview_url"])
            done = wait_terminal(api, task_id)
            unwatched = wait_terminal(api, api.post(IMAGINE, json={"prompt": "a quiet barn"}).json()["data"][0]["task_id"])
            watched_id = api.post(IMAGINE, json={"prompt": "a watched barn"}).json()["data"][0]["task_id"]
            streamed = []
            with api.stream("GET", f"/v1/midjourney/{watched_id}/events") as events:
                for line in events.iter_lines():
                    if line.startswith("data: "):
                        streamed.append(json.loads(line[6:]))
        from io import BytesIO

        from PIL import Image

        with Image.open(BytesIO(preview.content)) as im:
            assert im.format == "JPEG" and max(im.size) <= 160
        assert running["status"] == "IN_PROGRESS" and done["preview_url"] is None and done["stages"]["preview"] > 0
        # Nobody watching: no preview is made (and no time spent on one).
        assert "preview" not in unwatched["stages"] and unwatched["status"] == "SUCCESS"
        # An event stream's watcher: previews from the next progress write on.
        assert any(e["preview_url"] for e in streamed)
    finally:
        srv.stop()


def test_the_event_stream_shows_the_queue_position_until_the_task_runs(tmp_path: Path) -> None:
    import json

    # Both wait before any worker runs: the stream starts at position 2, then the worker takes the
    # first (2 s of work) and the second is next in line, then runs.
    srv = Server(tmp_path, TEST_KEY, workers=0, procedural_delay_ms=500).start()
    try:
        with srv.client() as api:
            api.post(IMAGINE, json={"prompt": "first in line"})
            task_id = api.post(IMAGINE, json={"prompt": "second in line"}).json()["data"][0]["task_id"]
            with api.stream("GET", f"/v1/midjourney/{task_id}/events") as stream:
                data = (json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: "))
                events = [next(data)]
                with srv.worker("--concurrency", "1"):
                    events += list(data)
        assert (events[0]["status"], events[0]["queue_position"]) == ("SUBMITTED", 2)
        assert ("SUBMITTED", 1) in [(e["status"], e["queue_position"]) for e in events]
        assert events[-1]["status"] == "SUCCESS" and events[-1]["queue_position"] is None
        assert all(e["queue_position"] is None for e in events if e["status"] != "SUBMITTED")
    finally:
        srv.stop()
