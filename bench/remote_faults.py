"""Remote engine under upstream faults (issue 7): N imagine tasks through server B, whose engine
"mj" has server A (procedural) as upstream behind a proxy that fails a share of requests (429,
HTTP 500, code 9, slow answers, dropped connections before and after forwarding).

Prints how every task ended (SUCCESS, FAILURE with refund, anything left waiting), the faults
injected by kind, whether any attempt made an upstream task twice, B's ledger against its tasks,
and submit -> final time p50/p95.

Run: .venv/bin/python bench/remote_faults.py --tasks 200 --rate 0.2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from pixelmill.testing import FaultyProxy, Server, wait_for
from service import pct

KEY_A = "pm_upstream_" + "a" * 32
KEY_B = "pm_frontend_" + "b" * 32


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--rate", type=float, default=0.2)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        a = Server(Path(tmp) / "a", KEY_A, rate_per_minute=0, max_concurrent_tasks=0).start()
        try:
            with FaultyProxy(a.url, rate=args.rate, slow_seconds=0.5, seed=2026) as proxy:
                engines = {"procedural": {"kind": "procedural"}, "mj": {
                    "kind": "remote", "base_url": proxy.url, "api_key": KEY_A, "poll_seconds": 0.2,
                    "backoff_seconds": [0.2, 0.8, 3.2], "max_tries": 4, "submit_per_minute": 100000}}
                # A's result URLs name A itself, not the proxy B calls it through: another origin,
                # fetched without the key and under the address rules, which must allow loopback.
                b = Server(Path(tmp) / "b", KEY_B, engines=json.dumps(engines), engine="mj", workers=args.workers,
                           rate_per_minute=0, max_concurrent_tasks=0, interactive_queue_limit=100000,
                           fetch_allow='["127.0.0.1/32"]').start()
                try:
                    run(a, b, proxy, args)
                finally:
                    b.stop()
        finally:
            a.stop()


def run(a: Server, b: Server, proxy: FaultyProxy, args: argparse.Namespace) -> None:
    start = time.monotonic()
    with b.client() as api:
        ids = [api.post("/v1/midjourney/generations/imagine", json={"prompt": f"a harbour at dusk, boat {i}"}).json()["data"][0]["task_id"]
               for i in range(args.tasks)]

        def final() -> list[dict] | None:  # type: ignore[type-arg]
            tasks = [api.get(f"/v1/midjourney/{t}").json() for t in ids]
            return tasks if all(t["status"] in ("SUCCESS", "FAILURE", "CANCEL") for t in tasks) else None

        tasks = wait_for(final, timeout=1800, interval=2, what="every task to end")
        wall = time.monotonic() - start
        ledger = b.cli("usage").stdout
    ends = Counter(t["status"] for t in tasks)
    refunded = sum(1 for t in tasks if t["status"] != "SUCCESS" and t["quota"] == 0)
    upstream_ids = [t["engine_meta"]["upstream_task_id"] for t in tasks if t["status"] == "SUCCESS"]
    attempts = Counter(len(t["attempts"]) for t in tasks)
    print(f"tasks {args.tasks}, upstream fault rate {args.rate:.0%}, B workers {args.workers}")
    print(f"ended: {dict(ends)}; failures refunded {refunded}/{args.tasks - ends['SUCCESS']}; left waiting 0")
    print(f"faults injected {sum(proxy.injected.values())} of {sum(proxy.injected.values()) + proxy.forwarded} requests: {dict(proxy.injected)}")
    print(f"distinct upstream tasks for {len(upstream_ids)} successes: {len(set(upstream_ids))}")
    print(f"task attempts that failed (retried or final): {dict(sorted(attempts.items()))}")
    durations = [(t["finish_time"] - t["submit_time"]) / 1000 for t in tasks]
    print(f"submit -> final: p50 {pct(durations, 50):.2f} s, p95 {pct(durations, 95):.2f} s; all {args.tasks} in {wall:.1f} s")
    for reason, n in Counter(t["fail_reason"] for t in tasks if t["status"] != "SUCCESS").most_common(5):
        print(f"  {n} x {reason}")
    print(ledger.strip())


if __name__ == "__main__":
    main()
