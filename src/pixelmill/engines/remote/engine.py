"""The remote engine: a Midjourney-style upstream that speaks seed 004's contract (another
pixelmill instance qualifies), one account or a pool of them.

Every operation is submitted upstream as the same operation: imagine with the whole canonical
prompt, follow-ups with the parent's upstream task id (kept in the parent's ``engine_meta``,
with the account that holds it: a follow-up goes to that account), inpaint through the
upstream's own MODAL + ``/modal``. The engine polls at a 3-5 s cadence (configurable) and
re-hosts the results: images and clips are downloaded, so the task's files live in pixelmill's
storage after the upstream's URLs expire.

A task is submitted upstream once. The submit carries an Idempotency-Key that is recorded before
it is sent, with the account it goes to, and the upstream task id is recorded as soon as the
upstream accepts (``queue/upstream.py``). A submit whose answer was lost on the way back is asked
again of the same account under the same key; a later attempt of the task (after a crash, a lost
lease, a failed download) follows the recorded upstream task. Only an upstream task that ended
without a result (FAILURE, CANCEL) lets the next attempt submit again, under a new key.

In a pool, a submit goes to an account with room, chosen by the engine's selection rule
(``pool.py``) over state every process shares (``queue/accounts.py``). An account that refuses
it (busy, failing, unreachable, refusing the key) is passed over for another; refusals in a row,
an auth failure or a ban disable it, and a probe re-enables it. When every account is full, the
task waits in pixelmill's queue (``Busy``): SUBMITTED, with its place, not failed.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import structlog
from PIL import Image

from pixelmill.engines.base import (
    Busy,
    Engine,
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
    UpstreamRecord,
    UpstreamStep,
    VideoRequest,
    VideoResult,
    Waiting,
)
from pixelmill.engines.remote.config import RemoteConfig
from pixelmill.engines.remote.contracts import Call, Context
from pixelmill.engines.remote.http import Refused, Unsure, Upstream
from pixelmill.engines.remote.pool import offers, rule
from pixelmill.exceptions import EngineError

if TYPE_CHECKING:
    import aiohttp

log = structlog.get_logger("pixelmill.remote")

TERMINAL = ("SUCCESS", "FAILURE", "CANCEL")


class _Ended(Exception):
    """The upstream task ended without a result (FAILURE or CANCEL upstream)."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


