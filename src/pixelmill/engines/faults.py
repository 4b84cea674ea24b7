"""Fault injection: make an engine fail on purpose, to test and rehearse failure handling.

``PIXELMILL_FAULT_INJECTION`` holds a JSON list of rules; a request whose prompt contains a
rule's ``match`` text fails with that rule's error for its first ``times`` attempts (every attempt
when ``times`` is omitted), then goes to the real engine. ``retryable`` says how the failure is
classified. Example::

    [{"match": "flaky", "times": 2, "retryable": true, "error": "upstream timed out"},
     {"match": "broken", "retryable": false, "error": "model refused the input"}]

Attempts are counted per request (prompt, size and seeds) in this process.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image

from pixelmill.engines.base import Engine, GenerationRequest, GenerationResult, ProgressCallback, VideoRequest, VideoResult
from pixelmill.exceptions import EngineError


@dataclass(frozen=True)
class FaultRule:
    match: str
    retryable: bool
    times: int | None = None
    error: str = "injected fault"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultRule:
        unknown = set(data) - {"match", "retryable", "times", "error"}
        if unknown or not isinstance(data.get("match"), str) or not data["match"]:
            raise ValueError(f"fault rule needs a non-empty 'match' and only match/retryable/times/error: {dict(data)}")
        times = data.get("times")
        if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
            raise ValueError(f"fault rule 'times' must be a positive integer, got {times!r}")
        retryable = data.get("retryable", True)
        if not isinstance(retryable, bool):
            raise ValueError(f"fault rule 'retryable' must be true or false, got {retryable!r}")
        error = data.get("error", "injected fault")
        if not isinstance(error, str):
            raise ValueError(f"fault rule 'error' must be text, got {error!r}")
        return cls(data["match"], retryable, times, error)


class FaultInjectingEngine(Engine):
    def __init__(self, inner: Engine, rules: Iterable[Mapping[str, Any]]) -> None:
        self._inner = inner
        self._rules = tuple(FaultRule.from_json(r) for r in rules)
        self.name = inner.name
        self.model = inner.model
        self.runs_operations = inner.runs_operations
        self.records_upstream = inner.records_upstream
        self.fixes_seeds = inner.fixes_seeds
        self._attempts: Counter[tuple[Any, ...]] = Counter()
        self._lock = threading.Lock()

    def generate(self, request: GenerationRequest, progress: ProgressCallback | None = None) -> GenerationResult:
        for rule in self._rules:
            if rule.match in request.prompt:
                key = (rule.match, request.prompt, request.width, request.height, request.seeds)
                with self._lock:
                    self._attempts[key] += 1
                    attempt = self._attempts[key]
                if rule.times is None or attempt <= rule.times:
                    raise EngineError(f"{rule.error} (injected, attempt {attempt})", retryable=rule.retryable)
        return self._inner.generate(request, progress)

    def describe(self, image: Image.Image) -> tuple[str, ...]:
        return self._inner.describe(image)

    def animate(self, request: VideoRequest, progress: ProgressCallback | None = None) -> VideoResult:
        return self._inner.animate(request, progress)

    def check(self) -> None:
        self._inner.check()

    def unwrapped(self) -> Engine:
        return self._inner.unwrapped()

    def close(self) -> None:
        self._inner.close()
