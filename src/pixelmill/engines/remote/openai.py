"""A remote engine over the OpenAI Images API (gpt-image, dall-e), one account or a pool.

The API has no tasks to follow: a call answers with the pictures. So this engine paints the
pixels it is given, as the procedural and diffusers engines do, and the executor prepares every
operation in pixels:

- imagine → ``POST /v1/images/generations`` with ``n`` = one picture per seed (four for a grid), at
  the configured size nearest the task's aspect. A model that makes fewer a call
  (``pictures_per_call``: dall-e-3 makes one) is asked in several calls at once, to the task's
  one account, each under its own Idempotency-Key;
- variation, remix, inpaint, zoom and pan → ``POST /v1/images/edits`` with the picture and, where
  part of it is kept (inpaint, zoom, pan), the mask: transparent where the upstream repaints, as
  the API reads masks. A variation's strength has no form there: subtle and strong are both an
  edit of the whole picture with the task's prompt;
- blend, and an imagine with image prompts → an edit with the pictures as ``image[]``;
- an upscale pick is local (the picture is already stored); a creative upscale is an edit;
- video: refused (the API makes no video), as is a negative prompt's effect (it is not sent).

Pools, failover, health and the Idempotency-Key work as for every remote engine. A call holds its
worker thread while the upstream paints (there is no upstream task to park). An answer lost on the
way back is asked again of the same account under the same key: another pixelmill answers it from
its record, the OpenAI API may make (and bill) the pictures again.
"""

from __future__ import annotations

import base64
import contextvars
import io
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from PIL import Image

from pixelmill.engines.base import GenerationRequest, GenerationResult, ProgressCallback, UpstreamRecord, VideoRequest, VideoResult
from pixelmill.engines.remote.contracts import Call
from pixelmill.engines.remote.engine import RemoteEngine, decode_picture
from pixelmill.engines.remote.http import Upstream
from pixelmill.exceptions import EngineError

if TYPE_CHECKING:
    from pixelmill.queue.accounts import Offer, Reserved, Slot


