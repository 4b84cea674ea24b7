"""Engines by name, built from ``PIXELMILL_ENGINES``: the one place an engine kind becomes an
instance. Each entry names its ``kind`` and that kind's settings:

- ``procedural``: ``delay_ms`` (simulated latency per image; default ``PIXELMILL_PROCEDURAL_DELAY_MS``);
- ``remote``: ``base_url`` and ``api_key``, or ``accounts`` (a pool); ``contract`` (``seed004``,
  ``midjourney-proxy``, ``openai``), ``selection``, ``disable_after_failures``, ``probe_seconds``,
  ``poll_seconds``, ``backoff_seconds``, ``max_tries``, ``submit_per_minute``,
  ``timeout_seconds``, ``callbacks``, ``callback_poll_seconds``; for ``openai``:
  ``upstream_model``, ``sizes``, ``quality``, ``response_format`` (``engines/remote/``);
- ``diffusers``: ``model`` (hub id or folder) and the knobs of ``engines/diffusers.py``; needs
  ``pip install pixelmill[diffusers]``.

Bad settings stop the process at start, with the engine's name in the message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pixelmill.engines.base import Engine
from pixelmill.engines.faults import FaultInjectingEngine
from pixelmill.engines.procedural import ProceduralEngine
from pixelmill.engines.remote import RemoteConfig, RemoteEngine
from pixelmill.engines.remote.openai import OpenAIImagesEngine

if TYPE_CHECKING:  # settings reads engine rules (faults) to check them: the type only, no import cycle
    from pixelmill.settings import Settings

KINDS = ("procedural", "remote", "diffusers")


def build_engine(name: str, spec: Mapping[str, Any], settings: Settings) -> Engine:
    kind = spec.get("kind")
    if kind == "procedural":
        unknown = set(spec) - {"kind", "delay_ms"}
        if unknown:
            raise ValueError(f"unknown settings {', '.join(sorted(unknown))}")
        delay = spec.get("delay_ms", settings.procedural_delay_ms)
        if isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= 600_000:
            raise ValueError(f"delay_ms must be whole milliseconds, 0-600000; got {delay!r}")
        return ProceduralEngine(delay_ms=delay, name=name)
    if kind == "remote":
        config = RemoteConfig.from_json(spec)
        if config.callbacks and not settings.public_url:
            raise ValueError("callbacks need PIXELMILL_PUBLIC_URL: the upstream calls back there")
        if config.contract == "openai":
            return OpenAIImagesEngine(name, config, fetch_allow=settings.fetch_allow)
        return RemoteEngine(name, config, fetch_allow=settings.fetch_allow)
    if kind == "diffusers":
        from pixelmill.engines.diffusers import DiffusersEngine  # torch is optional: imported only when asked for

        return DiffusersEngine.from_json(name, spec)
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")


def build_engines(settings: Settings) -> dict[str, Engine]:
    engines: dict[str, Engine] = {}
    for name, spec in settings.engines.items():
        try:
            engine = build_engine(name, spec, settings)
        except (ValueError, ImportError) as exc:
            for built in engines.values():
                built.close()
            raise ValueError(f"engine {name!r}: {exc}") from exc
        engines[name] = FaultInjectingEngine(engine, settings.fault_injection) if settings.fault_injection else engine
    return engines
