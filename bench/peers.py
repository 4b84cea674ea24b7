"""pixelmill against the queues a team would otherwise build on (issue 20's peer harness).

Systems, each started fresh for every round, the rounds interleaved so that a slow moment of the
machine falls on all of them alike:
- pixelmill on SQLite (the default) and on PostgreSQL: ``pixelmill serve`` with 2 workers; the job
  is its cheapest real task, an upscale pick of a grid made once per server;
- FastAPI + Celery + Redis (bench/peers/celery_app.py): a Celery worker, prefork, concurrency 2;
- FastAPI + procrastinate on PostgreSQL (bench/peers/procrastinate_app.py): concurrency 2.
Every API runs on the same uvicorn (uvloop, httptools, one process). The peers run from a throwaway
venv (``--venv``, made on first use: pip install fastapi uvicorn celery[redis] procrastinate psycopg).

Per system and round it measures:
- latency: one job at a time, HTTP submit then a poll every 5 ms until done: p50, p95;
- accepted submits/s: ``--jobs`` submits over 16 keep-alive connections (bench/loadgen.py);
- drain jobs/s: those jobs, from the first submit until the last is done.

Run: .venv/bin/python bench/peers.py   (--rounds 5, --jobs 1000, --latency-jobs 50)
Needs Redis on 127.0.0.1:6379 (database 15 is flushed) and PostgreSQL on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

import loadgen
from pixelmill.testing import Server, free_port, wait_for
from service import KEY, UNCAPPED, pct, pg_database

HERE = Path(__file__).resolve().parent
REDIS_DB = 15
POLL_SECONDS = 0.005
PEER_PACKAGES = ["fastapi>=0.110", "uvicorn[standard]>=0.29", "celery[redis]>=5.3", "procrastinate>=2.0", "psycopg[binary,pool]>=3.1"]


@dataclass
class Running:
    """A started system: where to submit, how to ask about a job, how many jobs are done."""

    url: str
    submit_path: str
    body: Callable[[int], dict]
    headers: dict[str, str]
    status_path: Callable[[str], str]
    job_id: Callable[[dict], str]
    done: Callable[[dict], bool]
    done_count: Callable[[], int]


def _count(url: str, sql: str) -> Callable[[], int]:
    engine = create_engine(url)

    def count() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar_one())

    return count


@contextmanager
def pixelmill(database: str, processes: int = 1) -> Iterator[Running]:
    with tempfile.TemporaryDirectory() as tmp, (pg_database("pixelmill_peers") if database == "postgresql" else _nothing()) as pg_url:
        env = {"workers": 2, "screening": "off", "api_processes": processes, **UNCAPPED}
        if pg_url:
            env["database_url"] = pg_url
        srv = Server(Path(tmp), KEY, **env).start()
        try:
            with srv.client() as api:
                grid = api.post("/v1/midjourney/generations/imagine", json={"prompt": "a harbour at dawn --seed 1"}).json()["data"][0]["task_id"]
                wait_for(lambda: api.get(f"/v1/midjourney/{grid}").json()["status"] == "SUCCESS", timeout=60, what="the grid")
            picks = "SELECT count(*) FROM tasks WHERE action = 'UPSCALE' AND status = 'SUCCESS'"
            if pg_url:
                done_count = _count(pg_url, picks)
            else:
                path = Path(tmp) / "pixelmill.db"

                def done_count() -> int:
                    with sqlite3.connect(path, timeout=30) as conn:
                        return int(conn.execute(picks).fetchone()[0])

            yield Running(
                url=srv.url, submit_path="/v1/midjourney/generations/upscale",
                body=lambda i: {"task_id": grid, "index": 1 + i % 4}, headers={"Authorization": f"Bearer {KEY}"},
                status_path=lambda job: f"/v1/midjourney/{job}", job_id=lambda answer: answer["data"][0]["task_id"],
                done=lambda status: status["status"] == "SUCCESS", done_count=done_count,
            )
        finally:
            srv.stop()


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def _uvicorn(venv: Path, module: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(venv / "bin/python"), "-m", "uvicorn", f"{module}:app", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
         "--no-access-log", "--log-level", "warning"], cwd=HERE / "peers", env=env,
    )


def _stop(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _ready(url: str) -> None:
    wait_for(lambda: _answers(url), timeout=60, what=f"{url} to answer")


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def celery(venv: Path) -> Iterator[Running]:
    redis = f"redis://127.0.0.1:6379/{REDIS_DB}"
    subprocess.run(["redis-cli", "-n", str(REDIS_DB), "flushdb"], check=True, capture_output=True)
    env = {**os.environ, "PEERS_REDIS_URL": redis}
    port = free_port()
    api = _uvicorn(venv, "celery_app", port, env)
    worker = subprocess.Popen([str(venv / "bin/celery"), "-A", "celery_app:queue", "worker", "--pool", "prefork", "-c", "2",
                               "-l", "warning"], cwd=HERE / "peers", env=env, stdout=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        _ready(url)

        def done_count() -> int:
            out = subprocess.run(["redis-cli", "-n", str(REDIS_DB), "eval", "return #redis.call('keys', 'celery-task-meta-*')", "0"],
                                 check=True, capture_output=True, text=True).stdout
            return int(out.strip() or 0)

        yield Running(url=url, submit_path="/jobs", body=lambda i: {"n": i}, headers={}, status_path=lambda job: f"/jobs/{job}",
                      job_id=lambda answer: answer["id"], done=lambda status: status["status"] == "SUCCESS", done_count=done_count)
    finally:
        _stop(api, worker)


@contextmanager
def procrastinate(venv: Path) -> Iterator[Running]:
    with pg_database("procrastinate_peers") as url:
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        env = {**os.environ, "PEERS_PG_DSN": dsn, "PYTHONPATH": str(HERE / "peers")}  # the CLI does not look in its cwd
        cli = [str(venv / "bin/procrastinate"), "--app=procrastinate_app.queue"]
        subprocess.run([*cli, "schema", "--apply"], cwd=HERE / "peers", env=env, check=True, capture_output=True)
        port = free_port()
        api = _uvicorn(venv, "procrastinate_app", port, env)
        worker = subprocess.Popen([*cli, "worker", "--concurrency", "2"], cwd=HERE / "peers", env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            _ready(base)
            yield Running(url=base, submit_path="/jobs", body=lambda i: {"n": i}, headers={}, status_path=lambda job: f"/jobs/{job}",
                          job_id=lambda answer: str(answer["id"]), done=lambda status: status["status"] == "SUCCESS",
                          done_count=_count(url, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"))
        finally:
            _stop(api, worker)


def latency(system: Running, jobs: int) -> list[float]:
    times = []
    with httpx.Client(base_url=system.url, headers=system.headers, timeout=30) as client:
        for i in range(jobs):
            started = time.perf_counter()
            answer = client.post(system.submit_path, json=system.body(i))
            answer.raise_for_status()
            path = system.status_path(system.job_id(answer.json()))
            wait_for(lambda path=path: system.done(client.get(path).json()), timeout=60, interval=POLL_SECONDS, what=path)
            times.append((time.perf_counter() - started) * 1000)
    return times


def throughput(system: Running, jobs: int) -> tuple[float, float]:
    """(accepted submits/s, drain jobs/s) of ``jobs`` submits over 16 connections."""
    before = system.done_count()
    token = system.headers.get("Authorization", "").removeprefix("Bearer ")
    requests = [loadgen.post_json(system.url, system.submit_path, system.body(i), token) for i in range(jobs)]
    if not token:  # the peers take no key
        requests = [r.replace(b"Authorization: Bearer \r\n", b"") for r in requests]
    started = time.perf_counter()
    rate, statuses = asyncio.run(loadgen.run(system.url, requests, 16))
    accepted = sum(s == 200 for s in statuses)
    if accepted != jobs:
        raise RuntimeError(f"only {accepted}/{jobs} submits accepted: {sorted(set(statuses))}")
    wait_for(lambda: system.done_count() - before >= jobs, timeout=600, interval=0.05, what="the jobs to drain")
    return rate, jobs / (time.perf_counter() - started)


def ensure_venv(venv: Path) -> None:
    if (venv / "bin/celery").exists() and (venv / "bin/procrastinate").exists():
        return
    print(f"making the peers' venv in {venv} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/pip"), "install", "-q", *PEER_PACKAGES], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--latency-jobs", type=int, default=50)
    ap.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "pm-peers-venv")
    ap.add_argument("--only", nargs="*", help="systems to run (default: all)")
    args = ap.parse_args()
    ensure_venv(args.venv)
    systems: dict[str, Callable[[], object]] = {
        "pixelmill, SQLite (default)": lambda: pixelmill("sqlite"),
        "pixelmill, PostgreSQL": lambda: pixelmill("postgresql"),
        "pixelmill, SQLite, 2 API processes": lambda: pixelmill("sqlite", 2),
        "pixelmill, PostgreSQL, 2 API processes": lambda: pixelmill("postgresql", 2),
        "FastAPI + Celery + Redis": lambda: celery(args.venv),
        "FastAPI + procrastinate (PostgreSQL)": lambda: procrastinate(args.venv),
    }
    chosen = [name for name in systems if not args.only or any(o.lower() in name.lower() for o in args.only)]
    results: dict[str, dict[str, list[float]]] = {name: {"lat": [], "rate": [], "drain": []} for name in chosen}
    for round_ in range(1, args.rounds + 1):
        for name in chosen:
            with systems[name]() as system:  # type: ignore[attr-defined]
                times = latency(system, args.latency_jobs)
                rate, drain = throughput(system, args.jobs)
            results[name]["lat"] += times
            results[name]["rate"].append(rate)
            results[name]["drain"].append(drain)
            print(f"round {round_}: {name}: p50 {statistics.median(times):.1f} ms, {rate:.0f} submits/s, {drain:.0f} jobs/s", flush=True)
    print(f"\n{args.rounds} interleaved rounds; latency over {args.rounds * args.latency_jobs} jobs, rates the median of the rounds")
    print("| system | p50 ms | p95 ms | submits/s | drain jobs/s |")
    print("|---|---|---|---|---|")
    for name in chosen:
        r = results[name]
        print(f"| {name} | {pct(r['lat'], 50):.1f} | {pct(r['lat'], 95):.1f} | {statistics.median(r['rate']):.0f} | {statistics.median(r['drain']):.0f} |")


if __name__ == "__main__":
    main()
