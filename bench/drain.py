"""The worker side alone: how fast do in-process workers drain a queue of upscale picks?

``bench/peers.py`` measures the drain while the submits still arrive, so the API and the workers
share the two cores. This one separates them: a server makes one grid; an API-only server
(``PIXELMILL_WORKERS=0``) on the same data directory accepts ``--jobs`` picks of it; then a server
with ``--workers`` workers starts on that queue, and the clock runs from its first answer to the
last pick's SUCCESS (read from the database, not polled over HTTP).

Run: .venv/bin/python bench/drain.py   (--jobs 1000 --workers 2 --rounds 2)
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

from loadgen import post_json, run
from pixelmill.testing import Server, wait_for
from service import KEY, UNCAPPED

PICK = "/v1/midjourney/generations/upscale"


def drain(jobs: int, workers: int) -> float:
    """Jobs per second."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        srv = Server(data, KEY, workers=2, screening="off", **UNCAPPED).start()
        try:
            with srv.client() as api:
                grid = api.post("/v1/midjourney/generations/imagine", json={"prompt": "a harbour at dawn --seed 1"}).json()["data"][0]["task_id"]
                wait_for(lambda: api.get(f"/v1/midjourney/{grid}").json()["status"] == "SUCCESS", timeout=60, what="the grid")
        finally:
            srv.stop()
        srv = Server(data, KEY, workers=0, screening="off", **UNCAPPED).start()
        try:
            requests = [post_json(srv.url, PICK, {"task_id": grid, "index": 1 + i % 4}, KEY) for i in range(jobs)]
            _, statuses = asyncio.run(run(srv.url, requests, 16))
            assert statuses == [200] * jobs, f"refused submits: {sorted(set(statuses))}"
        finally:
            srv.stop()

        def done() -> int:
            with sqlite3.connect(data / "pixelmill.db", timeout=30) as conn:
                return int(conn.execute("SELECT count(*) FROM tasks WHERE action = 'UPSCALE' AND status = 'SUCCESS'").fetchone()[0])

        srv = Server(data, KEY, workers=workers, screening="off", **UNCAPPED).start()
        try:
            started = time.perf_counter()
            wait_for(lambda: done() >= jobs, timeout=600, interval=0.02, what="the drain")
            return jobs / (time.perf_counter() - started)
        finally:
            srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    rates = [drain(args.jobs, args.workers) for _ in range(args.rounds)]
    print(f"drain of {args.jobs:,} queued picks, {args.workers} in-process workers, SQLite: "
          + ", ".join(f"{rate:.0f}" for rate in rates) + " jobs/s")


if __name__ == "__main__":
    main()
