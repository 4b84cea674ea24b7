"""Sustained overload (issue 18): one key sends 5× its per-key rate cap for minutes while the
in-process workers generate. Every answer must be 2xx, or 429 with Retry-After; submit latency
must stay low (the refusals are cheap and do not slow the accepted).

Prints answers by status, any answer that is neither, accepted/s against the cap, and the submit
latency p50/p99 of all answers and of the accepted ones.

Run: .venv/bin/python bench/overload.py --minutes 5 --cap 600 --factor 5
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import threading
import time
from pathlib import Path

from pixelmill.testing import Server
from service import pct

KEY = "pm_overload_" + "o" * 32


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--cap", type=int, default=600, help="The key's rate cap, submits per minute.")
    ap.add_argument("--factor", type=float, default=5.0, help="Send this many times the cap.")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="In-process workers generating meanwhile (0: the API process alone).")
    args = ap.parse_args()
    rate = args.cap * args.factor / 60  # submits per second, all threads together
    answers: list[tuple[int, float, bool]] = []  # (status, ms, Retry-After present)
    lock = threading.Lock()
    stop_at = time.monotonic() + args.minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(Path(tmp), KEY, rate_per_minute=args.cap, rate_window_seconds=60, max_concurrent_tasks=0, workers=args.workers,
                     interactive_queue_limit=100_000, screening="off").start()
        try:
            def send(n: int) -> None:
                interval = args.threads / rate
                next_at = time.monotonic() + n * interval / args.threads
                with srv.client() as api:
                    i = 0
                    while (now := time.monotonic()) < stop_at:
                        if now < next_at:
                            time.sleep(next_at - now)
                        next_at += interval
                        started = time.perf_counter()
                        r = api.post("/v1/midjourney/generations/imagine", json={"prompt": f"an overload test {n}-{i}"})
                        ms = (time.perf_counter() - started) * 1000
                        with lock:
                            answers.append((r.status_code, ms, "retry-after" in r.headers))
                        i += 1

            threads = [threading.Thread(target=send, args=(n,)) for n in range(args.threads)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            srv.stop()
    by_status = collections.Counter(status for status, _, _ in answers)
    wrong = [(s, h) for s, _, h in answers if not (200 <= s < 300 or (s == 429 and h))]
    seconds = args.minutes * 60
    every = [ms for _, ms, _ in answers]
    accepted = [ms for s, ms, _ in answers if 200 <= s < 300]
    print(f"sent {len(answers)} submits in {seconds:.0f} s ({len(answers) / seconds:.1f}/s; cap {args.cap}/min = {args.cap / 60:.1f}/s)")
    print(f"answers by status      {dict(sorted(by_status.items()))}")
    print(f"neither 2xx nor 429 with Retry-After: {len(wrong)}")
    print(f"accepted per second    {len(accepted) / seconds:.2f} (cap {args.cap / 60:.2f})")
    print(f"submit latency, all    p50 {pct(every, 50):.1f} ms   p99 {pct(every, 99):.1f} ms")
    if accepted:
        print(f"submit latency, 2xx    p50 {pct(accepted, 50):.1f} ms   p99 {pct(accepted, 99):.1f} ms")


if __name__ == "__main__":
    main()
