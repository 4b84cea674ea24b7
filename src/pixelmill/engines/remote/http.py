"""One upstream account over HTTP: calls with seed 004's retry table, submits that say whether
another account may take the task, and result downloads that never send the key elsewhere.

Seed 004's retry table, exactly:

=====================  ==========================================================================
code 4                 never retried: the request is wrong (non-retryable engine error)
code 24                never retried: banned upstream; the task fails with code 24 in its reason
                       (and is refunded like every failure)
code 3                 "task" in the text: the upstream lost the task, not retried; otherwise no
                       instance is free: retried later, with backoff
9 / 429 / 5xx          retried with exponential backoff and jitter (1 s, 4 s, 16 s by default;
                       a Retry-After header is honoured when longer)
network error          retried once at once, then like 9
=====================  ==========================================================================

A submit in a pool does not sleep through that backoff on one account: an answer that says the
account did not take the task (busy, failing, refusing the key, unreachable) is ``Refused``, and
the engine offers the task to another account. An answer that may have been lost after the
upstream received the submit (a read timeout, a connection dropped mid-answer) is ``Unsure``:
only the same account, under the same Idempotency-Key, may be asked again.

Result files are downloaded with the account's API key only from its own origin (scheme, host
and port of ``base_url``). A URL anywhere else (a CDN, a bucket) is fetched without it and under
the deployment's address rules (``PIXELMILL_FETCH_ALLOW``, media/fetch.py): an upstream cannot
make pixelmill send its key elsewhere, nor reach a private address for it.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from pixelmill.engines.remote.config import AccountConfig, RemoteConfig
from pixelmill.engines.remote.contracts import Call, contract
from pixelmill.exceptions import EngineError
from pixelmill.media.fetch import FetchPolicy, FetchRefused, SafeFetcher

#: Largest file the engine re-hosts (an image or a clip).
MAX_DOWNLOAD = 64 * 1024 * 1024
#: Errors raised before the request left: the upstream never saw it.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class Refused(Exception):
    """The account did not take the submit: another account may."""

    def __init__(self, reason: str, *, gone: bool = False, busy: bool = False, retry_after: str | None = None) -> None:
        super().__init__(reason)
        #: The account is banned, has no subscription or refuses the key: disable it now.
        self.gone = gone
        #: The account is busy (rate limited, its queue full), not failing: no mark on its health.
        self.busy = busy
        self.retry_after = retry_after


class Unsure(Exception):
    """The submit may have reached the account and its answer was lost."""


class SubmitBudget:
    """At most ``per_minute`` submissions in any 60 s: a caller past it waits for a slot."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._sleep = sleep
        self._sent: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def take(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                while self._sent and now - self._sent[0] >= 60:
                    self._sent.popleft()
                if len(self._sent) < self._per_minute:
                    self._sent.append(now)
                    return
                wait = 60 - (now - self._sent[0])
            self._sleep(min(wait, 1.0))


def _final(verdict: str, description: str) -> EngineError:
    return EngineError({
        "request": f"upstream refused the request (code 4): {description}",
        "banned": f"banned prompt upstream (code 24): {description}",
        "lost": f"upstream does not know the task (code 3): {description}",
    }[verdict], retryable=False)


class Upstream:
    """The HTTP side of one account."""

    def __init__(
        self,
        config: RemoteConfig,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        fetch_allow: tuple[str, ...] = (),
        account: AccountConfig | None = None,
    ) -> None:
        self.config = config
        self.account = account or config.pool[0]
        self.contract = contract(config.contract)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.account.base_url.rstrip("/"),
            headers=self.contract.headers(self.account.api_key),
            timeout=config.request_timeout_seconds,
            transport=transport,
        )
        self._origin = _origin(self._http.base_url)
        #: For result URLs off the upstream's origin: no key, and the address rules of any fetch.
        self._elsewhere = SafeFetcher(
            FetchPolicy(max_bytes=MAX_DOWNLOAD, timeout_seconds=config.request_timeout_seconds, allow=fetch_allow)
        )
        self._budget = SubmitBudget(config.submit_per_minute, sleep=sleep)

    def close(self) -> None:
        self._http.close()
        self._elsewhere.close()

    def probe(self) -> None:
        """Readiness: the upstream answers an unknown task (404, or no task) when it is up and
        takes our key. No retries: a probe reports what it sees."""
        r = self._http.request(self.contract.probe.method, self.contract.probe.path)
        if r.status_code in (401, 403):
            raise RuntimeError(f"the upstream refuses our API key (HTTP {r.status_code})")
        if r.status_code >= 500:
            raise RuntimeError(f"the upstream answers HTTP {r.status_code}")

    def backoff(self, attempt: int, retry_after: str | None) -> None:
        delay = self.config.backoff_seconds[min(attempt, len(self.config.backoff_seconds) - 1)]
        delay *= 1 + random.uniform(0, 0.25)  # jitter: retries of many tasks do not arrive together
        if retry_after and retry_after.isdigit():
            delay = max(delay, min(float(retry_after), 60.0))
        self._sleep(delay)

    def _verdict(self, r: httpx.Response) -> tuple[str, str, Any]:
        try:
            data = r.json() if r.content else None
        except ValueError:
            data = None
        verdict = self.contract.verdict(r.status_code, data, r.text)
        return verdict.kind, verdict.description, data

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, idempotency_key: str | None = None) -> Any:
        """The upstream's JSON answer to a call that succeeded (code 1 / 200 / 21, or a task
        object), or ``EngineError`` classified by the table above."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        network_retried = False
        last = "no answer"
        attempt = 0
        while attempt < self.config.max_tries:
            if method == "POST":
                self._budget.take()
            try:
                r = self._http.request(method, path, json=body, headers=headers)
            except httpx.TransportError as exc:
                last = f"network error: {type(exc).__name__}: {exc}"
                if not network_retried:  # once at once: a dropped connection is often just that
                    network_retried = True
                    continue
                self.backoff(attempt, None)
                attempt += 1
                continue
            verdict, description, data = self._verdict(r)
            if verdict == "ok":
                return data
            if verdict in ("request", "banned", "lost"):
                raise _final(verdict, description)
            last = description
            self.backoff(attempt, r.headers.get("Retry-After"))
            attempt += 1
        raise EngineError(f"upstream still failing after {self.config.max_tries} tries: {last}", retryable=True)

    def submit(self, call: Call, idempotency_key: str | None) -> dict[str, Any]:
        """One submit to this account: its answer, ``Refused`` (it did not take the task),
        ``Unsure`` (it may have), or ``EngineError`` (the request itself is refused)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        form = {"data": {k: str(v) for k, v in (call.body or {}).items()}, "files": list(call.files)} if call.files else {"json": call.body}
        self._budget.take()
        maybe_sent = False
        for retried in (False, True):
            try:
                r = self._http.request(call.method, call.path, headers=headers, **form)  # json=, or data= with files=
                break
            except _NOT_SENT as exc:
                if retried:
                    reason = f"unreachable: {type(exc).__name__}: {exc}"
                    raise Unsure(reason) if maybe_sent else Refused(reason)
            except httpx.TransportError as exc:
                maybe_sent = True
                # Once at once, where the upstream answers a repeated key with the task it made;
                # anywhere else asking again could make (and bill) a second task.
                if retried or not idempotency_key or not self.contract.idempotent:
                    raise Unsure(f"network error: {type(exc).__name__}: {exc}") from None
        verdict, description, data = self._verdict(r)
        if verdict == "ok":
            assert isinstance(data, dict)  # every contract answers a submit with an object
            return data
        if verdict in ("request", "banned", "lost"):
            raise _final(verdict, description)
        if verdict == "unsure" or maybe_sent:  # the first send may have made the task
            raise Unsure(description)
        raise Refused(description, gone=verdict == "gone", busy=verdict == "busy", retry_after=r.headers.get("Retry-After"))

    def download(self, url: str) -> bytes:
        """A result file: with the API key from the upstream's own origin, without it elsewhere."""
        target = self._http.base_url.join(url)
        fetch = self._download_own if _origin(target) == self._origin else self._download_elsewhere
        last = ""
        for attempt in range(self.config.max_tries):
            try:
                return fetch(str(target))
            except _Retry as exc:
                last = str(exc)
            self.backoff(attempt, None)
        raise EngineError(f"could not download {url} from upstream: {last}", retryable=True)

    def _download_own(self, url: str) -> bytes:
        try:
            with self._http.stream("GET", url) as r:
                if r.status_code != 200:
                    if r.status_code < 500 and r.status_code != 429:
                        raise EngineError(f"could not download {url} from upstream: HTTP {r.status_code}", retryable=True)
                    raise _Retry(f"HTTP {r.status_code}")
                data = bytearray()
                for chunk in r.iter_bytes():
                    data += chunk
                    if len(data) > MAX_DOWNLOAD:
                        raise EngineError(f"upstream file {url} is larger than {MAX_DOWNLOAD:,} bytes", retryable=False)
                return bytes(data)
        except httpx.TransportError as exc:
            raise _Retry(f"network error: {exc}") from None

    def _download_elsewhere(self, url: str) -> bytes:
        try:
            return self._elsewhere.fetch(url)
        except FetchRefused as exc:
            if exc.retryable:
                raise _Retry(exc.reason) from None
            raise EngineError(f"upstream result {url} was not fetched: {exc.reason}", retryable=False) from None


class _Retry(Exception):
    """A download failure worth another try after backoff."""


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)
