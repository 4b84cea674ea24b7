"""Queue behaviour across real processes: API-only servers, separate workers, crashes."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import TEST_KEY
from tests.helpers import Server, free_port, wait_for, wait_terminal

IMAGINE = "/v1/midjourney/generations/imagine"


def submit(client: httpx.Client, prompt: str = "a cat") -> str:
    r = client.post(IMAGINE, json={"prompt": prompt})
    assert r.status_code == 200, r.text
    return str(r.json()["data"][0]["task_id"])


def test_queue_full_is_429_code_23_and_a_separate_worker_drains_it(tmp_path: Path) -> None:
    srv = Server(tmp_path, TEST_KEY, workers=0, interactive_queue_limit=3).start()
    try:
        with srv.client() as api:
            ids = [submit(api) for _ in range(3)]
            assert {api.get(f"/v1/midjourney/{i}").json()["status"] for i in ids} == {"SUBMITTED"}
            r = api.post(IMAGINE, json={"prompt": "one too many"})
            assert r.status_code == 429
            assert r.json()["code"] == 23 and "queue is full" in r.json()["description"]
            assert int(r.headers["Retry-After"]) > 0

            with srv.worker("--concurrency", "2"):
                done = [wait_terminal(api, i, timeout=90) for i in ids]  # a cold worker process first
            assert {t["status"] for t in done} == {"SUCCESS"}
            assert api.post(IMAGINE, json={"prompt": "room again"}).status_code == 200
    finally:
        srv.stop()


def test_killing_the_server_mid_task_loses_nothing(tmp_path: Path) -> None:
    # Slow images (0.5 s each) so that the kill lands while a task is running and others wait.
    slow = Server(tmp_path, TEST_KEY, workers=1, procedural_delay_ms=500, lease_seconds=2, sweep_interval_seconds=0.2)
    slow.start()
    with slow.client() as api:
        ids = [submit(api, f"a lighthouse {n}") for n in range(4)]
        wait_for(
            lambda: api.get(f"/v1/midjourney/{ids[0]}").json()["status"] == "IN_PROGRESS",
            what="the first task to start",
        )
    slow.kill()

    # The dead server's 2-second leases expire by what the database holds; the new one's own
    # leases are long, so a busy machine's stall cannot requeue its running work.
    fast = Server(tmp_path, TEST_KEY, workers=2, lease_seconds=15, sweep_interval_seconds=0.2)
    fast.port = slow.port  # same address, same database, same files
    fast.url = slow.url
    fast.start()
    try:
        with fast.client() as api:
            done = [wait_terminal(api, i, timeout=60) for i in ids]
            assert [t["status"] for t in done] == ["SUCCESS"] * 4
            interrupted = done[0]
            assert len(interrupted["image_urls"]) == 4
            assert httpx.get(interrupted["grid_image_url"]).status_code == 200
    finally:
        fast.stop()


def test_a_worker_process_dedicated_to_the_batch_lane(tmp_path: Path) -> None:
    srv = Server(tmp_path, TEST_KEY, workers=0).start()
    metrics_port = free_port()
    try:
        with srv.client() as api, srv.worker("--concurrency", "2", "--lanes", "batch", "--metrics-port", str(metrics_port)):
            interactive = submit(api, "an interactive cat")
            batch_id = api.post("/v1/batches", json={"requests": [{"prompt": "a batch cat"}]}).json()["data"][0]["batch_id"]
            wait_for(lambda: api.get(f"/v1/batches/{batch_id}").json()["status"] == "completed", timeout=60, what="the batch")
            waiting = api.get(f"/v1/midjourney/{interactive}").json()
            own = wait_for(lambda: _metrics(metrics_port), what="the worker's metrics")
        # Only batch work is taken by this worker: the interactive task still waits, first in line.
        assert (waiting["status"], waiting["queue_position"]) == ("SUBMITTED", 1)
        # The worker serves its own counters only; the database figures are the API's to serve.
        assert "pixelmill_engine_errors_total" in own and "pixelmill_webhook_deliveries_total" in own
        assert "pixelmill_tasks{" not in own and "pixelmill_queue_depth" not in own
    finally:
        srv.stop()


def _metrics(port: int) -> str | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics").text
    except httpx.TransportError:
        return None


def test_on_sqlite_a_separate_worker_is_woken_by_a_submit_not_by_its_poll(tmp_path: Path) -> None:
    # The worker looks for work on its own every 10 minutes: only a wake-up from the API process
    # (queue/signals.py HostChannel) can start these tasks within the test's deadline.
    srv = Server(tmp_path, TEST_KEY, workers=0, worker_poll_seconds=600).start()
    try:
        with srv.client() as api, srv.worker("--concurrency", "1"):
            first = submit(api, "a cat")  # may be taken by the worker's first look, at its start
            assert wait_terminal(api, first, timeout=90)["status"] == "SUCCESS"
            for prompt in ("a dog", "a fox"):  # the worker is idle now: each submit wakes it
                assert wait_terminal(api, submit(api, prompt), timeout=30)["status"] == "SUCCESS"
    finally:
        srv.stop()
