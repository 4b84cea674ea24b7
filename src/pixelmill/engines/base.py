"""The engine interface: a typed generation request in, images out.

Every engine (procedural, diffusers, remote) implements ``Engine.generate``. One request yields
one image per seed, so a 2×2 grid is reproducible image by image. Optional ``init_image`` +
``strength`` (image-to-image: variation, remix, creative upscale, blend), ``mask`` (inpaint, and
the canvas extension of zoom and pan: white = repaint) serve the follow-up operations;
``image_prompts`` + ``image_weight`` (``--iw``) guide a generation towards given pictures.

Two optional methods: ``describe`` (image → prompt suggestions; the default reads colour, light
and composition, see ``media/describe.py``) and ``animate`` (image → MP4 clips), which engines
without video leave refusing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from PIL import Image
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from pixelmill.exceptions import EngineError
from pixelmill.media.describe import describe_image
from pixelmill.prompts.params import MAX_SEED
from pixelmill.validation import explain

if TYPE_CHECKING:  # the account records' shapes, for the protocol's signatures only
    from pixelmill.queue.accounts import Offer, Reserved, Slot


class ProgressCallback(Protocol):
    """Called by engines with the finished fraction of the request (0.0-1.0) and, when they
    have one, a picture of the work so far (any size; it is shrunk to a low-resolution preview)."""

    def __call__(self, fraction: float, preview: Image.Image | None = None) -> None: ...


#: Failures that say nothing about the request: trying again may well pass.
_TRANSIENT = (TimeoutError, ConnectionError, OSError, MemoryError)


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt may succeed. Engines say so on ``EngineError``; otherwise timeouts,
    connection and OS errors and memory pressure (a busy GPU) are transient, while programming
    errors (TypeError, ValueError, KeyError ...) would fail the same way again."""
    if isinstance(exc, EngineError):
        return exc.retryable
    return isinstance(exc, _TRANSIENT)

C = TypeVar("C")


def settings_from_json(cls: type[C], spec: Mapping[str, Any]) -> C:
    """An engine's settings (a dataclass) from its entry in ``PIXELMILL_ENGINES``: an unknown key,
    a missing one or a value of the wrong type (a word where a number belongs) is a ValueError
    naming the key, so the start stops with the rule instead of a task failing later."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]  # cls is a dataclass: every caller passes one
    unknown = set(spec) - known - {"kind"}
    if unknown:
        raise ValueError(f"unknown settings {', '.join(sorted(unknown))}")
    try:
        return TypeAdapter(cls).validate_python({k: v for k, v in spec.items() if k in known})
    except PydanticValidationError as exc:
        raise ValueError(explain(exc.errors()[0])) from None


class UpstreamRecord(Protocol):
    """For an engine that runs operations upstream: the task's record of its upstream task
    (``queue/upstream.py``), which outlives the attempt, so that no attempt submits twice."""

    #: The Idempotency-Key the submit carries: the same for every attempt until an upstream task
    #: ended without a result.
    submit_key: str
    #: The upstream task an earlier attempt started: follow it instead of submitting.
    upstream_id: str | None
    #: Where an upstream that takes webhooks may say the task changed (None: poll only).
    callback_url: str | None
    #: The account of the engine's pool the submit went to, or is being sent to (None: not yet
    #: chosen). A submit whose answer was lost goes to it again, under the same key.
    account: str | None

    def reserve(self, offers: Sequence[Offer], pick: Callable[[Sequence[Slot]], str]) -> Reserved:
        """Choose an account with room among ``offers`` (by ``pick``), shared with every process,
        and record it as the task's account."""

    def refused(self, account: str, reason: str, *, disable: bool, after: int, busy: bool = False) -> bool:
        """``account`` did not take the submit; it is disabled when ``disable`` (until an admin
        enables it) or after ``after`` refusals in a row that were not ``busy`` (until a probe
        does). True when this disabled it."""

    def accepted(self, upstream_id: str) -> None:
        """The upstream accepted the submit: recorded before anything else happens."""

    def done(self) -> None:
        """The upstream task ended with a result: its account has room for another."""

    def answered(self, latency_ms: int) -> None:
        """A call that answers with its result (no upstream task to follow) succeeded after
        ``latency_ms``: counted for its account, which the next call chooses anew."""

    def ended(self) -> None:
        """The upstream task ended without a result: the next attempt submits anew."""

    @property
    def park(self) -> bool:
        """Whether an upstream poller in this process follows waiting tasks: then the engine
        raises ``Waiting`` once the upstream has the task, instead of polling in its thread."""


class Busy(Exception):
    """Every upstream account that could run the task is full (capacity or submit limits): the
    task goes back to the queue, without spending an attempt, and is tried again after
    ``retry_after`` seconds. Not a failure."""

    def __init__(self, engine: str, retry_after: float, why: str, *, whole_engine: bool = True) -> None:
        super().__init__(f"engine {engine} has no account with room: {why}")
        self.engine = engine
        self.retry_after = retry_after
        #: Every account of the engine is full (not only those a follow-up or a speed tier may use).
        self.whole_engine = whole_engine


class Waiting(Exception):
    """The task now waits upstream (``UpstreamRecord.park``): the worker parks it for the
    upstream poller, which hands it back when the upstream task has ended."""

    def __init__(self, upstream_id: str) -> None:
        super().__init__(f"waiting for upstream task {upstream_id}")
        self.upstream_id = upstream_id


