"""The remote engine: a Midjourney-style upstream that speaks seed 004's contract (another
pixelmill instance qualifies).

Every operation is submitted upstream as the same operation: imagine with the whole canonical
prompt, follow-ups with the parent's upstream task id (kept in the parent's ``engine_meta``),
inpaint through the upstream's own MODAL + ``/modal``. The engine polls at a 3-5 s cadence
(configurable) and re-hosts the results: images and clips are downloaded, so the task's files
live in pixelmill's storage after the upstream's URLs expire.

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

Result files are downloaded with the upstream's API key only from the upstream's own origin
(scheme, host and port of ``base_url``). A URL anywhere else (a CDN, a bucket) is fetched without
it and under the deployment's address rules (``PIXELMILL_FETCH_ALLOW``, media/fetch.py): an
upstream cannot make pixelmill send its key elsewhere, nor reach a private address for it.

A task is submitted upstream once. The submit carries an Idempotency-Key that is recorded before
it is sent, and the upstream task id is recorded as soon as the upstream accepts
(``queue/upstream.py``). A submit whose answer was lost on the way back is answered with the task
it already made; a later attempt of the task (after a crash, a lost lease, a failed download)
follows the recorded upstream task. Only an upstream task that ended without a result (FAILURE,
CANCEL) lets the next attempt submit again, under a new key.
A per-minute submission budget (``submit_per_minute``) keeps this process under the upstream's
rate cap in normal running.
"""

from __future__ import annotations

import collections
import io
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from PIL import Image

from pixelmill.engines.base import (
    Engine,
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
    UpstreamRecord,
    VideoRequest,
    VideoResult,
    Waiting,
    settings_from_json,
)
from pixelmill.exceptions import EngineError
from pixelmill.media.fetch import FetchPolicy, FetchRefused, SafeFetcher

if TYPE_CHECKING:
    import aiohttp

TERMINAL = ("SUCCESS", "FAILURE", "CANCEL")
#: Largest file the engine re-hosts (an image or a clip).
MAX_DOWNLOAD = 64 * 1024 * 1024


@dataclass(frozen=True)
class RemoteConfig:
    base_url: str
    api_key: str
    #: Seconds between polls of a running upstream task (seed 004 recommends 3-5 s).
    poll_seconds: float = 3.0
    #: Backoff before retry N of a retryable answer; the last value repeats.
    backoff_seconds: tuple[float, ...] = (1.0, 4.0, 16.0)
    #: Tries of one call (submit, poll or download) before the task attempt fails, retryable.
    max_tries: int = 4
    #: Submissions per minute this process sends upstream, at most.
    submit_per_minute: int = 60
    #: How long one upstream task may take before this attempt gives up.
    timeout_seconds: float = 600.0
    request_timeout_seconds: float = 30.0
    model: str = "remote"
    #: The upstream takes ``webhook_url`` on submits (another pixelmill does): it calls back when
    #: a task ends, and polls come only every ``callback_poll_seconds``, as a fallback. Needs
    #: ``PIXELMILL_PUBLIC_URL``, where the upstream reaches this deployment.
    callbacks: bool = False
    callback_poll_seconds: float = 60.0

    @classmethod
    def from_json(cls, spec: Mapping[str, Any]) -> RemoteConfig:
        for required in ("base_url", "api_key"):
            if not isinstance(spec.get(required), str) or not spec[required]:
                raise ValueError(f"remote engine: '{required}' is required")
        try:
            config = settings_from_json(cls, spec)
        except ValueError as exc:
            raise ValueError(f"remote engine: {exc}") from None
        if config.poll_seconds <= 0 or config.max_tries < 1 or config.submit_per_minute < 1 or not config.backoff_seconds:
            raise ValueError("remote engine: poll_seconds > 0, max_tries >= 1, submit_per_minute >= 1 and backoff_seconds needed")
        if config.callback_poll_seconds < config.poll_seconds:
            raise ValueError("remote engine: callback_poll_seconds (the fallback poll with callbacks) must be at least poll_seconds")
        return config


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


