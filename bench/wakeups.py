"""Wake-ups across processes (issue 18; on SQLite, issue 20): an API process with no workers
(PIXELMILL_WORKERS=0) and a separate `pixelmill worker`, on a fresh PostgreSQL database (or,
with --sqlite, the server's own SQLite file: wake-ups through queue/signals.py's HostChannel).

Prints, over N sequential imagine tasks:
- submit → worker start: the task's start_time - submit_time (both by the database's clock), p50/p95;
  before LISTEN/NOTIFY a separate worker found new work at its next poll (every 0.5 s);
- change in another process → event stream: an SSE stream is open in the API process; another
  process claims the task through the same TaskStore a worker uses; ms from that commit to the
  stream's IN_PROGRESS event, p50/p95.

Run: .venv/bin/python bench/wakeups.py --tasks 50   (--sqlite)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import threading
import time
from pathlib import Path

import httpx

from pixelmill.clock import clock_for
from pixelmill.db.engine import make_engine
from pixelmill.queue.signals import ChangeFeed, HostChannel, Signals, Wakeup
from pixelmill.queue.store import TaskStore
from pixelmill.tasks.actions import Lane
from pixelmill.tasks.record import TaskResult
from pixelmill.testing import Server, wait_for
from service import pct, pg_database

KEY = "pm_wakeup_" + "w" * 32


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=50)
    ap.add_argument("--sqlite", action="store_true", help="the server's SQLite file instead of PostgreSQL")
    args = ap.parse_args()
    with (contextlib.nullcontext(None) if args.sqlite else pg_database("pixelmill_wakeups")) as pg, tempfile.TemporaryDirectory() as tmp:
        url = pg or f"sqlite:///{Path(tmp) / 'pixelmill.db'}"
        srv = Server(Path(tmp), KEY, database_url=url, workers=0, screening="off", rate_per_minute=0,
                     max_concurrent_tasks=0, procedural_delay_ms=0).start()
        try:
            with srv.client() as api:
                with srv.worker("--concurrency", "2"):
                    starts = submit_to_start(api, args.tasks)
                streams = change_to_stream(api, url, args.tasks)
        finally:
            srv.stop()
    print(f"submit -> worker start (separate process)   p50 {pct(starts, 50):6.1f} ms   p95 {pct(starts, 95):6.1f} ms   ({len(starts)} tasks)")
    print(f"change in another process -> SSE event      p50 {pct(streams, 50):6.1f} ms   p95 {pct(streams, 95):6.1f} ms   ({len(streams)} tasks)")


def submit_to_start(api: httpx.Client, n: int) -> list[float]:
    """The task's own start_time - submit_time (the database's clock), one task at a time."""
    starts: list[float] = []
    for i in range(n + 1):
        task_id = api.post("/v1/midjourney/generations/imagine", json={"prompt": f"a bench lake {i}"}).json()["data"][0]["task_id"]
        task = wait_for(lambda task_id=task_id: (t := api.get(f"/v1/midjourney/{task_id}?wait=10").json())["status"] == "SUCCESS" and t,
                        timeout=120, what="the task")
        if i:  # the first one warms the worker up
            starts.append(task["start_time"] - task["submit_time"])
    return starts


def change_to_stream(api: httpx.Client, url: str, n: int) -> list[float]:
    """A stream open in the API process; another process (this one, through the same TaskStore a
    worker uses) claims the task: ms from that commit to the stream's IN_PROGRESS event."""
    engine = make_engine(url)
    postgres = engine.dialect.name == "postgresql"
    signals = Signals(postgres, ChangeFeed(fallback_seconds=30, max_streams=1), Wakeup(), Wakeup())
    channel = None if postgres else HostChannel(HostChannel.directory_for(str(engine.url.database)), signals)
    if channel is not None:
        assert channel.start()
    store = TaskStore(engine, clock_for(engine), signals=signals)
    latencies: list[float] = []
    with httpx.Client(base_url=str(api.base_url), headers=dict(api.headers), timeout=60) as sse:
        for i in range(n + 1):
            task_id = api.post("/v1/midjourney/generations/imagine", json={"prompt": f"a bench harbour {i}"}).json()["data"][0]["task_id"]
            seen: dict[str, float] = {}
            opened, done = threading.Event(), threading.Event()

            def listen(task_id: str = task_id, seen: dict[str, float] = seen, opened: threading.Event = opened,
                       done: threading.Event = done) -> None:
                with sse.stream("GET", f"/v1/midjourney/{task_id}/events") as stream:
                    for line in stream.iter_lines():
                        if line.startswith("data: "):
                            status = json.loads(line[6:])["status"]
                            seen.setdefault(status, time.perf_counter())
                            opened.set()
                            if status == "IN_PROGRESS":
                                break
                done.set()

            threading.Thread(target=listen, daemon=True).start()
            assert opened.wait(30), "the stream did not open"
            claimed = store.claim("bench-worker", [Lane.INTERACTIVE], 30)
            committed = time.perf_counter()
            assert claimed is not None and claimed.id == task_id
            assert done.wait(30), "the stream saw no change"
            store.complete(task_id, "bench-worker", TaskResult())
            if i:
                latencies.append((seen["IN_PROGRESS"] - committed) * 1000)
    if channel is not None:
        channel.stop()
    engine.dispose()
    return latencies


if __name__ == "__main__":
    main()
