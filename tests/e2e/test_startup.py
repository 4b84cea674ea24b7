"""``pixelmill serve`` with a setting that cannot work: the real process exits at once with status
78 (EX_CONFIG) and one line on stderr naming the variable, the value and the rule; no traceback,
and no task ever fails for it later."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(("name", "value", "line"), [
    ("PIXELMILL_OUTPUT_PROFILES", '{"poster": {"size": "300x200"}}',
     """pixelmill: PIXELMILL_OUTPUT_PROFILES='{"poster": {"size": "300x200"}}': profile 'poster': size: must be [width, height] in pixels, e.g. [1200, 800]; got '300x200'"""),
    ("PIXELMILL_OUTPUT_PROFILES", '{"tiny": {"max_bytes": 200}}',
     """pixelmill: PIXELMILL_OUTPUT_PROFILES='{"tiny": {"max_bytes": 200}}': profile 'tiny': max_bytes: Input should be greater than or equal to 1024"""),
    ("PIXELMILL_ENGINES", '{"procedural": {"kind": "procedural", "delay_ms": "slow"}}',
     """pixelmill: PIXELMILL_ENGINES='{"procedural": {"kind": "procedural", "delay_ms": "slow"}}': engine 'procedural': delay_ms must be whole milliseconds, 0-600000; got 'slow'"""),
])
def test_serve_stops_at_start_with_one_line(tmp_path: Path, name: str, value: str, line: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXELMILL_")}
    env.update({"PIXELMILL_DATA_DIR": str(tmp_path), "PIXELMILL_PORT": "0", name: value})
    done = subprocess.run([sys.executable, "-m", "pixelmill", "serve"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 78
    assert done.stderr.strip().splitlines() == [line] and done.stdout == ""
    assert "Traceback" not in done.stderr
