"""Several API processes on one socket (PIXELMILL_API_PROCESSES, serving.py), as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import TEST_KEY
from tests.helpers import Server, wait_for, wait_terminal

IMAGINE = "/v1/midjourney/generations/imagine"


def children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            except OSError:
                continue  # gone meanwhile
            if int(parent) == pid and state != "Z":
                found.append(int(entry.name))
    return found


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def serves(srv: Server, helper: int, path: str) -> bool:
    """Whether ``helper`` answers requests: 20 at a time, each on a new connection, until its
    CPU time has grown by 50 ms since the first (an idle helper uses about 4 ms a second)."""
    start = cpu_ticks(helper)

    def answered() -> bool:
        for _ in range(20):
            with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=30) as one:
                assert one.get(path).status_code == 200
        return cpu_ticks(helper) - start >= 5

    return bool(wait_for(answered, timeout=120, what=f"process {helper} to answer requests"))


def test_api_processes_share_the_socket_a_helper_that_dies_is_replaced_and_all_end_together(tmp_path: Path) -> None:
    # The workers look for work on their own every 10 minutes: a task submitted to the helper
    # starts at once only because the helper's commit wakes them (queue/signals.py).
    srv = Server(tmp_path, TEST_KEY, api_processes=2, worker_poll_seconds=600).start()
    try:
        assert srv.proc is not None
        serving = srv.proc.pid
        (helper,) = wait_for(lambda: children(serving), timeout=30, what="the helper process")
        with srv.client() as api:
            polled = api.post(IMAGINE, json={"prompt": "polled"}).json()["data"][0]["task_id"]
        # Connections are accepted by whichever process takes them first; once the helper runs,
        # it takes some.
        assert serves(srv, helper, f"/v1/midjourney/{polled}")
        ids = []
        for i in range(12):
            with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=30) as one:
                ids.append(one.post(IMAGINE, json={"prompt": f"a lighthouse {i}"}).json()["data"][0]["task_id"])
        with srv.client() as api:
            assert {wait_terminal(api, i, timeout=60)["status"] for i in ids} == {"SUCCESS"}

        os.kill(helper, signal.SIGKILL)
        (again,) = wait_for(lambda: [p for p in children(serving) if p != helper], timeout=60, what="a new helper")
        assert serves(srv, again, f"/v1/midjourney/{polled}")

        srv.stop()  # SIGTERM: the helpers end with the serving process
        wait_for(lambda: not alive(again), timeout=30, what="the helper to end")
    finally:
        srv.stop()


def test_helpers_end_when_the_serving_process_is_killed(tmp_path: Path) -> None:
    srv = Server(tmp_path, TEST_KEY, api_processes=3, workers=0).start()
    try:
        assert srv.proc is not None
        pid = srv.proc.pid
        helpers = wait_for(lambda: len(children(pid)) == 2 and children(pid), timeout=30, what="two helpers")
        srv.kill()  # SIGKILL: no shutdown code runs in it
        wait_for(lambda: not any(alive(p) for p in helpers), timeout=30, what="the helpers to end with it")
    finally:
        srv.stop()


def test_a_second_server_on_a_taken_port_is_refused_in_one_line(tmp_path: Path) -> None:
    srv = Server(tmp_path / "a", TEST_KEY, api_processes=2).start()
    try:
        other = Server(tmp_path / "b", TEST_KEY, api_processes=2)
        other.port, other.url = srv.port, srv.url
        done = subprocess.run([sys.executable, "-m", "pixelmill", "serve"], env=other.environ(), capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 78
        assert f"cannot listen on 127.0.0.1:{srv.port}" in done.stderr and "in use" in done.stderr
    finally:
        srv.stop()
