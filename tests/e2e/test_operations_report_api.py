"""GET /v1/admin/operations, what the console's operations page draws: readiness, queue depth per
lane, the latest failures, and success rate, latency and cost over time."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import Server, wait_terminal

KEY = "pm_ops_" + "o" * 32
IMAGINE = "/v1/midjourney/generations/imagine"


def test_lanes_count_waiting_work(tmp_path: Path) -> None:
    srv = Server(tmp_path, KEY, workers=0).start()  # nothing runs: every task waits
    try:
        with srv.client() as admin:
            for lane in ("interactive", "interactive", "batch"):
                assert admin.post(IMAGINE, json={"prompt": "a queued cat", "lane": lane}).status_code == 200
            ops = admin.get("/v1/admin/operations").json()
            tenant = srv.cli("keys", "create", "--tenant", "shop").stdout.split()[-1]
            with srv.client(tenant) as shop:
                assert shop.get("/v1/admin/operations").status_code == 403
    finally:
        srv.stop()
    assert ops["lanes"] == [{"lane": "batch", "waiting": 1, "running": 0}, {"lane": "interactive", "waiting": 2, "running": 0}]
    assert ops["workers"] == [] and ops["failures"] == [] and ops["readiness"]["database"] == "ok"


def test_failures_and_the_series_of_success_latency_and_cost(tmp_path: Path) -> None:
    srv = Server(tmp_path, KEY, fault_injection='[{"match": "doomed", "retryable": false}]').start()
    try:
        with srv.client() as admin:
            done = [wait_terminal(admin, admin.post(IMAGINE, json={"prompt": p}).json()["data"][0]["task_id"])
                    for p in ("a cat", "a dog", "a bird", "a doomed cat")]
            ops = admin.get("/v1/admin/operations", params={"hours": 1}).json()
            assert admin.get("/v1/admin/operations", params={"hours": 0}).status_code == 400
    finally:
        srv.stop()
    doomed = done[-1]
    assert doomed["status"] == "FAILURE"
    assert ops["failures"][0]["task_id"] == doomed["task_id"] and ops["failures"][0]["reason"] == doomed["fail_reason"]
    series = ops["series"]
    assert len(series) == 24 and series[0]["from"] < series[-1]["from"]
    busy = [p for p in series if p["finished"]]
    assert sum(p["finished"] for p in busy) == 4 and sum(p["cost"] for p in busy) == 3  # the failure was refunded
    succeeded = sum(round(p["success_rate"] * p["finished"]) for p in busy)
    assert succeeded == 3
    slowest = max(t["finish_time"] - t["submit_time"] for t in done[:3])
    assert all(0 < p["mean_ms"] <= slowest for p in busy if p["mean_ms"] is not None)
