"""A remote engine's settings: the upstream (one, or a pool of accounts) and how it is called.

An engine of kind remote names either one upstream (``base_url`` and ``api_key``) or a pool of
``accounts``, each an upstream with its own base URL and key (midjourney-proxy's account model):

- ``weight`` (weighted selection), ``max_in_flight`` (upstream tasks running at once, the core
  size) and ``queue_size`` (more that the upstream may hold in its own queue), so an account
  takes at most ``max_in_flight + queue_size`` tasks at a time; ``None``: no limit;
- ``submit_per_minute`` and ``daily_limit``: submits, counted in the database, so every process
  shares them;
- ``speeds``: the speed tiers (fast, relax, turbo) it may run; ``None``: any.

``selection`` picks among accounts with room: ``least_busy`` (default), ``weighted`` (random by
weight) or ``round_robin``. One upstream is a pool of one account named ``default``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from pixelmill.engines.base import settings_from_json
from pixelmill.prompts.params import SPEEDS


@dataclass(frozen=True)
class AccountConfig:
    name: str
    base_url: str
    api_key: str
    weight: float = 1.0
    max_in_flight: int | None = None
    queue_size: int = 0
    submit_per_minute: int | None = None
    daily_limit: int | None = None
    speeds: tuple[str, ...] | None = None

    @property
    def capacity(self) -> int | None:
        """Upstream tasks the account holds at once (running and in its own queue)."""
        return None if self.max_in_flight is None else self.max_in_flight + self.queue_size

    def runs(self, speed: str | None) -> bool:
        return speed is None or self.speeds is None or speed in self.speeds


@dataclass(frozen=True)
class RemoteConfig:
    #: One upstream; or ``accounts``.
    base_url: str = ""
    api_key: str = ""
    accounts: tuple[AccountConfig, ...] = ()
    #: The upstream's API (``contracts.py``): ``seed004`` (another pixelmill), ``midjourney-proxy``
    #: or ``openai`` (the OpenAI Images API, ``openai.py``).
    contract: Literal["seed004", "midjourney-proxy", "openai"] = "seed004"
    #: OpenAI Images only: the model asked for, the sizes it makes (the nearest in aspect is
    #: asked for; the pictures are then fitted to the task's size), ``quality`` when given, and
    #: ``response_format`` when the model takes one (gpt-image models answer base64 always).
    upstream_model: str = "gpt-image-1"
    sizes: tuple[str, ...] = ("1024x1024", "1536x1024", "1024x1536")
    quality: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    #: OpenAI Images only: pictures one call may ask for (the API's ``n``). A grid that needs more
    #: is asked for in several calls at once. None: 1 for dall-e-3, which refuses more, else 10.
    pictures_per_call: int | None = None
    selection: Literal["least_busy", "weighted", "round_robin"] = "least_busy"
    #: Submits an account refuses in a row (5xx, network errors) before it is disabled; an auth
    #: failure or a ban disables it at once. A probe every ``probe_seconds`` re-enables it.
    disable_after_failures: int = 5
    probe_seconds: float = 30.0
    #: Seconds between polls of a running upstream task (seed 004 recommends 3-5 s).
    poll_seconds: float = 3.0
    #: Backoff before retry N of a retryable answer; the last value repeats.
    backoff_seconds: tuple[float, ...] = (1.0, 4.0, 16.0)
    #: Tries of one call (submit, poll or download) before the task attempt fails, retryable.
    max_tries: int = 4
    #: Submissions per minute this process sends to an account, at most (accounts set their own,
    #: shared by every process).
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

    @property
    def per_call(self) -> int:
        """Pictures one OpenAI Images call asks for at most (``pictures_per_call``)."""
        if self.pictures_per_call is not None:
            return self.pictures_per_call
        return 1 if self.upstream_model.startswith("dall-e-3") else 10

    @property
    def pool(self) -> tuple[AccountConfig, ...]:
        """The accounts, in configuration order: ``accounts``, or the one upstream as ``default``."""
        return self.accounts or (AccountConfig("default", self.base_url, self.api_key),)

    @classmethod
    def from_json(cls, spec: Mapping[str, Any]) -> RemoteConfig:
        accounts = spec.get("accounts")
        if accounts is not None:
            if "base_url" in spec or "api_key" in spec:
                raise ValueError("remote engine: give 'base_url' and 'api_key' or 'accounts', not both")
            if not isinstance(accounts, list) or not accounts:
                raise ValueError("remote engine: 'accounts' must be a non-empty list")
            known = {f.name for f in fields(AccountConfig)}
            for i, account in enumerate(accounts):
                if not isinstance(account, dict):
                    raise ValueError(f"remote engine: accounts[{i}] must be an object")
                unknown = set(account) - known
                if unknown:
                    raise ValueError(f"remote engine: accounts[{i}]: unknown settings {', '.join(sorted(unknown))}")
                for required in ("name", "base_url", "api_key"):
                    if not isinstance(account.get(required), str) or not account[required]:
                        raise ValueError(f"remote engine: accounts[{i}]: '{required}' is required")
        else:
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
        if config.disable_after_failures < 1 or config.probe_seconds <= 0:
            raise ValueError("remote engine: disable_after_failures >= 1 and probe_seconds > 0 needed")
        for size in config.sizes:
            w, _, h = size.partition("x")
            if not (w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0):
                raise ValueError(f"remote engine: sizes: {size!r} is not WxH")
        if config.pictures_per_call is not None and not 1 <= config.pictures_per_call <= 10:
            raise ValueError("remote engine: pictures_per_call must be 1 to 10 (the OpenAI Images API's n)")
        if config.pictures_per_call is not None and config.contract != "openai":
            raise ValueError("remote engine: pictures_per_call is for the openai contract only (a task upstream makes its grid)")
        if not config.sizes:
            raise ValueError("remote engine: sizes must name at least one WxH")
        names = [a.name for a in config.pool]
        if len(set(names)) != len(names):
            raise ValueError("remote engine: account names must be unique")
        for a in config.pool:
            if len(a.name) > 64 or not a.name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"remote engine: account name {a.name!r}: letters, digits, '-' and '_', at most 64")
            if a.weight <= 0 or (a.max_in_flight is not None and a.max_in_flight < 1) or a.queue_size < 0:
                raise ValueError(f"remote engine: account {a.name!r}: weight > 0, max_in_flight >= 1 and queue_size >= 0 needed")
            if (a.submit_per_minute is not None and a.submit_per_minute < 1) or (a.daily_limit is not None and a.daily_limit < 1):
                raise ValueError(f"remote engine: account {a.name!r}: submit_per_minute and daily_limit must be at least 1")
            if a.speeds is not None and (not a.speeds or set(a.speeds) - set(SPEEDS)):
                raise ValueError(f"remote engine: account {a.name!r}: speeds must be some of {', '.join(sorted(SPEEDS))}")
        return config
