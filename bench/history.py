"""Does a submit, a claim or a completion cost more as finished work piles up?

A deployment keeps its finished tasks for the retention period (30 days by default): hundreds of
thousands of rows in a busy lane. Each accepting transaction checks the lane's queue limit and
the key's concurrency cap and places the task in the fair order; each claim finds the lane's
next place. None of that may walk the history.

For each history size this fills a fresh database (SQLite by default, ``--postgres`` for a fresh
PostgreSQL database) with that many finished tasks of the key in the interactive lane, then times,
in-process and single-threaded: an imagine submit through ``TaskService.imagine`` (auth and
validation are left out: they do not touch the tasks table), a claim through ``TaskStore.claim``
and its completion through ``TaskStore.complete``. The history is written with multi-row
INSERTs, not through the API, so a million-row history takes seconds.

Run: .venv/bin/python bench/history.py   (--sizes 0 10000 100000 --submits 300)
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

from pixelmill.auth.keys import Principal
from pixelmill.db.engine import write_tx
from pixelmill.db.schema import tasks
from pixelmill.runtime import build_runtime
from pixelmill.settings import Settings
from pixelmill.tasks.actions import Lane
from pixelmill.tasks.record import TaskResult
from pixelmill.tasks.requests import ImagineRequest
from service import pg_database

CHUNK = 5_000


def fill(runtime, principal: Principal, finished: int) -> None:  # type: ignore[no-untyped-def]
    """``finished`` SUCCESS tasks of ``principal`` in the interactive lane, oldest first."""
    now = int(time.time() * 1000) - finished
    base = {
        "tenant_id": principal.tenant_id, "action": "IMAGINE", "status": "SUCCESS", "progress": 100, "prompt": "p",
        "final_prompt": "p", "description": "", "params": {}, "engine": "procedural", "quota": 1, "lane": "interactive",
        "priority": 0, "attempt": 1, "max_attempts": 3, "errors": [], "watched": False, "api_key_id": principal.key_id,
    }
    for start in range(0, finished, CHUNK):
        rows = [
            {**base, "id": f"{now + i:013d}{i % 10_000_000:07d}", "submit_time": now + i, "scheduled_at": now + i,
             "finish_time": now + i, "fair_seq": i}
            for i in range(start, min(finished, start + CHUNK))
        ]
        with write_tx(runtime.db) as conn:
            conn.execute(insert(tasks), rows)


def measure(database_url: str | None, data_dir: Path, finished: int, submits: int) -> tuple[float, float, float]:
    """(submit ms, claim ms, complete ms), medians."""
    settings = Settings(data_dir=data_dir, workers=0, screening="off", rate_per_minute=0,
                        **({"database_url": database_url} if database_url else {}))
    runtime = build_runtime(settings)
    try:
        _, plaintext = runtime.keys.create(tenant_id="acme")
        principal = runtime.keys.authenticate(plaintext)
        fill(runtime, principal, finished)
        submit_ms = []
        for i in range(submits):
            t = time.perf_counter()
            runtime.service.imagine(principal, ImagineRequest(prompt=f"a lighthouse {i} --seed 1"))
            submit_ms.append((time.perf_counter() - t) * 1000)
        claim_ms, complete_ms = [], []
        for i in range(submits):
            t = time.perf_counter()
            task = runtime.tasks.claim(f"w{i}", [Lane.INTERACTIVE], 600)
            claim_ms.append((time.perf_counter() - t) * 1000)
            assert task is not None
            t = time.perf_counter()
            assert runtime.tasks.complete(task.id, f"w{i}", TaskResult())
            complete_ms.append((time.perf_counter() - t) * 1000)
        return statistics.median(submit_ms), statistics.median(claim_ms), statistics.median(complete_ms)
    finally:
        runtime.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[0, 10_000, 100_000])
    ap.add_argument("--submits", type=int, default=300)
    ap.add_argument("--postgres", action="store_true", help="a fresh PostgreSQL database per size instead of SQLite")
    args = ap.parse_args()
    logging.getLogger("pixelmill").setLevel(logging.WARNING)  # one line per accepted task otherwise
    print(f"{'database':<10} {'finished tasks':>15} {'submit ms (p50)':>16} {'claim ms (p50)':>15} {'complete ms (p50)':>18}")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp, (pg_database("pixelmill_history") if args.postgres else contextlib.nullcontext()) as url:
            submit, claim, complete = measure(url, Path(tmp), size, args.submits)
        print(f"{'postgresql' if args.postgres else 'sqlite':<10} {size:>15,} {submit:>16.2f} {claim:>15.2f} {complete:>18.2f}", flush=True)


if __name__ == "__main__":
    main()
