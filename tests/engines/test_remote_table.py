"""Seed 004's retry table, call by call, against a scripted upstream on loopback."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pixelmill.engines.registry import build_engine
from pixelmill.engines.remote import RemoteConfig, SubmitBudget, Upstream
from pixelmill.exceptions import EngineError
from pixelmill.settings import Settings

OK = (200, {"code": 1, "description": "submitted", "data": [{"task_id": "42"}]})


class Scripted:
    """Answers each request with the next scripted answer: (status, JSON or text) or "drop"."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.script: list[object] = []
        self.seen: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
                outer.seen.append({k.lower(): v for k, v in self.headers.items()})
                answer = outer.script.pop(0)
                if answer == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, body = answer  # type: ignore[misc]
                raw = json.dumps(body).encode() if isinstance(body, dict | list) else str(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST

            def log_message(self, *_: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.httpd.server_address[1]}"


def serving(host: str = "127.0.0.1") -> Iterator[Scripted]:
    s = Scripted(host)
    thread = threading.Thread(target=s.httpd.serve_forever, daemon=True)
    thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    yield from serving()


@pytest.fixture
def cdn() -> Iterator[Scripted]:
    """Another host (a CDN, a bucket) that the upstream's result URLs may point at."""
    yield from serving("127.0.0.2")


_OPEN: list[Upstream] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def upstream(url: str, sleeps: list[float], fetch_allow: tuple[str, ...] = ()) -> Upstream:
    """An upstream client whose backoff sleeps are recorded instead of slept."""
    client = Upstream(RemoteConfig(base_url=url, api_key="k", backoff_seconds=(1.0, 4.0, 16.0), max_tries=4), sleep=sleeps.append,
                      fetch_allow=fetch_allow)
    _OPEN.append(client)
    return client


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        ((400, {"code": 4, "description": "prompt: bad"}), "upstream refused the request (code 4): prompt: bad"),
        ((400, {"code": 24, "description": "banned word"}), "banned prompt upstream (code 24): banned word"),
        ((404, {"code": 3, "description": "task 9 not found"}), "upstream does not know the task (code 3): task 9 not found"),
    ],
)
def test_4_24_and_a_lost_task_are_never_retried(scripted: Scripted, answer: tuple[int, dict], text: str) -> None:
    scripted.script = [answer, OK]
    sleeps: list[float] = []
    with pytest.raises(EngineError) as err:
        upstream(scripted.url, sleeps).call("POST", "/v1/midjourney/generations/imagine", {"prompt": "x"})
    assert (err.value.description, err.value.retryable, len(scripted.seen), sleeps) == (text, False, 1, [])


def test_busy_rate_limited_and_failing_answers_back_off_exponentially(scripted: Scripted) -> None:
    scripted.script = [(503, {"code": 3, "description": "no engine instance is available right now"}),
                       (429, {"code": 429, "description": "slow down"}), (500, {"code": 9, "description": "oops"}), OK]
    sleeps: list[float] = []
    assert upstream(scripted.url, sleeps).call("POST", "/x", {}, idempotency_key="t1-1")["data"][0]["task_id"] == "42"
    assert all(b <= s <= b * 1.25 for s, b in zip(sleeps, (1, 4, 16), strict=True))  # with up to 25 % jitter
    assert all(h["idempotency-key"] == "t1-1" for h in scripted.seen)  # every retry is the same submit


def test_a_network_error_is_retried_once_at_once_then_with_backoff(scripted: Scripted) -> None:
    scripted.script = ["drop", OK]
    sleeps: list[float] = []
    assert upstream(scripted.url, sleeps).call("POST", "/x", {})["code"] == 1
    assert sleeps == []  # the first retry came at once
    scripted.script = ["drop", "drop", OK]
    sleeps.clear()
    upstream(scripted.url, sleeps).call("POST", "/x", {})
    assert len(sleeps) == 1 and 1 <= sleeps[0] <= 1.25


def test_giving_up_is_retryable_for_the_task(scripted: Scripted) -> None:
    scripted.script = [(502, "Bad Gateway")] * 4
    with pytest.raises(EngineError) as err:
        upstream(scripted.url, []).call("POST", "/x", {})
    assert err.value.retryable and err.value.description == "upstream still failing after 4 tries: HTTP 502, code None: Bad Gateway"


def test_the_submit_budget_waits_for_a_free_slot() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    budget = SubmitBudget(2, clock=lambda: now[0], sleep=sleep)
    budget.take()
    now[0] = 30
    budget.take()
    budget.take()  # the third in a minute waits until the first is 60 s old
    assert now[0] >= 60 and sum(slept) == pytest.approx(30)


def test_settings_are_checked_when_the_engine_is_built() -> None:
    with pytest.raises(ValueError, match="'api_key' is required"):
        RemoteConfig.from_json({"kind": "remote", "base_url": "http://x"})
    with pytest.raises(ValueError, match="unknown settings pol_seconds"):
        RemoteConfig.from_json({"kind": "remote", "base_url": "http://x", "api_key": "k", "pol_seconds": 3})
    with pytest.raises(ValueError, match="callback_poll_seconds .* must be at least poll_seconds"):
        RemoteConfig.from_json({"kind": "remote", "base_url": "http://x", "api_key": "k", "poll_seconds": 5, "callback_poll_seconds": 1})
    spec = {"kind": "remote", "base_url": "http://x", "api_key": "k", "callbacks": True}
    with pytest.raises(ValueError, match="callbacks need PIXELMILL_PUBLIC_URL"):
        build_engine("mj", spec, Settings(data_dir=Path("unused")))
    build_engine("mj", spec, Settings(data_dir=Path("unused"), public_url="https://img.example.com")).close()


def test_results_elsewhere_are_fetched_without_the_key_and_under_the_address_rules(scripted: Scripted, cdn: Scripted) -> None:
    scripted.script = [(200, "own file")]
    cdn.script = [(503, "busy"), (200, "cdn file")]
    sleeps: list[float] = []
    client = upstream(scripted.url, sleeps, fetch_allow=("127.0.0.2/32",))  # the operator allows the CDN's address
    assert client.download("/files/a.png") == b"own file"
    assert scripted.seen[0]["authorization"] == "Bearer k"  # the upstream's own origin gets the key
    assert client.download(f"{cdn.url}/a.png") == b"cdn file"  # retried after the 503
    assert len(cdn.seen) == 2 and all("authorization" not in h for h in cdn.seen)
    assert len(sleeps) == 1
    # A private address the operator did not allow is never contacted, and not retried.
    with pytest.raises(EngineError) as err:
        client.download("http://10.1.2.3/a.png")
    assert not err.value.retryable and "10.1.2.3 is a private address" in err.value.description
    with pytest.raises(EngineError) as err:
        upstream(scripted.url, []).download(f"{cdn.url}/a.png")  # without the allow entry
    assert not err.value.retryable and len(cdn.seen) == 2
