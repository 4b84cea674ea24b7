"""The one typed settings object. Every knob is an environment variable ``PIXELMILL_<NAME>``.

Nothing else in the package reads the environment: the settings object is built once at the edge
(CLI / app factory, with ``load_settings``) and passed down.

Every setting is checked when the process starts, never when a task first needs it: types and
ranges here, the contents of JSON values (output profiles, fault rules) by the module that
owns them, files and engines by ``runtime.build_runtime`` inside ``checking``. A bad one stops the
start with a ``SettingsError``: one line naming the variable, its value and the rule.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pydantic
import pydantic_settings
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pixelmill.exceptions import PixelmillError, SettingsError
from pixelmill.validation import explain

ENV_PREFIX = "PIXELMILL_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # --- serving -----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: Absolute base URL used in task results (``https://img.example.com``). When unset, URLs are
    #: built from the address the request came in on, which is right for direct access only.
    public_url: str | None = None
    #: Bootstrap admin key. When set it is created on start if missing; when unset and no key
    #: exists at all, one is generated and printed once.
    api_key: str | None = Field(None, min_length=16)

    # --- state -------------------------------------------------------------------------------
    data_dir: Path = Path("data")
    #: SQLAlchemy URL. Default: SQLite (WAL) file inside ``data_dir``.
    database_url: str | None = None
    storage: Literal["local", "s3"] = "local"
    #: Where the local storage backend keeps files. Default: ``<data_dir>/files``.
    storage_dir: Path | None = None
    #: S3-compatible storage (``storage: s3``; storage/s3.py). Credentials: boto3's usual chain.
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_prefix: str = ""
    #: pixelmill (served through /files), public (s3_public_base_url + key: public bucket or CDN),
    #: presigned (signed URLs expiring after s3_presign_seconds).
    s3_url_mode: Literal["pixelmill", "public", "presigned"] = "pixelmill"
    s3_public_base_url: str | None = None
    s3_presign_seconds: int = Field(3600, ge=60, le=7 * 86400)

    # --- generation --------------------------------------------------------------------------
    #: The engine of requests that name none (a key of ``engines``).
    engine: str = "procedural"
    #: Every engine this deployment runs, by name (JSON): ``{"procedural": {"kind": "procedural"},
    #: "sdxl": {"kind": "diffusers", "model": "stabilityai/sdxl-turbo", "dtype": "fp16"},
    #: "mj": {"kind": "remote", "base_url": "https://...", "api_key": "..."}}``; see engines/registry.py.
    engines: dict[str, dict[str, Any]] = {"procedural": {"kind": "procedural"}}
    #: Long edge budget: a 1:1 image is ``image_size`` square; other ratios keep about the same
    #: pixel count (see ``prompts.aspect``).
    image_size: int = Field(512, ge=64, le=4096)
    #: Artificial delay per image for the procedural engine (demos of a slow model, crash tests).
    procedural_delay_ms: int = Field(0, ge=0, le=600_000)
    #: The output profile of requests that name none (media/output.py: original, web, jpeg, avif,
    #: or one of output_profiles).
    output_profile: str = "original"
    #: Your own profiles (JSON): ``{"brand": {"format": "jpeg", "quality": 85, "long_edge": 1600,
    #: "max_bytes": 400000, "strip_metadata": true}}``.
    output_profiles: dict[str, dict[str, Any]] = {}
    #: Smaller renditions written beside every image (web: 1024 px WebP, thumb: 256 px WebP).
    renditions: tuple[Literal["web", "thumb"], ...] = ("web", "thumb")
    #: Length and frame rate of every video clip.
    video_seconds: float = Field(5.0, gt=0, le=30)
    video_fps: int = Field(24, ge=1, le=60)

    # --- input images (image prompts, references, masks, uploads) --------------------------------
    #: Largest input image, enforced while it streams in (URL fetch or upload).
    input_max_bytes: int = Field(12 * 1024 * 1024, ge=1024)
    #: Largest decoded size (width x height): refuses decompression bombs before decoding.
    input_max_pixels: int = Field(25_000_000, ge=1)
    #: Private hosts and networks that image URLs may point at after all (JSON list), for
    #: operators who serve images from their own network: ``["images.internal", "10.2.0.0/16"]``.
    fetch_allow: tuple[str, ...] = ()
    #: Whole download of one input image, redirects included.
    fetch_timeout_seconds: float = Field(20.0, gt=0)
    fetch_max_redirects: int = Field(5, ge=0, le=20)

    # --- request path -----------------------------------------------------------------------
    #: Submissions per API key per minute (keys may have their own; 0 = no cap). Over it: 429.
    rate_per_minute: int = Field(600, ge=0)
    #: The window of ``rate_per_minute``; only shortened for tests and demos.
    rate_window_seconds: float = Field(60, gt=0)
    #: Tasks one API key may have queued or running at once (keys may have their own; 0 = no cap).
    max_concurrent_tasks: int = Field(1000, ge=0)
    #: How long an Idempotency-Key remembers its answer.
    idempotency_ttl_seconds: float = Field(86_400, gt=0)
    #: How long a request may hold an Idempotency-Key while it is being accepted before a retry
    #: may take it over (the first request died). A slow first request that lost its key keeps
    #: nothing: the key never makes two sets of tasks.
    idempotency_pending_seconds: float = Field(30, gt=0)
    #: What a cache hit costs: "free" (0) or "full" (the normal price).
    cache_hit_charge: Literal["free", "full"] = "free"
    #: A task waiting (SUBMITTED / NOT_START) longer than this fails with a refund.
    queue_timeout_seconds: float = Field(3600, gt=0)
    #: A task running (IN_PROGRESS) longer than this fails with a refund.
    run_timeout_seconds: float = Field(600, gt=0)
    #: Finished tasks and their files are kept this long (per tenant: the admin API), then removed.
    task_retention_seconds: float = Field(3 * 86_400, gt=0)
    #: How often housekeeping runs (retention sweep, expired idempotency keys, old rate windows).
    chores_interval_seconds: float = Field(60, gt=0)
    #: A task waiting in MODAL (inpaint, custom zoom) this long without a ``/modal`` call is
    #: cancelled and refunded (seed 004: 30 minutes).
    modal_timeout_seconds: float = Field(1800, gt=0)
    #: Longest ``?wait=`` a long-poll may ask for.
    max_wait_seconds: float = Field(60, gt=0)
    #: How long ``POST /v1/images/...`` waits for its images before answering 504 (the tasks go
    #: on; poll them). The OpenAI SDK waits 600 s by default.
    images_wait_seconds: float = Field(300, gt=0)

    # --- queue -------------------------------------------------------------------------------
    #: Worker threads started inside ``pixelmill serve``. 0 = API only; run ``pixelmill worker``.
    workers: int = Field(2, ge=0, le=64)
    #: Processes ``pixelmill serve`` answers HTTP with, all on its port (serving.py): the first
    #: also runs the workers. One process uses one core for Python; give the API more of them.
    api_processes: int = Field(1, ge=1, le=64)
    #: The lanes this process's workers take work from, interactive always first.
    worker_lanes: tuple[Literal["interactive", "batch"], ...] = ("interactive", "batch")
    #: How many of a process's workers may run batch work at once (default: all but one, so an
    #: interactive task always finds a worker that is not busy with batch work).
    batch_workers: int | None = Field(None, ge=1, le=64)
    #: Tasks waiting per lane before submits are answered 429 / code 23.
    interactive_queue_limit: int = Field(1000, ge=1)
    batch_queue_limit: int = Field(100_000, ge=1)
    #: A claimed task belongs to its worker for this long; heartbeats renew it. When a worker
    #: dies its tasks are requeued once the lease runs out.
    lease_seconds: float = Field(30.0, gt=0)
    #: How often the scheduler looks for expired leases.
    sweep_interval_seconds: float = Field(1.0, gt=0)
    #: How often an idle worker looks at the database when nothing woke it (other processes'
    #: submits are only seen this way).
    worker_poll_seconds: float = Field(0.5, gt=0)
    max_attempts: int = Field(3, ge=1, le=20)
    #: Backoff before retry N (seconds); the last value repeats. Jitter of up to 25 % is added.
    retry_backoff_seconds: tuple[float, ...] = (1.0, 4.0, 16.0)
    #: Low-resolution previews written while an engine runs, at most one per this many seconds.
    preview_interval_seconds: float = Field(0.5, gt=0)
    #: Engine faults to inject, for tests and failure drills (JSON list, see engines/faults.py):
    #: ``[{"match": "flaky", "times": 2, "retryable": true}]``.
    fault_injection: tuple[dict[str, Any], ...] = ()
    #: Long-polls and event streams one process holds open at once; past it they answer 503.
    max_streams: int = Field(1000, ge=1, le=100_000)
    #: Run this process's clock this many seconds off (failure drills: a host with a wrong clock).
    #: With PostgreSQL it changes nothing: every process keeps the database's time (clock.py).
    fault_clock_skew_seconds: float = Field(0.0, ge=-86_400, le=86_400)

    # --- webhooks ---------------------------------------------------------------------------
    #: Wait before delivery attempt 2, 3, ... (seconds, jitter up to 10 %); then the event is
    #: given up. The default is the Standard Webhooks schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h.
    webhook_retry_seconds: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000)
    webhook_timeout_seconds: float = Field(10, gt=0)
    #: Deliveries sent at once by one process.
    webhook_concurrency: int = Field(4, ge=1, le=64)
    #: How often an idle deliverer looks at the outbox (in-process events wake it at once).
    webhook_poll_seconds: float = Field(0.5, gt=0)
    #: Settled events (delivered, given up, superseded) are kept this long for inspection.
    webhook_retention_seconds: float = Field(7 * 86_400, gt=0)

    # --- safety ------------------------------------------------------------------------------
    #: Banned terms by category, global and per tenant (JSON; safety/moderation.py), added to
    #: the built-in list.
    moderation_file: Path | None = None
    #: The semantic prompt check (safety/semantic.py): prompts close in meaning to a banned
    #: concept are refused, words or not. Needs the safety extra; off by default (it loads a
    #: 90 MB model, about a second per process).
    semantic_moderation: bool = False
    #: Cosine similarity to a concept at which a prompt is refused.
    semantic_threshold: float = Field(0.5, gt=0, le=1)
    #: Image screening (safety/screening.py) of outputs and inputs: auto (NudeNet when the safety
    #: extra is installed), nudenet, or off.
    screening: Literal["auto", "nudenet", "off"] = "auto"
    #: Which detector labels block and which go to review, per tenant (JSON).
    screening_file: Path | None = None
    #: Images per detector call.
    screening_batch_size: int = Field(4, ge=1, le=64)

    # --- templates --------------------------------------------------------------------------
    #: Promoting a template version (rollout promote, or pointing a release at it) needs a
    #: finished evaluation of it against the version it replaces.
    template_promotion_needs_evaluation: bool = False

    # --- billing ----------------------------------------------------------------------------
    #: JSON file of price key -> units (``{"midjourney@imagine": 2}``), applied at start over the
    #: defaults; the admin API changes prices afterwards.
    prices_file: Path | None = None
    #: What a second of each engine costs you, for the estimated-cost report (``{"diffusers": 0.0011}``).
    engine_cost_per_second: dict[str, float] = {}

    # --- observability ----------------------------------------------------------------------
    #: Serve /metrics without a key (for a scraper on a private network); else an admin key.
    metrics_public: bool = False
    #: Health report thresholds (seed 004's monitoring table).
    health_success_rate_min: float = Field(0.95, ge=0, le=1)
    health_avg_completion_seconds_max: float = Field(90, gt=0)
    health_modal_max: int = Field(5, ge=0)
    health_banned_share_max: float = Field(0.05, ge=0, le=1)
    #: A task waiting longer than this is listed as stuck in the health report.
    health_stuck_after_seconds: float = Field(300, gt=0)
    #: "json" (one JSON object per line), "console" (for people), or "auto": console on a terminal.
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- batches ----------------------------------------------------------------------------
    batch_max_tasks: int = Field(10_000, ge=1)

    @field_validator("public_url", "s3_public_base_url")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
            raise ValueError("must be an absolute http(s) URL, e.g. https://img.example.com")
        return value.rstrip("/") if value else value

    @field_validator("fetch_allow")
    @classmethod
    def _allowed_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress

        for entry in value:
            if "/" in entry or entry.replace(".", "").isdigit() or ":" in entry:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError as exc:
                    raise ValueError(f"{entry!r} is not a network or address ({exc})") from None
            elif not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?", entry):
                raise ValueError(f"{entry!r} is not a host name, an address or a network")
        return value

    @field_validator("output_profiles")
    @classmethod
    def _profiles(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from pixelmill.media.output import BUILTIN, Profile

        for name, spec in value.items():
            if name in BUILTIN:
                raise ValueError(f"profile {name!r} is built in; give yours another name")
            Profile.from_json(name, spec)  # raises ValueError naming the profile, the key and the rule
        return value

    @field_validator("fault_injection")
    @classmethod
    def _faults(cls, value: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        from pixelmill.engines.faults import FaultRule

        for rule in value:
            FaultRule.from_json(rule)
        return value

    @field_validator("engine_cost_per_second")
    @classmethod
    def _costs(cls, value: dict[str, float]) -> dict[str, float]:
        negative = sorted(name for name, cost in value.items() if cost < 0)
        if negative:
            raise ValueError(f"a cost per second is >= 0 ({', '.join(negative)})")
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if not self.retry_backoff_seconds or any(s < 0 for s in self.retry_backoff_seconds):
            raise ValueError("retry_backoff_seconds must be a non-empty list of seconds >= 0")
        if any(s < 0 for s in self.webhook_retry_seconds):
            raise ValueError("webhook_retry_seconds must be seconds >= 0")
        if not self.worker_lanes:
            raise ValueError("worker_lanes must name at least one lane")
        if self.storage == "s3" and not self.s3_bucket:
            raise ValueError("storage s3 needs s3_bucket")
        if self.engine not in self.engines:
            raise ValueError(f"engine {self.engine!r} is not one of the configured engines ({', '.join(self.engines)}); name one of them")
        if self.s3_url_mode == "public" and not self.s3_public_base_url:
            raise ValueError("s3_url_mode public needs s3_public_base_url")
        from pixelmill.media.output import BUILTIN

        if self.output_profile not in BUILTIN and self.output_profile not in self.output_profiles:
            names = ", ".join([*BUILTIN, *self.output_profiles])
            raise ValueError(f"output_profile {self.output_profile!r} is not a profile ({names})")
        return self


    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'pixelmill.db').resolve()}"

    @property
    def resolved_storage_dir(self) -> Path:
        return (self.storage_dir or self.data_dir / "files").resolve()


#: Settings whose values are never printed, and JSON keys whose values are hidden in any setting.
_SECRET_FIELDS = frozenset({"api_key"})
_SECRET_KEY = re.compile(r"key|secret|token|password", re.IGNORECASE)


def variable(field: str) -> str:
    """The environment variable of a settings field: ``output_profiles`` -> ``PIXELMILL_OUTPUT_PROFILES``."""
    return ENV_PREFIX + field.upper()


def _hide(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "***" if _SECRET_KEY.search(str(k)) else _hide(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide(v) for v in value]
    return value


#: The user (and password) of a URL, even a malformed one: "//bob:pw@", "bob:pw@".
_USERINFO = re.compile(r"(?<=//)[^/@\s\"']+@|[^/@\s\"':]+:[^/@\s\"']*@")


def shown(field: str, value: Any) -> str:
    """A setting's value as an error message may print it: secrets hidden (keys named like one,
    the user and password of a URL), long values cut."""
    if field in _SECRET_FIELDS:
        return "<hidden>"
    if isinstance(value, str):
        value = _USERINFO.sub("***@", value)
        try:
            parsed = json.loads(value)
        except ValueError:
            text = value
        else:
            text = json.dumps(_hide(parsed)) if isinstance(parsed, (dict, list)) else value
    elif isinstance(value, (dict, list, tuple)):
        text = _USERINFO.sub("***@", json.dumps(_hide(value), default=str))
    else:
        text = str(value)
    text = text if len(text) <= 300 else text[:297] + "..."
    return repr(text) if not text or any(c.isspace() or c in "\"'{[" for c in text) else text


def _raw(field: str, overrides: dict[str, Any], fallback: Any) -> Any:
    """What the operator wrote for ``field``: the override, the environment's text, or the value."""
    if field in overrides:
        return overrides[field]
    for name, text in os.environ.items():
        if name.upper() == variable(field):
            return text
    return fallback


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment and ``overrides`` (CLI options), all checked; a bad one
    raises ``SettingsError`` in one line."""
    try:
        return Settings(**overrides)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        loc = first.get("loc", ())
        field = str(loc[0]) if loc else "settings"
        if not loc or field not in Settings.model_fields:
            # A rule across settings (model validator): name the setting the message starts with.
            rule = explain(first, skip=1)
            field = next((f for f in Settings.model_fields if rule.startswith(f + " ")), "settings")
            default = Settings.model_fields[field].default if field in Settings.model_fields else "?"
            raise SettingsError(variable(field), shown(field, _raw(field, overrides, default)), rule) from None
        raise SettingsError(variable(field), shown(field, _raw(field, overrides, first.get("input"))), explain(first, skip=1)) from None
    except pydantic_settings.SettingsError as exc:
        # The environment's text is not JSON where JSON is expected.
        found = re.search(r'field "(\w+)"', str(exc))
        field = found.group(1) if found else "settings"
        cause = exc.__cause__ or exc
        raise SettingsError(variable(field), shown(field, _raw(field, overrides, "?")), f"not valid JSON ({cause})") from None


@contextmanager
def checking(settings: Settings, field: str, *, value: Any = None, errors: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Turn the failure of what a setting names (a file, an engine, a backend) into a
    ``SettingsError`` for that setting: ``with checking(settings, "engines"): build_engines(...)``.
    ``value`` is what to print when it is not the setting's own text (a URL without its password);
    ``errors`` adds the error classes of a library that does not raise the built-in ones."""
    # Not TypeError: a value of the wrong type is caught where the setting is read, so a TypeError
    # here is a bug, and must not be blamed on the operator's setting.
    caught: tuple[type[BaseException], ...] = (ValueError, ImportError, OSError, PixelmillError, *errors)
    try:
        yield
    except SettingsError:
        raise
    except caught as exc:
        text = shown(field, value if value is not None else _raw(field, {}, getattr(settings, field)))
        raise SettingsError(variable(field), text, " ".join(str(exc).split())) from exc
