"""Production-workflow benchmark (issue 4): what lanes, the request cache and webhooks cost.

Prints, for this machine:
- interactive imagine, submit -> SUCCESS, p50/p95 over N sequential tasks: on an idle server, then
  while a 500-task batch runs in the batch lane (and how far the batch got meanwhile)
- cache hit (a seeded repeat), submit -> SUCCESS, p50/p95
- webhook delivery: task finished (finish_time) -> the receiver has the signed completed event,
  and submit -> event received, p50/p95, with a receiver on loopback

Run: make bench   (or .venv/bin/python bench/workflow.py --tasks 40 --batch 500)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import httpx

from pixelmill.testing import Server, WebhookReceiver, wait_for
from service import IMAGINE, pct, until_success

KEY = "pm_bench_" + "w" * 32
UNCAPPED = {"rate_per_minute": 0, "max_concurrent_tasks": 0}


def show(name: str, values: list[float]) -> str:
    return f"{name}: p50 {pct(values, 50):.1f} ms, p95 {pct(values, 95):.1f} ms over {len(values)}"


def interactive_latency(api: httpx.Client, n: int, tag: str) -> tuple[list[float], list[float]]:
    """(submit -> SUCCESS as the client sees it, queue wait = start_time - submit_time), in ms."""
    times, waits = [], []
    for i in range(n):
        t = time.perf_counter()
        task = until_success(api, api.post(IMAGINE, json={"prompt": f"a harbour at dusk {tag} {i}"}).json()["data"][0]["task_id"])
        times.append((time.perf_counter() - t) * 1000)
        waits.append(float(task["start_time"] - task["submit_time"]))
    return times, waits


def bench_lanes(root: Path, n: int, batch: int, delay_ms: int) -> None:
    srv = Server(root / "lanes", KEY, workers=2, procedural_delay_ms=delay_ms, **UNCAPPED).start()
    try:
        with srv.client() as api:
            interactive_latency(api, 3, "warm")
            idle, idle_wait = interactive_latency(api, n, "idle")
            r = api.post("/v1/batches", json={"prompt_template": "a {n} in fog", "variables": [{"n": f"tower {i}"} for i in range(batch)]})
            batch_id = r.json()["data"][0]["batch_id"]
            busy, busy_wait = interactive_latency(api, n, "busy")
            status = api.get(f"/v1/batches/{batch_id}").json()
            api.post(f"/v1/batches/{batch_id}/cancel")
        print(f"engine delay {delay_ms} ms/image, 2 workers (1 may take batch work)")
        print("  " + show("interactive, idle server", idle) + f"; queue wait p95 {pct(idle_wait, 95):.0f} ms")
        print("  " + show(f"interactive, {batch}-task batch running", busy) + f"; queue wait p95 {pct(busy_wait, 95):.0f} ms"
              f"  (batch meanwhile: {status['done']}/{batch} done)")
    finally:
        srv.stop()


def bench_cache(root: Path, n: int) -> None:
    srv = Server(root / "cache", KEY, workers=2, **UNCAPPED).start()
    try:
        with srv.client() as api:
            body = {"prompt": "a cached lighthouse at dusk", "seed": 12345}
            until_success(api, api.post(IMAGINE, json=body).json()["data"][0]["task_id"])
            times = []
            for _ in range(n):
                t = time.perf_counter()
                task = until_success(api, api.post(IMAGINE, json=body).json()["data"][0]["task_id"])
                times.append((time.perf_counter() - t) * 1000)
                assert "cache_hit" in task["params"], task
        print(show("cache hit, submit -> SUCCESS", times) + " (target p50 <= 10 ms)")
    finally:
        srv.stop()


def bench_webhooks(root: Path, n: int) -> None:
    srv = Server(root / "hooks", KEY, workers=2, fetch_allow='["127.0.0.2/32"]', **UNCAPPED).start()
    try:
        with WebhookReceiver(host="127.0.0.2") as hooks, srv.client() as api:
            after_finish, after_submit = [], []
            for i in range(n):
                submitted = time.time()
                r = api.post(IMAGINE, json={"prompt": f"a signal fire {i}", "webhook_url": hooks.url, "webhook_events": ["completed"]})
                task_id = r.json()["data"][0]["task_id"]

                def arrived(task_id: str = task_id) -> tuple[float, dict] | None:  # type: ignore[type-arg]
                    for at, _, body in hooks.delivered():
                        event = json.loads(body)
                        if event["data"]["task_id"] == task_id:
                            return at, event
                    return None

                at, event = wait_for(arrived, timeout=60, interval=0.002, what="webhook")
                after_finish.append(at * 1000 - event["data"]["finish_time"])
                after_submit.append((at - submitted) * 1000)
        print(show("webhook, task finished -> event received", after_finish))
        print(show("webhook, submit -> completed event received", after_submit))
    finally:
        srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=40, help="sequential tasks per measurement")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--delay-ms", type=int, default=20, help="simulated model time per image")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bench_lanes(root, args.tasks, args.batch, args.delay_ms)
        bench_cache(root, args.tasks * 5)
        bench_webhooks(root, args.tasks)


if __name__ == "__main__":
    main()
