"""The chaos run of issue 18: PostgreSQL, S3 (moto behind a gate), 2 API and 3 worker processes,
1,000 mixed tasks from 8 clients while processes are SIGKILLed and restarted, PostgreSQL restarts
once, storage is unreachable for 10 s and one worker's clock runs 60 s ahead. Prints what was lost,
doubled, charged wrongly, delivered out of order or undownloadable (pixelmill/chaos.py).

Run: .venv/bin/python bench/chaos.py --tasks 1000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from pixelmill.chaos import Config, run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--kill-every", type=float, default=4.0)
    ap.add_argument("--postgres-fault", choices=["restart", "terminate"], default="restart")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--keep", type=Path, help="Keep process logs in this folder.")
    args = ap.parse_args()
    config = Config(tasks=args.tasks, clients=args.clients, kill_every=args.kill_every, postgres_fault=args.postgres_fault,
                    seed=args.seed)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        report = run(config, args.keep or Path(tmp))
    for line in report.lines():
        print(line)
    print(f"wall time                   {time.monotonic() - started:.0f} s")
    sys.exit(0 if report.clean else 1)


if __name__ == "__main__":
    main()