class Upstream:
    """The HTTP side: one call with seed 004's retry table."""

    def __init__(
        self,
        config: RemoteConfig,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        fetch_allow: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=config.base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {config.api_key}"},
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
        """Readiness: the upstream answers an unknown task with 404 / code 3 when it is up and
        takes our key. No retries: a probe reports what it sees."""
        r = self._http.get("/v1/midjourney/0")
        if r.status_code == 401:
            raise RuntimeError("the upstream refuses our API key")
        if r.status_code >= 500:
            raise RuntimeError(f"the upstream answers HTTP {r.status_code}")

    def _backoff(self, attempt: int, retry_after: str | None) -> None:
        delay = self.config.backoff_seconds[min(attempt, len(self.config.backoff_seconds) - 1)]
        delay *= 1 + random.uniform(0, 0.25)  # jitter: retries of many tasks do not arrive together
        if retry_after and retry_after.isdigit():
            delay = max(delay, min(float(retry_after), 60.0))
        self._sleep(delay)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, idempotency_key: str | None = None) -> dict[str, Any]:
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
                self._backoff(attempt, None)
                attempt += 1
                continue
            try:
                data = r.json()
            except ValueError:
                data = {}
            code = data.get("code") if isinstance(data, dict) else None
            description = str(data.get("description", r.text[:200])) if isinstance(data, dict) else r.text[:200]
            if r.status_code == 200 and (code in (1, 200, 21) or (code is None and "status" in data)):
                answer: dict[str, Any] = data
                return answer
            if code == 4:
                raise EngineError(f"upstream refused the request (code 4): {description}", retryable=False)
            if code == 24:
                raise EngineError(f"banned prompt upstream (code 24): {description}", retryable=False)
            if code == 3 and "task" in description.lower():
                raise EngineError(f"upstream does not know the task (code 3): {description}", retryable=False)
            # 3 (no instance), 9, 409 (an earlier submit with this key is still being accepted),
            # 429, 5xx: retry later with backoff.
            last = f"HTTP {r.status_code}, code {code}: {description}"
            self._backoff(attempt, r.headers.get("Retry-After"))
            attempt += 1
        raise EngineError(f"upstream still failing after {self.config.max_tries} tries: {last}", retryable=True)

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
            self._backoff(attempt, None)
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