class OpenAIImagesEngine(RemoteEngine):
    runs_operations = False
    records_upstream = True
    fixes_seeds = False  # the API takes no seed

    def generate(self, request: GenerationRequest, progress: ProgressCallback | None = None) -> GenerationResult:
        record = request.upstream
        counts = _shares(len(request.seeds), self._config.per_call)
        calls = {n: self._call(request, n) for n in set(counts)}  # the pictures of an edit are encoded once
        started = time.monotonic()
        if len(counts) == 1:
            answers = [self._send(lambda _: calls[counts[0]], record)]
        else:
            answers = self._send_parts([calls[n] for n in counts], record, progress)
        took = int((time.monotonic() - started) * 1000)
        pictures = [self._picture(account, item, request) for answer, account in answers
                    for item in answer.get("data") or [] if isinstance(item, dict)]
        images, files = [image for image, _ in pictures], [data for _, data in pictures]
        if len(images) < len(request.seeds):
            raise EngineError(f"upstream made {len(images)} pictures, {len(request.seeds)} asked for", retryable=True)
        if record is not None:  # no upstream task to follow: counted, and the account let go
            record.answered(took)
        if progress is not None:
            progress(1.0)
        revised = [str(item["revised_prompt"]) for answer, _ in answers for item in answer.get("data") or []
                   if isinstance(item, dict) and item.get("revised_prompt")]
        meta = {"upstream_account": answers[0][1].account.name, "upstream_model": self._config.upstream_model}
        return GenerationResult(images=tuple(images[: len(request.seeds)]), model=self.model,
                                meta=meta | ({"revised_prompt": revised[0]} if revised else {}), files=tuple(files[: len(request.seeds)]))

    def _send_parts(self, calls: list[Call], record: UpstreamRecord | None, progress: ProgressCallback | None) -> list[tuple[dict[str, Any], Upstream]]:
        """The calls of a task whose pictures take more than one (dall-e-3 makes one a call).

        The task's account is chosen first, as for a single call, before anything is sent: when
        every account is full the task waits in the queue with nothing paid for. Then every call
        goes to that account at once, each under its own Idempotency-Key (the task's, then
        ``-2``, ``-3`` ...: the same in every attempt), and the task counts as one upstream task
        there, as a single call does. Once a call has failed for good the others are not tried
        again; the task's next attempt sends them all anew, to the same account under the same
        keys (it may hold some of them, as after a crash)."""
        if record is not None and record.upstream_id is None and record.account is not None:
            account = record.account  # an earlier attempt's: it may hold some of the calls
        else:
            chosen = self._choose(record, set(), speed=None, sticky=None)
            assert chosen is not None  # nothing tried yet: an account, or Busy, or an error
            account = chosen
        failed = threading.Event()
        finished = 0
        lock = threading.Lock()

        def send(i: int) -> tuple[dict[str, Any], Upstream]:
            nonlocal finished

            def build(_: Upstream) -> Call:
                if failed.is_set():
                    raise EngineError("another call of this task failed", retryable=True)
                return calls[i]

            try:
                sent = self._send(build, None if record is None else _Part(record, i, account))
            except BaseException:
                failed.set()
                raise
            if progress is not None:
                with lock:
                    finished += 1
                    progress(min(0.99, finished / len(calls)))
            return sent

        with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix=f"{self.name}-call") as pool:
            # Each call in a copy of this thread's context: its log lines name the task.
            futures = [pool.submit(contextvars.copy_context().run, send, i) for i in range(len(calls))]
            return [future.result() for future in futures]

    def animate(self, request: VideoRequest, progress: ProgressCallback | None = None) -> VideoResult:
        raise EngineError("the OpenAI Images API makes no video", retryable=False)

    def _call(self, request: GenerationRequest, n: int) -> Call:
        # The API needs a prompt; a blend has none, so it says what a blend is.
        prompt = request.prompt or request.source_prompt or "one picture that blends the given pictures"
        fields: dict[str, object] = {"model": self._config.upstream_model, "prompt": prompt, "n": n}
        if self._config.quality:
            fields["quality"] = self._config.quality
        if self._config.response_format:
            fields["response_format"] = self._config.response_format
        pictures = ([request.init_image] if request.init_image is not None and not request.image_prompts else []) + list(request.image_prompts)
        if not pictures:
            return Call("POST", "/v1/images/generations", fields | {"size": self._size(request.width, request.height)})
        if request.mask is not None and request.init_image is not None:
            # The API repaints where the mask is transparent; pixelmill's masks are white there.
            alpha = Image.eval(request.mask.convert("L").resize(request.init_image.size), lambda v: 255 - v)
            mask = Image.new("RGBA", request.init_image.size, (0, 0, 0, 255))
            mask.putalpha(alpha)
            files = (("image", ("image.png", _png(request.init_image), "image/png")), ("mask", ("mask.png", _png(mask), "image/png")))
            return Call("POST", "/v1/images/edits", fields, files)
        name = "image" if len(pictures) == 1 else "image[]"
        return Call("POST", "/v1/images/edits", fields, tuple((name, (f"image{i}.png", _png(p), "image/png")) for i, p in enumerate(pictures)))

    def _size(self, width: int, height: int) -> str:
        """The configured size nearest the task's aspect (ties: the first)."""
        aspect = width / height

        def off(size: str) -> float:
            w, _, h = size.partition("x")
            return abs(int(w) / int(h) - aspect)

        return min(self._config.sizes, key=off)

    def _picture(self, account: Upstream, item: dict[str, object], request: GenerationRequest) -> tuple[Image.Image, bytes | None]:
        """A picture of the answer at the task's size, and its file when that holds it unchanged."""
        if isinstance(item.get("b64_json"), str):
            data = base64.b64decode(str(item["b64_json"]))
        elif isinstance(item.get("url"), str):
            data = account.download(str(item["url"]))
        else:
            raise EngineError("upstream answered a picture with neither b64_json nor url", retryable=True)
        image = decode_picture(data, "upstream picture")
        size = (request.width, request.height)
        return (image, data) if image.size == size else (image.resize(size, Image.Resampling.LANCZOS), None)


def _shares(pictures: int, per_call: int) -> list[int]:
    """How many pictures each call asks for: as few calls as ``per_call`` allows."""
    calls = -(-pictures // per_call)
    return [len(range(i, pictures, calls)) for i in range(calls)]


class _Part:
    """One call of a task that needs several, as the task's upstream record shows it to
    ``_send``: its own Idempotency-Key (the task's, then ``-2``, ``-3`` ...) and the task's
    account, which it keeps (``_send`` then asks only it, as it does an account that may hold
    a submit)."""

    upstream_id: str | None = None
    callback_url: str | None = None
    park = False

    def __init__(self, record: UpstreamRecord, index: int, account: str) -> None:
        self._record = record
        self.submit_key = record.submit_key if index == 0 else f"{record.submit_key}-{index + 1}"
        self.account: str | None = account

    def reserve(self, offers: Sequence[Offer], pick: Callable[[Sequence[Slot]], str]) -> Reserved:
        raise AssertionError("a call of a task with several goes to the task's account")

    def refused(self, account: str, reason: str, *, disable: bool, after: int, busy: bool = False) -> bool:
        raise AssertionError("a call of a task with several goes to the task's account")

    def accepted(self, upstream_id: str) -> None:
        raise AssertionError("an OpenAI Images call has no upstream task")

    def done(self) -> None:
        raise AssertionError("an OpenAI Images call has no upstream task")

    def answered(self, latency_ms: int) -> None:
        raise AssertionError("the task's record counts the answer, once, when every call has")

    def ended(self) -> None:  # its account left the configuration
        self._record.ended()


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)  # sent once, at once: speed over size
    return out.getvalue()