@dataclass(frozen=True)
class UpstreamStep:
    """For an engine that runs whole operations itself (a remote Midjourney-style API): the
    operation and its wire fields, where ``task_id`` names the parent's task upstream. Engines
    that paint pixels ignore it and use the image fields instead."""

    operation: str
    fields: dict[str, Any] = field(default_factory=dict)
    #: The account of the upstream pool that holds the parent's task: a follow-up goes there.
    account: str | None = None
    #: The task's speed tier (fast, relax, turbo), for accounts that run only some.
    speed: str | None = None


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    width: int
    height: int
    seeds: tuple[int, ...]
    negative_prompt: str = ""
    init_image: Image.Image | None = None
    mask: Image.Image | None = None
    #: How far from ``init_image`` to move: 0 keeps it, 1 ignores it.
    strength: float = 1.0
    image_prompts: tuple[Image.Image, ...] = ()
    #: How strongly ``image_prompts`` steer the result, 0-3 (Midjourney's --iw; 1 is the default).
    image_weight: float = 1.0
    #: The whole canonical prompt with its flags, for engines that take prompt text as it is.
    source_prompt: str = ""
    step: UpstreamStep | None = None
    #: Given with ``step`` (and to engines that record upstream calls): where the task's upstream
    #: task is recorded.
    upstream: UpstreamRecord | None = None

    def __post_init__(self) -> None:
        # Programming errors, not user errors: user input is validated before it gets here.
        if not (64 <= self.width <= 8192 and 64 <= self.height <= 8192):
            raise ValueError(f"size {self.width}x{self.height} outside 64..8192")
        if self.width % 8 or self.height % 8:
            raise ValueError(f"size {self.width}x{self.height} must be multiples of 8")
        if not self.seeds or any(not 0 <= s <= MAX_SEED for s in self.seeds):
            raise ValueError(f"seeds must be 1+ values in 0..{MAX_SEED}")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError("strength must be within 0..1")
        if not 0.0 <= self.image_weight <= 3.0:
            raise ValueError("image_weight must be within 0..3")
        if self.mask is not None and self.init_image is None:
            raise ValueError("a mask needs an init image")


@dataclass(frozen=True)
class VideoRequest:
    image: Image.Image
    width: int
    height: int
    #: One clip per seed.
    seeds: tuple[int, ...]
    frames: int
    fps: int
    #: "low" or "high": how far the camera and the scene move.
    motion: str = "low"
    prompt: str = ""
    #: The start_end forms: the clip ends on this picture.
    end_image: Image.Image | None = None
    step: UpstreamStep | None = None
    upstream: UpstreamRecord | None = None

    def __post_init__(self) -> None:
        if self.width % 2 or self.height % 2 or not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
            raise ValueError(f"video size {self.width}x{self.height} must be even and within 16..4096")
        if not self.seeds or self.frames < 1 or self.fps < 1 or self.motion not in ("low", "high"):
            raise ValueError("a video needs seeds, frames >= 1, fps >= 1 and motion low|high")


@dataclass(frozen=True)
class VideoResult:
    #: One H.264 MP4 file per seed.
    clips: tuple[bytes, ...]
    model: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GenerationResult:
    images: tuple[Image.Image, ...]
    #: The model that made the images, recorded with the task (e.g. "procedural-v1").
    model: str
    #: What the engine wants kept with the task (a remote engine: the upstream task id and charge).
    meta: dict[str, Any] = field(default_factory=dict)
    #: By image, the file it was decoded from unchanged (a remote engine's download), or None:
    #: stored without encoding it again where the output profile allows (``media/output.py``).
    files: tuple[bytes | None, ...] = ()


class Engine(ABC):
    #: The name used in settings and on tasks ("procedural", "diffusers", "remote").
    name: str
    #: The model version it renders with; part of the request cache key, so a new model never
    #: answers from an old model's cache.
    model: str
    #: True for an engine that runs whole operations itself (it reads ``step``), such as a remote
    #: Midjourney-style API; False for one that paints the pixels it is given.
    runs_operations: bool = False
    #: True for an engine whose calls go to upstream accounts (a remote API that paints pixels,
    #: as the OpenAI Images API does): it is given the task's ``upstream`` record too, for its
    #: pool's accounts and its submit's key.
    records_upstream: bool = False
    #: Whether a seed fixes the pixels (the same request, the same image). False for an upstream
    #: that takes no seed (the OpenAI Images API): its tasks are not reproducible.
    fixes_seeds: bool = True

    @abstractmethod
    def generate(
        self, request: GenerationRequest, progress: ProgressCallback | None = None
    ) -> GenerationResult:
        """Make one RGB image per seed, ``width`` x ``height``. Raise ``pixelmill.exceptions.EngineError`` on failure."""

    def describe(self, image: Image.Image) -> tuple[str, ...]:
        """Four prompts that could have made ``image``. Default: pixelmill's own image analysis."""
        return describe_image(image)

    def animate(self, request: VideoRequest, progress: ProgressCallback | None = None) -> VideoResult:
        """MP4 clips that bring ``request.image`` to life, one per seed."""
        raise EngineError(f"the {self.name} engine does not make videos", retryable=False)

    def check(self) -> None:
        """Raise when the engine cannot take work now (readiness: model loaded, upstream up)."""

    def unwrapped(self) -> Engine:
        """The engine itself, under any wrapper (fault injection)."""
        return self

    def close(self) -> None:
        """Release models, sessions, processes."""