class _Ended(Exception):
    """The upstream task ended without a result (FAILURE or CANCEL upstream)."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)


class RemoteEngine(Engine):
    runs_operations = True

    def __init__(
        self, name: str, config: RemoteConfig, transport: httpx.BaseTransport | None = None, fetch_allow: tuple[str, ...] = ()
    ) -> None:
        self.name = name
        self.model = config.model
        self._config = config
        self._base = config.base_url.rstrip("/")
        self.upstream = Upstream(config, transport, fetch_allow=fetch_allow)

    def close(self) -> None:
        self.upstream.close()

    def check(self) -> None:
        self.upstream.probe()

    # --- operations ----------------------------------------------------------------------------

    def generate(self, request: GenerationRequest, progress: ProgressCallback | None = None) -> GenerationResult:
        step = request.step
        if step is None:
            if request.init_image is not None or request.mask is not None:
                raise EngineError("the remote engine works on pictures only through upstream follow-ups", retryable=False)
            operation, fields = "imagine", {"prompt": request.source_prompt or request.prompt}
        else:
            operation, fields = step.operation, dict(step.fields)
        task = self._run(operation, fields, request.upstream, progress)
        urls = task.get("image_urls") or []
        if not urls:
            raise EngineError(f"upstream task {task['task_id']} finished without images", retryable=True)
        images = tuple(self._image(u, request.width, request.height) for u in urls)
        return GenerationResult(images=images, model=self.model, meta=_meta(task))

    def animate(self, request: VideoRequest, progress: ProgressCallback | None = None) -> VideoResult:
        if request.step is None:
            raise EngineError("the remote engine animates through an upstream video task only", retryable=False)
        task = self._run(request.step.operation, dict(request.step.fields), request.upstream, progress)
        clips = tuple(self.upstream.download(u) for u in task.get("video_urls") or [])
        return VideoResult(clips=clips, model=self.model, meta=_meta(task))

    def _run(self, operation: str, fields: dict[str, Any], record: UpstreamRecord | None, progress: ProgressCallback | None) -> dict[str, Any]:
        """Submit one operation and follow it to its end; inpaint goes through the upstream's
        MODAL. An upstream task that an earlier attempt of the task started is followed, not
        submitted again (``queue/upstream.py``). Where a poller follows waiting tasks
        (``record.park``), the task is handed to it (``Waiting``) as soon as the upstream has it."""
        modal = fields.pop("modal", None)
        key = record.submit_key if record is not None else None
        park = record is not None and record.park
        if record is not None and record.upstream_id is not None:
            task_id = record.upstream_id
        else:
            if self._config.callbacks and record is not None and record.callback_url:
                fields = {**fields, "webhook_url": record.callback_url, "webhook_events": ["completed"]}
            answer = self.upstream.call("POST", f"/v1/midjourney/generations/{operation}", fields, key)
            task_id = str(answer["data"][0]["task_id"])
            if record is not None:
                record.accepted(task_id)
            if park and (answer.get("code") != 21 or modal is None):
                raise Waiting(task_id)
        try:
            return self._poll(task_id, progress, modal, key, park)
        except _Ended as ended:
            if record is not None:
                record.ended()
            raise EngineError(str(ended), retryable=ended.retryable) from None

    def _poll(self, task_id: str, progress: ProgressCallback | None, modal: dict[str, Any] | None, key: str | None, park: bool) -> dict[str, Any]:
        deadline = time.monotonic() + self._config.timeout_seconds
        while True:
            task = self.upstream.call("GET", f"/v1/midjourney/{task_id}")
            status = task.get("status")
            if progress is not None and (fraction := upstream_progress(task)) is not None:
                progress(fraction)
            if status == "SUCCESS":
                return task
            if status in ("FAILURE", "CANCEL"):
                reason = task.get("fail_reason") or status
                banned = "code 24" in str(reason) or "banned" in str(reason).lower()
                raise _Ended(f"upstream task {task_id} ended {status}: {reason}", retryable=not banned)
            if status == "MODAL":
                if modal is None:
                    raise EngineError(f"upstream task {task_id} waits for /modal, and nothing was given for it", retryable=False)
                # Right after the submit, or in the next attempt when the last one stopped before it.
                self.upstream.call("POST", "/v1/midjourney/generations/modal", {"task_id": task_id, **modal}, f"{key}-modal" if key else None)
                modal = None
                continue
            if park:
                raise Waiting(task_id)
            if time.monotonic() >= deadline:
                raise EngineError(f"upstream task {task_id} still {status} after {self._config.timeout_seconds:g}s", retryable=True)
            time.sleep(self._config.poll_seconds)

    def _image(self, url: str, width: int, height: int) -> Image.Image:
        data = self.upstream.download(url)
        try:
            with Image.open(io.BytesIO(data)) as im:
                image = im.convert("RGB")
        except Exception as exc:  # any undecodable answer is the upstream's fault
            raise EngineError(f"upstream image {url} does not decode: {exc}", retryable=True) from exc
        # The upstream chose its own sizes from the prompt; the task promised width x height.
        return image if image.size == (width, height) else image.resize((width, height), Image.Resampling.LANCZOS)

    # --- for the upstream poller (work/upstream.py) --------------------------------------------

    @property
    def config(self) -> RemoteConfig:
        return self._config

    def poll_seconds(self, callbacks: bool) -> float:
        """Between two polls of a parked task: the fallback cadence when the upstream calls back."""
        return self._config.callback_poll_seconds if callbacks and self._config.callbacks else self._config.poll_seconds

    def status_session(self, connections: int) -> aiohttp.ClientSession:
        """A client for the poller's event loop: the same upstream, key and timeout, at most
        ``connections`` requests at once, all kept alive. aiohttp, not httpx: a poll through
        httpx's asyncio stack cost about 3 ms of CPU (anyio builds a dict of callbacks per
        connection per request to check it), so 1,000 waiting tasks took most of a core."""
        import aiohttp  # imported where polling starts: API processes never pay for it

        return aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self._config.api_key}"},
            timeout=aiohttp.ClientTimeout(total=self._config.request_timeout_seconds),
            connector=aiohttp.TCPConnector(limit=connections),
        )

    async def status(self, session: aiohttp.ClientSession, upstream_id: str) -> dict[str, Any] | None:
        """The upstream task as the upstream shows it now; None when the answer says nothing
        (a network error, 429, 5xx: ask again at the next round)."""
        import aiohttp

        try:
            async with session.get(f"{self._base}/v1/midjourney/{upstream_id}") as r:
                status, data = r.status, await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        if status == 200 and isinstance(data, dict) and "status" in data:
            return data
        if status == 404 or (isinstance(data, dict) and data.get("code") in (3, 4)):
            return {"status": "LOST"}  # the engine's own poll, when the task is handed back, says why
        return None

    async def cancel(self, session: aiohttp.ClientSession, upstream_id: str) -> None:
        """Ask the upstream to stop a task that nobody here waits for any more (best effort)."""
        import aiohttp

        try:
            async with session.post(f"{self._base}/v1/midjourney/{upstream_id}/cancel") as r:
                await r.read()
        except (aiohttp.ClientError, TimeoutError):
            pass


def upstream_running(task: dict[str, Any]) -> bool:
    """Whether an upstream task (its JSON) is still on its way: not ended, not waiting for /modal."""
    return task.get("status") not in (*TERMINAL, "MODAL", "LOST")


def upstream_progress(task: dict[str, Any]) -> float | None:
    """The upstream's progress ("45%") as a fraction below 1, when it says."""
    value = task.get("progress")
    if not isinstance(value, str):
        return None
    try:
        return min(0.99, float(value.rstrip("%")) / 100)
    except ValueError:
        return None


def _meta(task: dict[str, Any]) -> dict[str, Any]:
    return {"upstream_task_id": str(task["task_id"]), "upstream_quota": task.get("quota"), "upstream_action": task.get("action")}
