"""The example scripts in examples/ run unchanged against a real server: an ordinary OpenAI
Images script (only OPENAI_BASE_URL and OPENAI_API_KEY point at pixelmill) and a new-api-style
channel loop over /mj."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY
from tests.helpers import Server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("examples"), TEST_KEY, procedural_delay_ms=40).start()
    yield server
    server.stop()


def run(script: str, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PIXELMILL_"))}
    done = subprocess.run([sys.executable, str(EXAMPLES / script)], check=False, env=clean | env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


def test_an_unchanged_openai_script_generates_edits_and_streams(srv: Server) -> None:
    lines = run("openai_images.py", OPENAI_BASE_URL=srv.url + "/v1", OPENAI_API_KEY=TEST_KEY)
    assert lines[0].startswith(f"generate: {srv.url}/files/")
    assert lines[2:4] == ["generate b64: PNG (1536, 1024)"] * 2
    assert lines[4].startswith(f"edit: {srv.url}/files/")
    streamed = [line.split()[1] for line in lines[5:]]
    assert streamed[-1] == "image_generation.completed" and set(streamed[:-1]) == {"image_generation.partial_image"}


def test_a_new_api_style_loop_runs_imagine_upscale_vary_and_inpaint(srv: Server) -> None:
    lines = run("newapi_loop.py", PIXELMILL_URL=srv.url, PIXELMILL_KEY=TEST_KEY, POLL_SECONDS="0.1")
    assert lines[-1] == "done: ['IMAGINE', 'UPSCALE', 'VARIATION', 'INPAINT'] all {'SUCCESS'}"
