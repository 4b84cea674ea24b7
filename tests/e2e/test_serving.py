"""Several API processes on one port (PIXELMILL_API_PROCESSES, serving.py), as a user runs them."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from pixelmill.testing import listening_sockets
from tests.conftest import TEST_KEY
from tests.helpers import Server, wait_for, wait_terminal

IMAGINE = "/v1/midjourney/generations/imagine"


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
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


def test_two_api_processes_share_the_port_and_a_helper_that_dies_is_replaced(tmp_path: Path) -> None:
    srv = Server(tmp_path, TEST_KEY, api_processes=2).start()
    try:
        assert srv.proc is not None
        serving = srv.proc.pid
        (helper,) = children(serving)  # start() waited for both processes to listen
        with srv.client() as api:
            polled = api.post(IMAGINE, json={"prompt": "polled"}).json()["data"][0]["task_id"]
        before = cpu_ticks(helper)
        # New connections are spread over both processes by the kernel.
        for _ in range(60):
            with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=30) as one:
                assert one.get(f"/v1/midjourney/{polled}").status_code == 200
        assert cpu_ticks(helper) - before >= 3, "the helper answered none of 60 new connections"
        # Tasks submitted to the helper run on the first process's workers, woken at once.
        ids = []
        for i in range(8):
            with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=30) as one:
                ids.append(one.post(IMAGINE, json={"prompt": f"a lighthouse {i}"}).json()["data"][0]["task_id"])
        with srv.client() as api:
            assert {wait_terminal(api, i, timeout=120)["status"] for i in ids} == {"SUCCESS"}

        os.kill(helper, signal.SIGKILL)
        wait_for(lambda: [p for p in children(serving) if p != helper and alive(p)] and listening_sockets(srv.port) == 2, timeout=60,
                 what="a new helper listening")
        with srv.client() as api:
            assert api.post(IMAGINE, json={"prompt": "after the restart"}).status_code == 200
        helpers = children(serving)
        assert helpers
        srv.stop()  # SIGTERM: the helpers end with the serving process
        wait_for(lambda: not any(alive(p) for p in helpers), timeout=30, what="the helpers to end")
    finally:
        srv.stop()


def test_helpers_end_when_the_serving_process_is_killed(tmp_path: Path) -> None:
    srv = Server(tmp_path, TEST_KEY, api_processes=3, workers=0).start()
    assert srv.proc is not None
    pid = srv.proc.pid
    helpers = children(pid)  # start() waited for all three processes to listen
    assert len(helpers) == 2
    srv.kill()  # SIGKILL: no shutdown code runs in it
    wait_for(lambda: not any(alive(p) for p in helpers), timeout=30, what="the helpers to end with it")
