"""Service benchmark on the procedural engine (issue 2's targets).

Prints, for this machine:
- engine: four 512-px images, ms per call (p50)
- imagine: submit → SUCCESS latency at 512 px, p50/p95 over N sequential tasks, polling every 5 ms
- upscale: submit → SUCCESS latency, p50/p95, polling every 5 ms
- submits/s the API accepts (16 keep-alive connections, see loadgen.py), with the in-process
  workers generating the whole time, and API-only (workers on other hosts)

Cache-hit latency is measured in bench/workflow.py with the rest of the production workflow.

Run: make bench   (or .venv/bin/python bench/service.py --tasks 300)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

import loadgen
from loadgen import post_json
from pixelmill.engines.base import GenerationRequest
from pixelmill.engines.procedural import ProceduralEngine
from pixelmill.observe.stages import STAGES
from pixelmill.testing import Server, wait_for

KEY = "pm_bench_" + "b" * 32
IMAGINE = "/v1/midjourney/generations/imagine"
#: The load generator is one key submitting thousands of tasks: no queue, rate or concurrency caps.
#: Where benchmarks make (and drop) a PostgreSQL database of their own.
PG_ADMIN = os.environ.get("PIXELMILL_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
UNCAPPED = {"interactive_queue_limit": 1_000_000, "rate_per_minute": 0, "max_concurrent_tasks": 0}
PROMPTS = ["a serene mountain lake at sunrise, mist", "a neon city at night", "red desert dunes at sunset", "a dark pine forest in winter"]


@contextmanager
def pg_database(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database's URL, dropped afterwards."""
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def until_success(api: httpx.Client, task_id: str) -> dict:
    def done() -> dict | None:
        task = api.get(f"/v1/midjourney/{task_id}").json()
        if task["status"] in ("FAILURE", "CANCEL"):
            raise RuntimeError(task)
        return task if task["status"] == "SUCCESS" else None

    return wait_for(done, timeout=60, interval=0.005, what=f"task {task_id}")


def bench_engine(runs: int = 30) -> float:
    engine = ProceduralEngine()
    times = []
    for i in range(runs):
        req = GenerationRequest(prompt=PROMPTS[i % 4], width=512, height=512, seeds=(i, i + 1, i + 2, i + 3))
        t = time.perf_counter()
        engine.generate(req)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def bench_latency(api: httpx.Client, n: int) -> tuple[list[float], list[float], dict[str, list[dict[str, float]]]]:
    """Sequential imagine + upscale pairs: their submit → SUCCESS times, and each task's stage
    budget (observe/stages.py) by action."""
    imagine, upscale = [], []
    stages: dict[str, list[dict[str, float]]] = {"imagine": [], "upscale": []}
    for i in range(n):
        t = time.perf_counter()
        task_id = api.post(IMAGINE, json={"prompt": f"{PROMPTS[i % 4]} {i}"}).json()["data"][0]["task_id"]
        stages["imagine"].append(until_success(api, task_id)["stages"])
        imagine.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        r = api.post("/v1/midjourney/generations/upscale", json={"task_id": task_id, "index": 1 + i % 4})
        stages["upscale"].append(until_success(api, r.json()["data"][0]["task_id"])["stages"])
        upscale.append((time.perf_counter() - t) * 1000)
    return imagine, upscale, stages


def print_stages(action: str, runs: list[dict[str, float]]) -> None:
    """The stage budget of ``action``: p50 ms per stage, in the order a task meets them."""
    # Over the tasks that had the stage, as the health report takes its medians.
    figures = [f"{name} {statistics.median(r[name] for r in runs if name in r):.1f}" for name in STAGES if any(name in r for r in runs)]
    print(f"  {action} stages, p50 ms over {len(runs)} tasks: " + ", ".join(figures))


def bench_submits(url: str, total: int, concurrency: int) -> float:
    requests = [post_json(url, IMAGINE, {"prompt": f"load test {i}"}, KEY) for i in range(total)]
    rate, statuses = asyncio.run(loadgen.run(url, requests, concurrency))
    accepted = statuses.count(200)
    if accepted != total:
        raise RuntimeError(f"only {accepted}/{total} submits accepted: {sorted(set(statuses))}")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=200, help="sequential imagine+upscale pairs")
    ap.add_argument("--submits", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()

    print(f"procedural engine, 4 x 512 px: p50 {bench_engine():.1f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(Path(tmp) / "a", KEY, workers=2, **UNCAPPED).start()
        try:
            with srv.client() as api:
                until_success(api, api.post(IMAGINE, json={"prompt": "warm up"}).json()["data"][0]["task_id"])
                imagine, upscale, stages = bench_latency(api, args.tasks)
            print(f"imagine 512 px submit -> SUCCESS over {len(imagine)} tasks: p50 {pct(imagine, 50):.0f} ms, p95 {pct(imagine, 95):.0f} ms (target p50 <= 250)")
            print_stages("imagine", stages["imagine"])
            print(f"upscale submit -> SUCCESS over {len(upscale)} tasks: p50 {pct(upscale, 50):.1f} ms, p95 {pct(upscale, 95):.1f} ms (target p50 <= 50)")
            print_stages("upscale", stages["upscale"])
            rate = bench_submits(srv.url, args.submits, args.concurrency)
            print(f"accepted submits/s with 2 workers generating: {rate:.0f} (target >= 200)")
        finally:
            srv.stop()
        srv = Server(Path(tmp) / "b", KEY, workers=0, **UNCAPPED).start()
        try:
            rate = bench_submits(srv.url, args.submits, args.concurrency)
            print(f"accepted submits/s, API only (workers on other hosts): {rate:.0f}")
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
