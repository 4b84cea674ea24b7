"""How ``pixelmill serve`` listens: one process, or several on one socket (``PIXELMILL_API_PROCESSES``).

One Python process runs Python on one core at a time, and an accepted submit is a few
milliseconds of it. With ``api_processes`` N > 1 the serving process binds its port, then starts
N-1 helpers, each a ``pixelmill serve`` of its own with no workers that inherits the listening
socket: every process accepts from the one queue, a busy one simply accepts less, and a port
already taken is refused as it always was. The first process keeps the in-process workers, the
webhook deliverer and the banner; the database is the only thing they share, as API processes
on several hosts do, and wake-ups pass between them (queue/signals.py).

A helper that exits is started again, after 1 s and longer each time it exits at once; the
helpers end with the serving process (SIGTERM, and on Linux also when it dies without a word).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import structlog
import uvicorn

log = structlog.get_logger("pixelmill.serving")

#: In a helper's environment: the serving process's pid, and the listening socket it inherits.
HELPER_ENV = "PIXELMILL_API_HELPER_OF"
SOCKET_ENV = "PIXELMILL_API_SOCKET_FD"
#: Restart delays of a helper that exits: doubled while it exits within a minute of its start.
RESTART_SECONDS = (1.0, 30.0)


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` (a helper: the one its serving process bound)."""
    inherited = os.environ.get(SOCKET_ENV)
    if inherited and os.environ.get(HELPER_ENV):
        return socket.socket(fileno=int(inherited))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
    """The N-1 helper processes of a serving process, each started again when it exits."""

    def __init__(self, count: int, sock: socket.socket) -> None:
        self._count = count
        self._sock = sock
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def start(self) -> None:
        for index in range(self._count):
            threading.Thread(target=self._keep, args=(index,), name=f"pixelmill-api-helper-{index}", daemon=True).start()

    def _spawn(self, index: int) -> subprocess.Popen[bytes] | None:
        fd = self._sock.fileno()
        env = {**os.environ, HELPER_ENV: str(os.getpid()), SOCKET_ENV: str(fd), "PIXELMILL_WORKERS": "0", "PIXELMILL_API_PROCESSES": "1"}
        with self._lock:  # never after stop() has collected the processes to end
            if self._closed.is_set():
                return None
            proc = subprocess.Popen([sys.executable, "-m", "pixelmill", "serve"], env=env, pass_fds=(fd,))
            self._procs[index] = proc
            return proc

    def _keep(self, index: int) -> None:
        delay = RESTART_SECONDS[0]
        while not self._closed.is_set():
            started = time.monotonic()
            try:
                proc = self._spawn(index)
            except OSError as exc:
                log.error("could not start an API helper process", error=str(exc))
                proc = None
            else:
                if proc is None:
                    return
                code = proc.wait()
                if self._closed.is_set():
                    return
                log.warning("API helper process exited; starting it again", exit_code=code, pid=proc.pid, in_seconds=delay)
            # One that keeps dying at once is not restarted every second.
            delay = min(delay * 2, RESTART_SECONDS[1]) if time.monotonic() - started < 60 else RESTART_SECONDS[0]
            self._closed.wait(delay)

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


class Serving(uvicorn.Server):
    """uvicorn's server, ending the helpers once it has shut down. (After a SIGTERM uvicorn
    raises the signal again with its default action, so code after ``run`` never runs.)"""

    def __init__(self, config: uvicorn.Config, helpers: Helpers | None) -> None:
        super().__init__(config)
        self.helpers = helpers

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        if self.helpers is not None:
            await asyncio.to_thread(self.helpers.stop)
