"""Where a task's time goes: the stage budget.

Every task records how long it spent in each stage of its life (``tasks.stages``, in
milliseconds), and ``/metrics`` has a histogram per stage (``pixelmill_stage_seconds``):

=============  =================================================================================
accept         the submit request, from its first byte to the insert (validation, templates,
               moderation, input images, price); the commit is not in it
queue          waiting in the lane: from when it was due (submitted, answered in /modal, its
               retry's backoff over) to the claim, in the database's clock
claim          the worker's claim query
engine         the model: ``generate`` / ``animate``, previews not counted
preview        storing (and screening) the previews the engine offered while it ran
screening      output screening of the finished images
postprocess    after screening until the result is ready: the grid and the images, encoded with
               their provenance and written (side by side; this is their wall time). Renditions
               and provenance records are made after SUCCESS, off this path (queue/finishing.py)
storage        the part of postprocess spent writing files, summed over the parallel writers
finalize       recording the result (the SUCCESS write); in the histogram only, since the row
               is written by that very write
=============  =================================================================================

Stages are measured where they happen with ``stage(name)``, which adds to the timer of the task
being run (a context variable, so nothing is passed through every call). A stage inside another
on the same thread (a preview inside the engine call) is taken out of the outer one, so the
stages of one thread never count the same time twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

STAGES = ("accept", "queue", "claim", "engine", "preview", "screening", "postprocess", "storage", "finalize")

_T = TypeVar("_T")


class StageTimer:
    """The stage times of one task run; threads of that run may add to it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: dict[str, float] = {}
        self._open = threading.local()

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self._seconds[name] = self._seconds.get(name, 0.0) + seconds

    @contextmanager
    def measure(self, name: str, *, part_of_outer: bool = False) -> Iterator[None]:
        """Time the block as ``name``, less the stages nested in it. ``part_of_outer``: the time
        also stays in the enclosing stage (storage is a part of postprocess, not apart from it)."""
        stack: list[list[float]] = self._open.__dict__.setdefault("stack", [])
        frame = [time.perf_counter(), 0.0]  # start, time of the stages nested in it
        stack.append(frame)
        try:
            yield
        finally:
            stack.pop()
            elapsed = time.perf_counter() - frame[0]
            self.add(name, elapsed - frame[1])
            if stack and not part_of_outer:
                stack[-1][1] += elapsed

    def milliseconds(self) -> dict[str, float]:
        with self._lock:
            return {name: round(seconds * 1000, 2) for name, seconds in self._seconds.items()}


_current: ContextVar[StageTimer | None] = ContextVar("pixelmill_stage_timer", default=None)
_request_started: ContextVar[float | None] = ContextVar("pixelmill_request_started", default=None)
#: Called with (stage, seconds) for every stage measured in this process (``/metrics``).
StageObserver = Callable[[str, float], None]


@contextmanager
def request_clock() -> Iterator[None]:
    """Note when the request being served began (the HTTP middleware): ``accept`` counts from it."""
    token = _request_started.set(time.perf_counter())
    try:
        yield
    finally:
        _request_started.reset(token)


def since_request_start() -> float | None:
    """Seconds since the request being served began; None outside a request (the CLI, a test)."""
    started = _request_started.get()
    return None if started is None else time.perf_counter() - started


@contextmanager
def timing(timer: StageTimer) -> Iterator[StageTimer]:
    """Make ``timer`` the one ``stage`` adds to, in this context (a task run)."""
    token = _current.set(timer)
    try:
        yield timer
    finally:
        _current.reset(token)


@contextmanager
def stage(name: str, *, part_of_outer: bool = False) -> Iterator[None]:
    """Count the time of the block as stage ``name`` of the task being run (nothing without one)."""
    timer = _current.get()
    if timer is None:
        yield
        return
    with timer.measure(name, part_of_outer=part_of_outer):
        yield


def in_this_context(fn: Callable[..., _T]) -> Callable[..., _T]:
    """``fn`` bound to the caller's timer, for a thread pool (a new thread starts without it)."""
    timer = _current.get()

    def run(*args: object, **kwargs: object) -> _T:
        if timer is None:
            return fn(*args, **kwargs)
        with timing(timer):
            return fn(*args, **kwargs)

    return run
