"""Remote upstreams at gateway scale (issue 21): what a pixelmill in front of an upstream costs.

1. Makespan. Server A is the upstream: ``--upstream-workers`` workers (32), ``--delay-ms`` per image
   (500: about 2 s per imagine). Server B is a pixelmill out of the box, with only
   ``PIXELMILL_ENGINES`` pointing at A. ``--tasks`` imagines (48) go to A directly, then the same
   number through B. Prints both makespans, the ratio B/A and the peak number of A's tasks in
   flight during B's run. With ``--own-cores`` A keeps to one half of the cores and B to the other,
   as when the upstream runs on hosts of its own (it does, in every real deployment: here A is a
   pixelmill drawing with the CPU, and on shared cores B's post-processing slows A's drawing).
2. Waiting. A has no workers, so upstream tasks never end; ``--waiting`` imagines (1,000) go
   through one B process. Once all wait upstream, prints B's extra memory (RSS against before the
   submits), B's CPU while they wait, and B's poll requests per second sent upstream
   (``pixelmill_upstream_polls_total``), over ``--window`` seconds. Twice: B polling every task
   every 3 s, then with ``callbacks`` (the upstream calls back; B polls every 60 s as a fallback).
3. Crash. A has no workers; ``--crash`` imagines (100) wait upstream through B, behind a proxy
   that counts submits. B is killed with SIGKILL and started again, then A's workers start.
   Prints how many tasks succeeded, how many distinct upstream tasks they came from, and how many
   submits reached A (each task's should be one).

``--contract midjourney-proxy`` runs all three with B speaking midjourney-proxy's ``/mj`` to A
(waiting tasks are then polled in batches through ``list-by-condition``).

Run: .venv/bin/python bench/remote_capacity.py [--tasks 48] [--waiting 1000] [--crash 100]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from pixelmill.testing import FaultyProxy, Server, wait_for
from service import UNCAPPED

KEY_A = "pm_upstream_" + "a" * 32
KEY_B = "pm_frontend_" + "b" * 32
IMAGINE = "/v1/midjourney/generations/imagine"
ACTIVE = "SELECT count(*) FROM tasks WHERE status IN ('NOT_START', 'SUBMITTED', 'IN_PROGRESS')"


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        return int(conn.execute(sql).fetchone()[0])


CONTRACT = "seed004"


def _engines(a: Server | str, **knobs: Any) -> str:
    url = a if isinstance(a, str) else a.url
    return json.dumps({"mj": {"kind": "remote", "base_url": url, "api_key": KEY_A, "contract": CONTRACT, **knobs}})


def _submit_all(srv: Server, n: int, prompt: str) -> list[str]:
    with srv.client() as api:
        return [api.post(IMAGINE, json={"prompt": f"{prompt} {i}"}).json()["data"][0]["task_id"] for i in range(n)]


def _finish_all(srv: Server, ids: list[str], timeout: float) -> None:
    """Wait as a client waiting on many tasks would: one ``list-by-ids`` call every 0.1 s (a
    GET per task per look cost the server under test more CPU than the tasks did)."""
    tasks: list[dict[str, Any]] = []
    with srv.client() as api:
        def done() -> bool:
            tasks[:] = api.post("/v1/midjourney/list-by-ids", json={"ids": ids}).json()["data"]
            return len(tasks) == len(ids) and all(task["status"] in ("SUCCESS", "FAILURE", "CANCEL") for task in tasks)

        wait_for(done, timeout=timeout, interval=0.1, what="every task to end")
    failed = [task for task in tasks if task["status"] != "SUCCESS"]
    if failed:
        raise RuntimeError(f"{len(failed)} tasks did not succeed, e.g. {failed[0]['task_id']}: {failed[0].get('fail_reason')}")


def _pin(pid: int, cpus: set[int]) -> None:
    """Keep every thread of process ``pid`` on ``cpus`` (threads it starts later inherit it)."""
    for _ in range(2):  # again, for a thread started while the first pass ran
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                os.sched_setaffinity(int(task.name), cpus)
            except OSError:  # the thread ended meanwhile
                pass


def makespan(tmp: Path, args: argparse.Namespace) -> None:
    cores = sorted(os.sched_getaffinity(0))
    halves = (set(cores[: len(cores) // 2]), set(cores[len(cores) // 2 :]))
    if args.own_cores and len(cores) < 2:
        raise SystemExit("--own-cores needs at least 2 cores to split between A and B")
    a = Server(tmp / "a", KEY_A, workers=args.upstream_workers, procedural_delay_ms=args.delay_ms, **UNCAPPED).start()
    if args.own_cores:
        assert a.proc is not None
        _pin(a.proc.pid, halves[0])
    try:
        started = time.monotonic()
        _finish_all(a, _submit_all(a, args.tasks, "a quiet harbour, direct"), timeout=600)
        direct = time.monotonic() - started
        # A's renditions of those tasks come after their SUCCESS: done before B's run starts.
        wait_for(lambda: _count(a.data_dir / "pixelmill.db", "SELECT count(*) FROM finishing") == 0, timeout=300,
                 interval=0.1, what="A's renditions")

        # Out of the box: only the engine configured (--lean: what B's own post-processing costs).
        lean = {"screening": "off", "renditions": "[]"} if args.lean else {}
        b = Server(tmp / "b", KEY_B, engines=_engines(a, **({"poll_seconds": args.poll_seconds} if args.poll_seconds else {})), engine="mj", **lean).start()
        if args.own_cores:
            assert b.proc is not None
            _pin(b.proc.pid, halves[1])
        peak = [0]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak[0] = max(peak[0], _count(a.data_dir / "pixelmill.db", ACTIVE))
                sampling.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        try:
            assert a.proc is not None and b.proc is not None
            cpu_a, cpu_b = _cpu_seconds(a.proc.pid), _cpu_seconds(b.proc.pid)
            started = time.monotonic()
            sampler.start()
            _finish_all(b, _submit_all(b, args.tasks, "a quiet harbour, through B"), timeout=900)
            through = time.monotonic() - started
            cpu_a, cpu_b = _cpu_seconds(a.proc.pid) - cpu_a, _cpu_seconds(b.proc.pid) - cpu_b
        finally:
            sampling.set()
            sampler.join()
            b.stop()
    finally:
        a.stop()
    print(f"{args.tasks} imagines, upstream {args.upstream_workers} workers x {args.delay_ms} ms per image"
          + (" (B with output screening and renditions off)" if args.lean else "")
          + (f" (A on cores {sorted(halves[0])}, B on cores {sorted(halves[1])})" if args.own_cores else ""))
    print(f"  makespan direct to A: {direct:.1f} s; through B (default workers): {through:.1f} s; ratio B/A {through / direct:.2f}")
    print(f"  peak upstream tasks in flight during B's run: {peak[0]}")
    print(f"  CPU during B's run: A {cpu_a:.1f} s, B {cpu_b:.1f} s (the machine has {os.cpu_count()} cores)")


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _polls(client: httpx.Client, metric: str = "pixelmill_upstream_polls_total") -> float:
    text = client.get("/metrics").text
    return sum(float(m.group(1)) for m in re.finditer(rf'^{metric}\{{[^}}]*\}} (\S+)$', text, re.MULTILINE))


def waiting(tmp: Path, args: argparse.Namespace, callbacks: bool) -> None:
    # Accepts, never runs: tasks wait upstream. It calls B back on loopback, which its address rules must allow.
    a = Server(tmp / f"wa{callbacks}", KEY_A, workers=0, fetch_allow='["127.0.0.1/32"]', **UNCAPPED).start()
    knobs: dict[str, Any] = {"submit_per_minute": 1_000_000, "callbacks": callbacks}
    b = Server(tmp / f"wb{callbacks}", KEY_B, engines=_engines(a, **knobs), engine="mj", **UNCAPPED)
    b.env["PUBLIC_URL"] = b.url
    b.start()
    try:
        assert b.proc is not None
        pid = b.proc.pid
        with b.client() as api:  # warm: the first request loads what serving needs
            api.get("/metrics")
        before = _rss_mb(pid)
        _submit_all(b, args.waiting, "a lantern in the rain")
        accepted = "SELECT count(*) FROM tasks WHERE status = 'IN_PROGRESS' AND lease_owner = 'upstream'"
        wait_for(lambda: _count(b.data_dir / "pixelmill.db", accepted) == args.waiting, timeout=900, interval=0.5,
                 what=f"all {args.waiting} tasks to wait upstream")
        with b.client() as api:
            requests = "pixelmill_upstream_poll_requests_total"
            cpu0, polls0, calls0, t0 = _cpu_seconds(pid), _polls(api), _polls(api, requests), time.monotonic()
            time.sleep(args.window)  # a measuring window, not synchronisation
            cpu1, polls1, calls1, t1 = _cpu_seconds(pid), _polls(api), _polls(api, requests), time.monotonic()
        rss = _rss_mb(pid)
        parked = _count(b.data_dir / "pixelmill.db", accepted)
    finally:
        b.stop()
        a.stop()
    elapsed = t1 - t0
    how = "the upstream calls back, B polls every 60 s as a fallback" if callbacks else "B polls each every 3 s"
    print(f"{args.waiting} upstream tasks waiting in one B process ({how}; {parked} still parked at the end)")
    print(f"  extra memory: {rss - before:.0f} MB (RSS {before:.0f} -> {rss:.0f} MB)")
    print(f"  CPU while waiting: {100 * (cpu1 - cpu0) / elapsed:.1f} % of a core over {elapsed:.0f} s")
    print(f"  tasks polled upstream: {(polls1 - polls0) / elapsed:.0f}/s, in {(calls1 - calls0) / elapsed:.0f} requests/s")


def crash(tmp: Path, args: argparse.Namespace) -> None:
    a = Server(tmp / "ca", KEY_A, workers=0, **UNCAPPED).start()
    with FaultyProxy(a.url, rate=0) as proxy:
        # A's result URLs name A itself, not the proxy: another origin, fetched under the address rules.
        b = Server(tmp / "cb", KEY_B, engines=_engines(proxy.url, submit_per_minute=1_000_000), engine="mj", fetch_allow='["127.0.0.1/32"]', **UNCAPPED)
        try:
            b.start()
            ids = _submit_all(b, args.crash, "a lighthouse in a storm")
            accepted = "SELECT count(*) FROM upstream_tasks WHERE upstream_id IS NOT NULL"
            wait_for(lambda: _count(b.data_dir / "pixelmill.db", accepted) == args.crash, timeout=600, interval=0.2,
                     what=f"all {args.crash} tasks to wait upstream")
            b.kill()
            b.start()
            started = time.monotonic()
            with a.worker("--concurrency", "8"):
                _finish_all(b, ids, timeout=900)
            took = time.monotonic() - started
            with b.client() as api:
                upstream_ids = {api.get(f"/v1/midjourney/{t}").json()["engine_meta"]["upstream_task_id"] for t in ids}
        finally:
            b.stop()
            a.stop()
    keys = proxy.submits
    print(f"kill -9 of B with {args.crash} upstream tasks waiting, then a restart ({CONTRACT})")
    print(f"  {len(ids)} of {args.crash} succeeded in {took:.0f} s after the restart, from {len(upstream_ids)} distinct upstream tasks")
    print(f"  submits that reached A: {len(keys)} ({len(set(keys))} distinct keys, all first attempts: {all(k and k.endswith('-1') for k in keys)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=48)
    ap.add_argument("--upstream-workers", type=int, default=32)
    ap.add_argument("--delay-ms", type=int, default=500)
    ap.add_argument("--waiting", type=int, default=1000)
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--crash", type=int, default=100)
    ap.add_argument("--lean", action="store_true", help="makespan with B's output screening and renditions off")
    ap.add_argument("--own-cores", action="store_true",
                    help="makespan with A and B each on half of the cores, as on two hosts (A's direct run too)")
    ap.add_argument("--poll-seconds", type=float, help="makespan with B polling A this often (default: the engine's 3 s)")
    ap.add_argument("--contract", choices=["seed004", "midjourney-proxy"], default="seed004")
    ap.add_argument("--only", choices=["makespan", "waiting", "crash"])
    args = ap.parse_args()
    global CONTRACT
    CONTRACT = args.contract
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "makespan"):
            makespan(Path(tmp), args)
        if args.only in (None, "waiting"):
            waiting(Path(tmp), args, callbacks=False)
            waiting(Path(tmp), args, callbacks=True)
        if args.only in (None, "crash"):
            crash(Path(tmp), args)


if __name__ == "__main__":
    main()
