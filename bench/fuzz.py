"""Fuzz the submit endpoints of all three contracts with Schemathesis against a fresh server process.

Generates requests from the OpenAPI schema (valid and invalid bodies, wrong types, odd Unicode,
raw upload bytes) and fails on any 5xx answer. Prints how many cases ran.

Run: make fuzz   (or .venv/bin/python bench/fuzz.py --max-examples 1500)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from pixelmill.testing import Server

KEY = "pm_fuzz_" + "f" * 32


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=1500, help="per operation and phase")
    parser.add_argument("--paths", default="generations|uploads|batches$|^/mj/submit/|^/mj/task/list-by-condition$|^/v1/images/(edits|variations)$",
                        help="regex of the paths to fuzz")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # No queue, rate or concurrency caps: the fuzzer submits thousands of valid tasks too.
        server = Server(Path(tmp), KEY, interactive_queue_limit=10_000_000, rate_per_minute=0, max_concurrent_tasks=0).start()
        try:
            run = subprocess.run(
                [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
                 # /v1/images in its async mode: an accepted request answers at once instead of waiting.
                 "-H", f"Authorization: Bearer {KEY}", "-H", "Prefer: respond-async", "--checks", "not_a_server_error",
                 "--include-path-regex", args.paths, "--max-examples", str(args.max_examples),
                 "--workers", "2", "--suppress-health-check", "all"],
                capture_output=True, text=True, check=False,
            )
        finally:
            server.stop()
        log = server.log.read_text()
    print(run.stdout[-3000:])
    cases = re.search(r"(\d+) generated", run.stdout)
    errors = log.count("unhandled error")
    print(f"fuzz: {cases.group(1) if cases else '?'} cases against {args.paths}; "
          f"schemathesis exit {run.returncode}; server logged {errors} unhandled errors")
    return 0 if run.returncode == 0 and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