class RemoteEngine(Engine):
    runs_operations = True

    def __init__(
        self, name: str, config: RemoteConfig, transport: httpx.BaseTransport | None = None, fetch_allow: tuple[str, ...] = ()
    ) -> None:
        self.name = name
        self.model = config.model
        self._config = config
        #: One HTTP client per account, by name.
        self.accounts = {a.name: Upstream(config, transport, fetch_allow=fetch_allow, account=a) for a in config.pool}
        self._pick = rule(config.selection)
        #: Accounts whose upstream has no batched status call (an older pixelmill, say).
        self._unbatched: set[str] = set()
        #: Refusals in a row that disable an account. With one account there is nowhere else to
        #: send a task, so refusals only back off; an auth failure or a ban still disables it.
        self._disable_after = config.disable_after_failures if len(self.accounts) > 1 else 2**31 - 1

    @property
    def upstream(self) -> Upstream:
        """The first account's client (the one upstream of an engine without a pool)."""
        return next(iter(self.accounts.values()))

    def close(self) -> None:
        for upstream in self.accounts.values():
            upstream.close()

    def check(self) -> None:
        """Ready while any account answers (a pool serves through the others)."""
        if len(self.accounts) == 1:
            self.upstream.probe()
            return
        problems = []
        for name in self.accounts:
            if (problem := self.probe(name)) is None:
                return
            problems.append(f"{name}: {problem}")
        raise RuntimeError("no account answers: " + "; ".join(problems))

    # --- operations ----------------------------------------------------------------------------

    def generate(self, request: GenerationRequest, progress: ProgressCallback | None = None) -> GenerationResult:
        step = request.step
        if step is None:
            if request.init_image is not None or request.mask is not None:
                raise EngineError("the remote engine works on pictures only through upstream follow-ups", retryable=False)
            step = UpstreamStep("imagine", {"prompt": request.source_prompt or request.prompt})
        task, account = self._run(step, request.upstream, progress)
        urls = task.get("image_urls") or []
        if not urls:
            raise EngineError(f"upstream task {task['task_id']} finished without images", retryable=True)
        if task.get("grid") and len(urls) == 1:  # the upstream shows only the 2×2 grid: its four pictures
            grid, _ = self._image(account, urls[0], request.width * 2, request.height * 2)
            images = tuple(grid.crop((x, y, x + request.width, y + request.height))
                           for y in (0, request.height) for x in (0, request.width))
            files: tuple[bytes | None, ...] = ()
        else:
            decoded = [self._image(account, u, request.width, request.height) for u in urls]
            images, files = tuple(image for image, _ in decoded), tuple(data for _, data in decoded)
        return GenerationResult(images=images, model=self.model, meta=_meta(task, account), files=files)

    def animate(self, request: VideoRequest, progress: ProgressCallback | None = None) -> VideoResult:
        if request.step is None:
            raise EngineError("the remote engine animates through an upstream video task only", retryable=False)
        task, account = self._run(request.step, request.upstream, progress)
        clips = tuple(account.download(u) for u in task.get("video_urls") or [])
        return VideoResult(clips=clips, model=self.model, meta=_meta(task, account))

    def _run(self, step: UpstreamStep, record: UpstreamRecord | None, progress: ProgressCallback | None) -> tuple[dict[str, Any], Upstream]:
        """Submit one operation and follow it to its end; inpaint goes through the upstream's
        MODAL. An upstream task that an earlier attempt of the task started is followed, not
        submitted again (``queue/upstream.py``). Where a poller follows waiting tasks
        (``record.park``), the task is handed to it (``Waiting``) as soon as the upstream has it."""
        key = record.submit_key if record is not None else None
        park = record is not None and record.park
        if record is not None and record.upstream_id is not None:
            task_id, account = record.upstream_id, self._known(record.account or "default", record)
        else:
            callback = record.callback_url if self._config.callbacks and record is not None else None
            answer, account = self._submit(step, callback, record)
            task_id, modal = account.contract.accepted(answer)
            if record is not None:
                record.accepted(task_id)
            if park and not modal:
                raise Waiting(task_id)
        try:
            task = self._poll(account, task_id, step, progress, key, park)
        except _Ended as ended:
            if record is not None:
                record.ended()
            raise EngineError(str(ended), retryable=ended.retryable) from None
        if record is not None:
            record.done()
        return task, account

    def _context(self, account: Upstream, key: str | None = None) -> Context:
        """What a contract may read while it builds a call: a task as the account shows it (a
        parent's buttons), a file (a mask or a blend's picture, sent as base64), the submit key."""
        return Context(task=lambda upstream_id: account.call("GET", account.contract.fetch(upstream_id).path), read=account.download, key=key)

    def _known(self, name: str, record: UpstreamRecord | None) -> Upstream:
        account = self.accounts.get(name)
        if account is None:  # taken out of the configuration while it held the task
            if record is not None:
                record.ended()
            raise EngineError(f"upstream account {name!r} of engine {self.name} is no longer configured; submitting anew", retryable=True)
        return account

    def _submit(self, step: UpstreamStep, callback: str | None, record: UpstreamRecord | None) -> tuple[dict[str, Any], Upstream]:
        key = record.submit_key if record is not None else None
        return self._send(lambda upstream: upstream.contract.submit(step, callback, self._context(upstream, key)), record,
                          speed=step.speed, sticky=step.account)

    def _send(
        self, build: Callable[[Upstream], Call], record: UpstreamRecord | None, *, speed: str | None = None, sticky: str | None = None,
    ) -> tuple[dict[str, Any], Upstream]:
        """Send a submit (``build`` makes it for an account) to an account that takes it, by the
        selection rule. An account that refuses is passed over for the next; a round in which
        every account refused is followed by the backoff of seed 004's table, up to
        ``max_tries`` rounds.

        An account that may hold the submit already (an earlier send whose answer was lost, in
        this attempt or before a crash) is the only one asked from then on: under the same key,
        and first looked up where its contract does not answer a repeated key with its task."""
        key = record.submit_key if record is not None else None
        pinned = record.account if record is not None and record.upstream_id is None else None
        last, retry_after = "no answer", None
        for attempt in range(self._config.max_tries):
            tried: set[str] = set()
            while (name := pinned or self._choose(record, tried, speed=speed, sticky=sticky)) is not None:
                upstream = self._known(name, record)
                label = (lambda text: f"{name}: {text}") if len(self.accounts) > 1 else str
                if pinned is not None and key is not None and not upstream.contract.idempotent and (made := self._find(upstream, key)):
                    return made, upstream
                try:
                    return upstream.submit(build(upstream), key), upstream
                except Refused as refused:
                    last, retry_after = label(str(refused)), refused.retry_after
                    if pinned is not None:  # it may hold the earlier send: later, there again
                        break
                    tried.add(name)
                    if record is not None and record.refused(name, str(refused), disable=refused.gone, after=self._disable_after,
                                                             busy=refused.busy):
                        log.warning("upstream account disabled", engine=self.name, account=name, reason=str(refused)[:300])
                except Unsure as unsure:
                    last, retry_after, pinned = label(str(unsure)), None, name
                    break
            if attempt + 1 < self._config.max_tries:
                self.upstream.backoff(attempt, retry_after)
        raise EngineError(f"upstream still failing after {self._config.max_tries} tries: {last}", retryable=True)

    def _find(self, upstream: Upstream, key: str) -> dict[str, Any] | None:
        """The accepted answer of an earlier send under ``key`` that ``upstream`` shows, if any."""
        call = upstream.contract.lookup()
        if call is None:
            return None
        return upstream.contract.found(upstream.call(call.method, call.path, call.body), key)

    def _choose(self, record: UpstreamRecord | None, tried: set[str], *, speed: str | None, sticky: str | None) -> str | None:
        """The next account to send the submit to; None when every one was tried this round.
        ``Busy`` when all that could take it are full; an error when none can."""
        candidates = offers(self._config, speed=speed, sticky=sticky, besides=frozenset(tried))
        if not candidates:
            if tried:
                return None
            if sticky is not None:
                raise EngineError(f"upstream account {sticky!r}, which holds the parent's task, is no longer configured", retryable=False)
            raise EngineError(f"no account of engine {self.name} runs the {speed} speed tier", retryable=False)
        if record is None:  # no shared record (a direct use of the engine): the first account
            return candidates[0].name
        reserved = record.reserve(candidates, self._pick)
        if reserved.account is not None:
            return reserved.account
        if tried:
            return None
        if reserved.retry_after is not None:
            # Only a task any account could run says the whole engine is full (the worker then
            # claims none of its tasks for a while); a follow-up bound to one account does not.
            whole = sticky is None and len(candidates) == len(self.accounts)
            raise Busy(self.name, reserved.retry_after, reserved.why, whole_engine=whole)
        raise EngineError(f"no account of engine {self.name} can take the task: {reserved.why}", retryable=True)

    def _poll(
        self, account: Upstream, task_id: str, step: UpstreamStep, progress: ProgressCallback | None, key: str | None, park: bool,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + self._config.timeout_seconds
        contract = account.contract
        confirmed = False
        while True:
            task = contract.task(account.call("GET", contract.fetch(task_id).path))
            if task is None:
                raise EngineError(f"upstream answered something other than a task for {task_id}", retryable=True)
            status = task.get("status")
            if progress is not None and (fraction := upstream_progress(task)) is not None:
                progress(fraction)
            if status == "SUCCESS":
                return task
            if status in ("FAILURE", "CANCEL"):
                reason = task.get("fail_reason") or status
                banned = "code 24" in str(reason) or "banned" in str(reason).lower()
                raise _Ended(f"upstream task {task_id} ended {status}: {reason}", retryable=not banned)
            if status == "MODAL" and confirmed:  # confirmed, not yet moved on: not parked, or the next run confirms again
                if time.monotonic() >= deadline:
                    raise EngineError(f"upstream task {task_id} still waits in MODAL after its /modal", retryable=True)
                time.sleep(self._config.poll_seconds)
                continue
            if status == "MODAL":
                # Right after the submit, or in the next attempt when the last one stopped before it.
                ctx = self._context(account)
                modal = contract.confirm(step, ctx)
                if modal is None:
                    raise EngineError(f"upstream task {task_id} waits for /modal, and nothing was given for it", retryable=False)
                call = contract.modal(task_id, modal, ctx)
                account.call(call.method, call.path, call.body, f"{key}-modal" if key else None)
                confirmed = True
                continue
            if park:
                raise Waiting(task_id)
            if time.monotonic() >= deadline:
                raise EngineError(f"upstream task {task_id} still {status} after {self._config.timeout_seconds:g}s", retryable=True)
            time.sleep(self._config.poll_seconds)

    def _image(self, account: Upstream, url: str, width: int, height: int) -> tuple[Image.Image, bytes | None]:
        """The picture at ``url`` at the task's size, and its file when that holds it unchanged."""
        data = account.download(url)
        image = decode_picture(data, f"upstream image {url}")
        # The upstream chose its own sizes from the prompt; the task promised width x height.
        if image.size == (width, height):
            return image, data
        return image.resize((width, height), Image.Resampling.LANCZOS), None

    # --- for the upstream poller (work/upstream.py) --------------------------------------------

    @property
    def config(self) -> RemoteConfig:
        return self._config

    def poll_seconds(self, callbacks: bool) -> float:
        """Between two polls of a parked task: the fallback cadence when the upstream calls back."""
        return self._config.callback_poll_seconds if callbacks and self._config.callbacks else self._config.poll_seconds

    def status_session(self, account: str, connections: int) -> aiohttp.ClientSession:
        """A client of ``account`` for the poller's event loop: its key and the engine's timeout,
        at most ``connections`` requests at once, all kept alive. aiohttp, not httpx: a poll
        through httpx's asyncio stack cost about 3 ms of CPU (anyio builds a dict of callbacks
        per connection per request to check it), so 1,000 waiting tasks took most of a core."""
        import aiohttp  # imported where polling starts: API processes never pay for it

        upstream = self.accounts[account]
        return aiohttp.ClientSession(
            headers=upstream.contract.headers(upstream.account.api_key),
            timeout=aiohttp.ClientTimeout(total=self._config.request_timeout_seconds),
            connector=aiohttp.TCPConnector(limit=connections),
        )

    def batch_size(self, account: str) -> int:
        """Upstream tasks one status call may ask after (0: one call each)."""
        return 0 if account in self._unbatched else self.accounts[account].contract.batch_size

    async def _ask(self, session: aiohttp.ClientSession, account: str, call: Call) -> tuple[str, Any, int]:
        """The verdict, JSON and HTTP status of one call to ``account``; ``retry`` (status 0) on a
        network error."""
        import aiohttp

        upstream = self.accounts[account]
        try:
            async with session.request(call.method, upstream.account.base_url.rstrip("/") + call.path, json=call.body) as r:
                status, text = r.status, await r.text()
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError):
            return "retry", None, 0
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = None
        return upstream.contract.verdict(status, data, text).kind, data, status

    async def status(self, session: aiohttp.ClientSession, account: str, upstream_id: str) -> dict[str, Any] | None:
        """The upstream task as its account shows it now, in seed 004's terms; ``LOST`` when the
        upstream does not know it (the engine's own poll, when the task is handed back, says
        why); None when the answer says nothing (a network error, 429, 5xx: ask again at the
        next round)."""
        contract = self.accounts[account].contract
        verdict, data, _ = await self._ask(session, account, contract.fetch(upstream_id))
        if verdict == "ok":
            return contract.task(data)
        return {"status": "LOST"} if verdict in ("lost", "request") else None

    async def statuses(self, session: aiohttp.ClientSession, account: str, upstream_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        """Many upstream tasks in one call (midjourney-proxy's ``list-by-condition``); a task the
        answer leaves out is ``LOST``, and every one is None when the call failed."""
        contract = self.accounts[account].contract
        verdict, data, status = await self._ask(session, account, contract.batch(upstream_ids))
        if status in (404, 405, 501):  # no such route there: task by task from now on
            log.info("upstream answers no batched status call; polling task by task", engine=self.name, account=account)
            self._unbatched.add(account)
        if verdict != "ok":
            return dict.fromkeys(upstream_ids)
        found = contract.tasks(data)
        return {upstream_id: found.get(upstream_id, {"status": "LOST"}) for upstream_id in upstream_ids}

    async def cancel(self, session: aiohttp.ClientSession, account: str, upstream_id: str) -> None:
        """Ask the upstream to stop a task that nobody here waits for any more (best effort)."""
        await self._ask(session, account, self.accounts[account].contract.cancel(upstream_id))

    def probe(self, account: str) -> str | None:
        """What is wrong with ``account`` now, or None when it answers as it should."""
        try:
            self.accounts[account].probe()
        except (RuntimeError, httpx.HTTPError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None


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


def _meta(task: dict[str, Any], account: Upstream) -> dict[str, Any]:
    return {
        "upstream_task_id": str(task["task_id"]), "upstream_account": account.account.name,
        "upstream_quota": task.get("quota"), "upstream_action": task.get("action"),
    }


def decode_picture(data: bytes, what: str) -> Image.Image:
    """An upstream's picture as RGB; one that does not decode is the upstream's fault (retryable)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")
    except Exception as exc:  # any undecodable answer is the upstream's fault
        raise EngineError(f"{what} does not decode: {exc}", retryable=True) from exc
