#!/usr/bin/env bash
# The first run as a newcomer meets it (issue 17): a fresh clone, an empty pip cache, `make run`.
# Prints the time until the first request is served, the time until its task has succeeded, and
# the size of .venv afterwards. Then checks that `make test` still installs on top (--with-test).
#
#   bash bench/first_run.sh [--with-test]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
git clone -q "$repo" "$work/pixelmill"
cd "$work/pixelmill"
# Nothing from a cache; the interpreter may write bytecode, as on an ordinary machine.
export PIP_NO_CACHE_DIR=1
unset PYTHONDONTWRITEBYTECODE
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key="pm_first_run_$(date +%s)_0123456789"
start=$(date +%s.%N)
PIXELMILL_PORT=$port PIXELMILL_API_KEY=$key make run > "$work/run.log" 2>&1 &
server=$!
task=""
while [ -z "$task" ]; do
  if ! kill -0 "$server" 2>/dev/null; then cat "$work/run.log"; echo "make run exited"; exit 1; fi
  task=$(curl -sf -X POST "http://127.0.0.1:$port/v1/midjourney/generations/imagine" \
           -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
           -d '{"prompt": "a lighthouse at dusk --seed 1"}' 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["task_id"])' 2>/dev/null || true)
  [ -n "$task" ] || sleep 0.2
done
served=$(date +%s.%N)
until curl -sf "http://127.0.0.1:$port/v1/midjourney/$task" -H "Authorization: Bearer $key" | grep -q '"status":"SUCCESS"'; do sleep 0.1; done
done_at=$(date +%s.%N)
size=$(du -sm .venv | cut -f1)
printf 'first request served after %.1f s (task SUCCESS after %.1f s); .venv %d MB\n' \
  "$(echo "$served - $start" | bc)" "$(echo "$done_at - $start" | bc)" "$size"
grep -q "screening" "$work/run.log" && grep "screening" "$work/run.log" || true
kill "$server"; wait "$server" 2>/dev/null || true
if [ "${1:-}" = "--with-test" ]; then
  start=$(date +%s.%N)
  make .venv/.installed-dev > "$work/test-install.log" 2>&1 || { cat "$work/test-install.log"; exit 1; }
  printf 'make test install on top: %.0f s; .venv %d MB\n' "$(echo "$(date +%s.%N) - $start" | bc)" "$(du -sm .venv | cut -f1)"
fi
