"""How ``pixelmill serve`` listens: one process, or several on one port (``PIXELMILL_API_PROCESSES``).

One Python process runs Python on one core at a time, and an accepted submit is a few
milliseconds of it. With ``api_processes`` N > 1 the serving process starts N-1 helpers, each a
``pixelmill serve`` of its own with no workers, and every one of them binds the same port with
``SO_REUSEPORT``: the kernel spreads new connections over them. The first process keeps the
in-process workers, the webhook deliverer and the banner; the database is the only thing they
share, as API processes on several hosts do, and wake-ups pass between them (queue/signals.py).

A helper that exits is started again after a second; all of them end with the first process
(SIGTERM, and on Linux also when the first one dies without a word).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger("pixelmill.serving")

#: In a helper's environment: the serving process's pid. A helper serves the API only and says
#: nothing at start.
HELPER_ENV = "PIXELMILL_API_HELPER_OF"
RESTART_SECONDS = 1.0


def listening_socket(host: str, port: int, *, shared: bool) -> socket.socket:
    """A TCP socket listening on ``host:port``; ``shared``: other processes may bind it too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)  # uvicorn's own backlog
    return sock


def helper_of() -> int | None:
    """In a helper: the serving process's pid, after arranging to end with it. Else None."""
    parent = os.environ.get(HELPER_ENV)
    if not parent:
        return None
    if sys.platform == "linux":
        # PR_SET_PDEATHSIG (1): SIGTERM when the serving process dies, even by SIGKILL. Set here,
        # not between fork and exec (unsafe in a process with threads); a parent that died
        # before this line is caught by the check below.
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)
    if os.getppid() != int(parent):
        raise SystemExit(0)
    return int(parent)


class Helpers:
    """The N-1 helper processes of a serving process, each restarted when it exits."""

    def __init__(self, count: int, stopping: Callable[[], bool], env: dict[str, str]) -> None:
        """``env``: what the helpers' environment adds (the address the serving process chose)."""
        self._count = count
        self._env = env
        self._stopping = stopping
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def start(self) -> None:
        for index in range(self._count):
            self._spawn(index)
            threading.Thread(target=self._watch, args=(index,), name=f"pixelmill-api-helper-{index}", daemon=True).start()

    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p in self._procs if p is not None and p.poll() is None]

    def _spawn(self, index: int) -> None:
        env = {**os.environ, **self._env, HELPER_ENV: str(os.getpid()), "PIXELMILL_WORKERS": "0", "PIXELMILL_API_PROCESSES": "1"}
        with self._lock:  # never after stop() has collected the processes to end
            if not self._closed.is_set():
                self._procs[index] = subprocess.Popen([sys.executable, "-m", "pixelmill", "serve"], env=env)

    def _watch(self, index: int) -> None:
        while True:
            proc = self._procs[index]
            assert proc is not None
            code = proc.wait()
            if self._closed.wait(RESTART_SECONDS) or self._stopping():
                return
            log.warning("API helper process exited; starting it again", exit_code=code, pid=proc.pid)
            self._spawn(index)
            if self._closed.is_set():
                return

    def stop(self, timeout: float = 10.0) -> None:
        self._closed.set()
        with self._lock:
            procs = [p for p in self._procs if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
