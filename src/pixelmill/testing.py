"""Helpers for tests and benchmarks: a real ``pixelmill serve`` process on a free loopback port,
and waiting on a condition with a deadline (never a bare sleep)."""

from __future__ import annotations

import collections
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx

T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.02, what: str = "condition") -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``pixelmill serve`` in its own process, on a free loopback port."""

    def __init__(self, data_dir: Path, api_key: str, **env: Any) -> None:
        self.data_dir = data_dir
        self.api_key = api_key
        self.env = {k.upper(): str(v) for k, v in env.items()}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / f"server-{self.port}.log"

    def environ(self) -> dict[str, str]:
        # The caller's own PIXELMILL_* variables stay out: a server is exactly what its owner asked for.
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PIXELMILL_")}
        env.update(
            PIXELMILL_DATA_DIR=str(self.data_dir),
            PIXELMILL_PORT=str(self.port),
            PIXELMILL_API_KEY=self.api_key,
        )
        env.update({f"PIXELMILL_{k}": v for k, v in self.env.items()})
        return env

    def start(self) -> Server:
        """Start and wait until it answers. A port taken by another process between ``free_port``
        and the bind is not this server's failure: it tries another port (twice at most)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            offset = self.log.stat().st_size if self.log.exists() else 0
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "pixelmill", "serve"], env=self.environ(), stdout=log, stderr=subprocess.STDOUT
                )
            try:
                wait_for(self._ready, timeout=60, interval=0.05, what=f"server on {self.url} (log: {self.log})")
                return self
            except AssertionError:
                with open(self.log, "rb") as log:
                    log.seek(offset)
                    taken = b"address already in use" in log.read().lower()
                if not taken or attempt == 2:
                    raise
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"
        raise AssertionError("unreachable")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a machine dies."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            _end(self.proc)

    @contextlib.contextmanager
    def worker(self, *args: str) -> Iterator[subprocess.Popen[bytes]]:
        """A ``pixelmill worker`` process on this server's database (its output in the server's
        log), stopped when the block ends."""
        with open(self.log, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "pixelmill", "worker", *args], env=self.environ(), stdout=log,
                                    stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            _end(proc)

    def client(self, api_key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {api_key or self.api_key}"}, timeout=30)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = self.environ() | {"PIXELMILL_URL": self.url}
        return subprocess.run(
            [sys.executable, "-m", "pixelmill", *args], env=env, capture_output=True, text=True, check=check, timeout=120
        )


def _end(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, so the process shuts down as it would in production; SIGKILL if it will not."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)


class WebhookReceiver:
    """A real HTTP server on loopback that records webhook deliveries, for tests and benchmarks.

    ``fail_first`` answers HTTP 500 to the first N attempts of every event (by ``webhook-id``),
    so retries can be watched. ``with WebhookReceiver(host="127.0.0.2") as hooks: hooks.url``"""

    def __init__(self, host: str = "127.0.0.1", fail_first: int = 0) -> None:
        self.fail_first = fail_first
        #: Every attempt: (arrival time.time(), headers, raw body, status answered).
        self.attempts: list[tuple[float, dict[str, str], bytes, int]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the http.server API names it
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with outer._lock:
                    seen = sum(1 for _, h, _, _ in outer.attempts if h.get("webhook-id") == headers.get("webhook-id"))
                    status = 500 if seen < outer.fail_first else 204
                    outer.attempts.append((time.time(), headers, raw, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer((host, 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://{host}:{self._httpd.server_address[1]}/hooks"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def delivered(self) -> list[tuple[float, dict[str, str], bytes]]:
        """Attempts that were answered 2xx, in arrival order."""
        with self._lock:
            return [(t, h, b) for t, h, b, status in self.attempts if status < 300]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


#: What ``FaultyProxy`` can do to a request instead of (or as well as) forwarding it.
FAULT_KINDS = ("429", "500", "code9", "slow", "drop", "drop_after")


class FaultyProxy:
    """A real HTTP proxy on loopback in front of an upstream, failing a share of requests on
    purpose: for the remote engine's tests and its fault-injection benchmark.

    Each request meets a fault with probability ``rate``, its kind drawn from ``kinds``:
    ``429`` (code 429, Retry-After 0), ``500`` (plain text), ``code9`` (HTTP 500, code 9), ``slow``
    (forwarded after ``slow_seconds``), ``drop`` (the connection closes, nothing forwarded) and
    ``drop_after`` (forwarded, then the connection closes before the answer: the upstream did the
    work and the caller never heard). ``injected`` counts what was done; ``submits`` lists the
    Idempotency-Key (or None) of every POST forwarded to a ``/generations/``, ``/submit/`` or
    ``/v1/images/`` route (``submitted`` their bodies), ``requests`` every request forwarded."""

    def __init__(self, upstream: str, *, rate: float, kinds: tuple[str, ...] = FAULT_KINDS, slow_seconds: float = 1.0, seed: int = 0) -> None:
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown or not 0 <= rate <= 1:
            raise ValueError(f"rate must be 0-1 and kinds among {FAULT_KINDS}")
        #: The share of requests that fail; a test may change it (an upstream that recovers).
        self.rate = rate
        self.injected: collections.Counter[str] = collections.Counter()
        self.forwarded = 0
        #: "METHOD /path" of every request forwarded, in order.
        self.requests: list[str] = []
        self.submits: list[str | None] = []
        #: The bodies of those submits, in the same order.
        self.submitted: list[bytes] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._upstream = httpx.Client(base_url=upstream, timeout=60)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
                with outer._lock:
                    fault = outer._random.choice(kinds) if outer._random.random() < outer.rate else None
                    if fault:
                        outer.injected[fault] += 1
                if fault in ("drop",):
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault in ("429", "500", "code9"):
                    status, payload, ctype = {
                        "429": (429, b'{"code": 429, "description": "rate limited (injected)"}', "application/json"),
                        "500": (500, b"Internal Server Error (injected)", "text/plain"),
                        "code9": (500, b'{"code": 9, "description": "internal failure (injected)"}', "application/json"),
                    }[fault]
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(payload)))
                    if fault == "429":
                        self.send_header("Retry-After", "0")
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if fault == "slow":
                    time.sleep(slow_seconds)
                keep = {k: v for k, v in self.headers.items()
                        if k.lower() in ("authorization", "mj-api-secret", "content-type", "idempotency-key", "prefer")}
                answer = outer._upstream.request(self.command, self.path, content=body or None, headers=keep)
                with outer._lock:
                    outer.forwarded += 1
                    outer.requests.append(f"{self.command} {self.path.split('?')[0]}")
                    if self.command == "POST" and any(p in self.path for p in ("/generations/", "/submit/", "/v1/images/")):
                        outer.submits.append(self.headers.get("Idempotency-Key"))
                        outer.submitted.append(body)
                if fault == "drop_after":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(answer.status_code)
                for name in ("content-type", "retry-after", "etag"):
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = _handle  # the http.server API names them

            def log_message(self, *_: object) -> None:
                pass

        class QuietServer(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a caller hanging up on a dropped connection is the point, not news

        self._httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._upstream.close()
