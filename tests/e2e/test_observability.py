"""Metrics, health report, readiness and logs of a real server after a mixed run."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TEST_KEY
from tests.helpers import Server, require_detector, wait_files, wait_terminal

IMAGINE = "/v1/midjourney/generations/imagine"


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):  # the Prometheus text parser
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_metrics_match_the_task_table_after_a_mixed_run(tmp_path: Path) -> None:
    # The server's worker takes interactive work only: the batch deer and elk wait until the elk is
    # cancelled, then a batch worker process runs the deer.
    srv = Server(tmp_path, TEST_KEY, workers=1, procedural_delay_ms=40, worker_lanes='["interactive"]',
                 fault_injection='[{"match": "broken", "retryable": false}]').start()
    try:
        with srv.client() as api:
            ids = [api.post(IMAGINE, json={"prompt": p}).json()["data"][0]["task_id"]
                   for p in ("a fox", "a owl", "a broken hare", "a broken lynx")]
            seeded = {"prompt": "a seeded bear", "seed": 9}
            ids.append(api.post(IMAGINE, json=seeded).json()["data"][0]["task_id"])
            [wait_terminal(api, i) for i in ids]
            ids.append(api.post(IMAGINE, json=seeded).json()["data"][0]["task_id"])  # a cache hit
            ids.append(api.post(IMAGINE, json={"prompt": "a slow deer", "lane": "batch"}).json()["data"][0]["task_id"])
            ids.append(api.post(IMAGINE, json={"prompt": "a cancelled elk", "lane": "batch"}).json()["data"][0]["task_id"])
            assert api.post(f"/v1/midjourney/{ids[-1]}/cancel").status_code == 200
            with srv.worker("--lanes", "batch", "--concurrency", "1"):
                final = [wait_terminal(api, i, timeout=90) for i in ids]
            text = api.get("/metrics")
            report = api.get("/v1/admin/health-report").json()
            with srv.client("pm_nobody_" + "x" * 30) as stranger:
                assert stranger.get("/metrics").status_code == 401
    finally:
        srv.stop()
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    m = samples(text.text)
    expected = Counter((t["action"], t["status"], "procedural", t["lane"]) for t in final)
    got = {(s["action"], s["status"], s["engine"], s["lane"]): v for s, v in m["pixelmill_tasks"]}
    assert got == expected and sum(expected.values()) == 8
    statuses = Counter(t["status"] for t in final)
    assert statuses == {"SUCCESS": 5, "FAILURE": 2, "CANCEL": 1}
    assert m["pixelmill_cache_hits_total"] == [({"action": "IMAGINE"}, 1.0)]
    completion = {s["lane"]: v for s, v in m["pixelmill_task_completion_seconds_count"]}
    assert completion == {"interactive": 3.0, "batch": 1.0}  # successes, the cache hit left out
    assert ({"engine": "procedural", "error_class": "fatal"}, 2.0) in m["pixelmill_engine_errors_total"]
    units = {(s["kind"], s["price_key"]): v for s, v in m["pixelmill_ledger_units_total"]}
    assert units == {("charge", "midjourney@imagine"): 7.0, ("refund", "midjourney@imagine"): 3.0}  # the cache hit was free
    assert {s["lane"]: v for s, v in m["pixelmill_queue_depth"]} == {"interactive": 0.0, "batch": 0.0}
    figures = {f["name"]: f for f in report["figures"]}
    # 5 of 7 finished tasks succeeded (the cancel does not count): 71 % < 95 %.
    assert figures["success_rate"]["value"] == round(5 / 7, 4) and figures["success_rate"]["verdict"] == "warn"
    assert report["verdict"] == "warn" and report["counts"]["finished"] == 7
    # The stage budget of the 5 successes (the cache hit has only its accept).
    assert report["stages"]["tasks"] == 5 and list(report["stages"]["p50_ms"])[:4] == ["accept", "queue", "claim", "engine"]


def test_readiness_and_structured_logs(tmp_path: Path) -> None:
    require_detector()  # readiness reports the screening model too
    srv = Server(tmp_path, TEST_KEY, log_format="json", screening="nudenet").start()
    try:
        with srv.client() as api:
            r = api.post(IMAGINE, json={"prompt": "a logged heron --seed 11"}, headers={"X-Request-ID": "req-7f3a"})
            assert r.headers["X-Request-ID"] == "req-7f3a"
            task_id = r.json()["data"][0]["task_id"]
            wait_files(api, task_id)  # its renditions too, before the storage folder goes
            ready = api.get("/readyz")
            assert ready.status_code == 200
            assert ready.json() == {"status": "ready", "checks": {"database": "ok", "storage": "ok", "engine:procedural": "ok", "screening": "ok", "workers": "ok"}}
            shutil.rmtree(tmp_path / "files")
            broken = api.get("/readyz")
            assert broken.status_code == 503 and broken.json()["checks"]["storage"].startswith("OSError: storage folder")
    finally:
        srv.stop()
    lines = [json.loads(line) for line in srv.log.read_text().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("task_id") == task_id]
    events = [line["event"] for line in mine]
    # The API's "accepted" follows its commit, which wakes a worker at once: either may log first.
    assert sorted(events) == ["task accepted", "task started", "task succeeded"] and events[-1] == "task succeeded"
    assert all(line["request_id"] == "req-7f3a" and line["tenant"] == "default" for line in mine)
    started = mine[events.index("task started")]
    assert (started["action"], started["engine"], started["attempt"], started["level"]) == ("IMAGINE", "procedural", 1, "info")


def test_every_task_says_where_its_time_went(tmp_path: Path) -> None:
    # The stage budget (observe/stages.py): on the task, and as a histogram per stage.
    srv = Server(tmp_path, TEST_KEY, procedural_delay_ms=20).start()
    try:
        with srv.client() as api:
            task = wait_terminal(api, api.post(IMAGINE, json={"prompt": "a timed heron"}).json()["data"][0]["task_id"])
            pick = wait_terminal(api, api.post("/v1/midjourney/generations/upscale", json={"task_id": task["task_id"], "index": 1})
                                 .json()["data"][0]["task_id"])
            metrics = samples(api.get("/metrics").text)
    finally:
        srv.stop()
    stages = task["stages"]
    assert set(stages) == {"accept", "queue", "claim", "engine", "screening", "postprocess", "storage"}  # nobody watched: no previews
    assert all(isinstance(ms, (int, float)) and ms >= 0 for ms in stages.values())
    assert stages["queue"] == task["start_time"] - task["submit_time"]  # the database's clock
    # The engine slept 20 ms per image (procedural_delay_ms).
    assert stages["engine"] >= 4 * 20 and stages["postprocess"] > 0 and stages["storage"] > 0
    # A plain upscale is a pick of a stored image: no engine, no files written.
    assert set(pick["stages"]) == {"accept", "queue", "claim"}
    counts = {labels["stage"]: value for labels, value in metrics["pixelmill_stage_seconds_count"]}
    assert counts["accept"] == 2 and counts["engine"] == 1 and counts["finalize"] == 2 and counts["claim"] == 2
