"""A quick regression guard (issue 20): a few minutes, and every figure also as a ratio to a bare
FastAPI endpoint measured in the same run, so the machine's speed cancels out. The closing note of
every change to the pipeline reports this table; docs/performance.md keeps one per release.

Measures, each on a fresh server:
- bare FastAPI (bare_app.py, same uvicorn): accepted POSTs/s; one submit + one poll, p50
- pixelmill, upscale (a pick: its cheapest real task): submit → SUCCESS polling every 5 ms, p50
- pixelmill, imagine 512 px (screening on): submit → SUCCESS, p50, with its stage budget
- pixelmill, accepted submits/s, API only (workers on other hosts)

Run: cd bench && ../.venv/bin/python quick.py   (--tasks N for more samples)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

import loadgen
from loadgen import post_json
from pixelmill.testing import Server, free_port, wait_for
from service import IMAGINE, KEY, UNCAPPED, bench_latency, bench_submits, print_stages, until_success

HERE = Path(__file__).resolve().parent


def bare_figures(submits: int, concurrency: int, rounds: int) -> tuple[float, float]:
    """(accepted POSTs/s, p50 ms of one POST + one GET) of the bare app."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port), "--log-level", "warning",
         "--loop", "uvloop", "--http", "httptools", "--no-access-log"],
        cwd=HERE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), timeout=30, what="the bare app")
        rate, statuses = asyncio.run(loadgen.run(url, [post_json(url, "/submit", {"prompt": f"x {i}"}, KEY) for i in range(submits)],
                                                 concurrency))
        if statuses.count(200) != submits:
            raise RuntimeError(f"bare app: {sorted(set(statuses))}")
        times = []
        with httpx.Client(base_url=url) as http:
            for i in range(rounds):
                t = time.perf_counter()
                task_id = http.post("/submit", json={"prompt": f"x {i}"}).json()["data"][0]["task_id"]
                http.get(f"/task/{task_id}").json()
                times.append((time.perf_counter() - t) * 1000)
        return rate, statistics.median(times)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/task/0", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=30, help="sequential imagine + upscale pairs")
    ap.add_argument("--submits", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()

    bare_rate, bare_round = bare_figures(args.submits, args.concurrency, args.tasks * 2)
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(Path(tmp) / "a", KEY, workers=2, **UNCAPPED).start()
        try:
            with srv.client() as api:
                until_success(api, api.post(IMAGINE, json={"prompt": "warm up"}).json()["data"][0]["task_id"])
                imagine, upscale, stages = bench_latency(api, args.tasks)
        finally:
            srv.stop()
        srv = Server(Path(tmp) / "b", KEY, workers=0, **UNCAPPED).start()
        try:
            rate = bench_submits(srv.url, args.submits, args.concurrency)
        finally:
            srv.stop()

    up50, im50 = statistics.median(upscale), statistics.median(imagine)
    print(f"bare FastAPI: {bare_rate:.0f} POSTs/s, submit + poll p50 {bare_round:.2f} ms")
    print("| figure | pixelmill | ratio to bare FastAPI |")
    print("|---|---|---|")
    print(f"| accepted submits/s, API only | {rate:.0f} | {rate / bare_rate:.3f} |")
    print(f"| upscale (pick) submit → SUCCESS, p50 | {up50:.1f} ms | {up50 / bare_round:.1f}× |")
    print(f"| imagine 512 px submit → SUCCESS, p50 | {im50:.0f} ms | {im50 / bare_round:.0f}× |")
    print_stages("imagine", stages["imagine"])
    print_stages("upscale", stages["upscale"])


if __name__ == "__main__":
    main()
