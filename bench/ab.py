"""Compare the CPU cost of a request in two versions of pixelmill, side by side.

This shared 2-core machine changes speed by up to 2x within minutes, so a figure taken in one
run and compared with one taken later says little. This starts both versions at once (the
working tree, and a git revision checked out into a temporary worktree), sends the same load to
each in alternating blocks (base, new, new, base, ...), and sums each server process's CPU time
over its own blocks. A slow moment hits both about equally, and the ratio keeps.

    .venv/bin/python bench/ab.py HEAD~1                  # submits (an imagine, API only)
    .venv/bin/python bench/ab.py HEAD~1 --kind poll      # GET of one finished task
    .venv/bin/python bench/ab.py main --concurrency 1 --blocks 10

Prints per version: CPU milliseconds per request, requests/s over its blocks, and new/base.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

import loadgen
from loadgen import post_json
from pixelmill.testing import Server
from service import IMAGINE, KEY, UNCAPPED

REPO = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def requests(kind: str, url: str, task_id: str, block: int, count: int) -> list[bytes]:
    if kind == "submit":
        return [post_json(url, IMAGINE, {"prompt": f"load {block} {i}"}, KEY) for i in range(count)]
    host = url.split("//", 1)[1]
    return [f"GET /v1/midjourney/{task_id} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n\r\n".encode()] * count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", help="the git revision to compare the working tree with")
    ap.add_argument("--kind", choices=["submit", "poll"], default="submit")
    ap.add_argument("--blocks", type=int, default=8, help="blocks per version")
    ap.add_argument("--per-block", type=int, default=250)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree), args.base], check=True)
        servers: dict[str, Server] = {}
        try:
            # PYTHONPATH comes before the editable install's path: each server imports its own tree.
            for name, src in (("base", tree / "src"), ("new", REPO / "src")):
                os.environ["PYTHONPATH"] = str(src)
                servers[name] = Server(Path(tmp) / name, KEY, workers=0, **UNCAPPED).start()
            os.environ.pop("PYTHONPATH")
            task_ids = {}
            for name, srv in servers.items():  # warm up, and a task to poll
                asyncio.run(loadgen.run(srv.url, requests("submit", srv.url, "", -1, 200), args.concurrency))
                answer = httpx.post(srv.url + IMAGINE, json={"prompt": "polled"}, headers={"Authorization": f"Bearer {KEY}"})
                task_ids[name] = answer.json()["data"][0]["task_id"]
            cpu = dict.fromkeys(servers, 0.0)
            wall = dict.fromkeys(servers, 0.0)
            done = dict.fromkeys(servers, 0)
            for block in range(2 * args.blocks):
                name = ("base", "new", "new", "base")[block % 4]
                srv = servers[name]
                assert srv.proc is not None
                load = requests(args.kind, srv.url, task_ids[name], block, args.per_block)
                before, started = cpu_seconds(srv.proc.pid), time.perf_counter()
                _, statuses = asyncio.run(loadgen.run(srv.url, load, args.concurrency))
                cpu[name] += cpu_seconds(srv.proc.pid) - before
                wall[name] += time.perf_counter() - started
                done[name] += statuses.count(200)
                if statuses.count(200) != args.per_block:  # (loadgen empties the list it is given)
                    raise RuntimeError(f"{name}: {sorted(set(statuses))}")
            for name in servers:
                print(f"{name}: {1000 * cpu[name] / done[name]:.2f} ms CPU per {args.kind}, {done[name] / wall[name]:.0f}/s")
            print(f"new/base CPU per request: {(cpu['new'] / done['new']) / (cpu['base'] / done['base']):.3f}")
        finally:
            for srv in servers.values():
                srv.stop()
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)


if __name__ == "__main__":
    sys.exit(main())
