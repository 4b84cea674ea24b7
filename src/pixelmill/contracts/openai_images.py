"""The OpenAI Images API (``/v1/images/...``), mapped onto pixelmill's requests and tasks.

What the official ``openai`` SDK sends and reads is in ``contracts/openai-images.md``. The rules
kept here:

- ``model`` picks an engine of this deployment, a template release (``template:<name>`` or
  ``template:<name>@<release>``), or names an OpenAI model (``dall-e-*``, ``gpt-image-*``), which
  runs on the default engine. The model family sets the default ``response_format``: gpt-image
  models answer ``b64_json`` (and OpenAI refuses ``response_format`` for them), the rest ``url``.
- ``n`` images come from ``ceil(n / 4)`` grids: each task makes four.
- ``size`` is ``auto`` or any ``WxH`` (multiples of 8, 64-4096 px, aspect 1:4-4:1).
- ``quality``: low → draft, high / hd → ``--q 2``, xhigh / max → ``--q 4``; ``style: natural``
  → ``--style raw``; ``output_format`` / ``output_compression`` → the profile ``<format>:<quality>``.
- Errors are ``{"error": {"message", "type", "param", "code"}}`` with the status codes the SDK
  maps to its exception classes; a failure after work began says ``x-should-retry: false``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pixelmill.exceptions import (
    AuthenticationError,
    BannedPrompt,
    EngineUnavailable,
    Forbidden,
    IdempotencyInProgress,
    IdempotencyMismatch,
    InsufficientQuota,
    PixelmillError,
    QueueFull,
    RateLimited,
    ValidationError,
)
from pixelmill.tasks.record import Task
from pixelmill.tasks.status import TaskStatus

MAX_N = 10
#: How many of ``n`` images one task makes (a 2×2 grid).
PER_TASK = 4
TEMPLATE_PREFIX = "template:"
#: OpenAI's image models: accepted by name, run on the deployment's default engine.
OPENAI_FAMILIES = ("dall-e-", "gpt-image-")

Quality = Literal["low", "medium", "high", "xhigh", "max", "auto", "standard", "hd"]
ResponseFormat = Literal["url", "b64_json"]


class OpenAIError(PixelmillError):
    """An error only this contract has (an unknown model), with OpenAI's ``type`` and ``code``."""

    def __init__(self, status: int, message: str, *, param: str | None, code: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.http_status = status
        self.param = param
        self.error_code = code
        self.kind = kind


class ImageFields(BaseModel):
    """The fields generations, edits and variations share (edits and variations arrive as
    multipart form fields: numbers and booleans as text, which pydantic reads)."""

    # OpenAI adds fields often; an unknown one is ignored as OpenAI's own SDKs expect servers to.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    model: str | None = Field(None, max_length=128)
    n: int = Field(1, ge=1, le=MAX_N)
    size: str | None = Field(None, max_length=16, description="auto, or WxH in pixels.")
    response_format: ResponseFormat | None = None
    user: str | None = Field(None, max_length=256)
    safety_identifier: str | None = Field(None, max_length=256)


class GenerateFields(ImageFields):
    prompt: str = Field(min_length=1, max_length=32000)
    quality: Quality | None = None
    style: Literal["vivid", "natural"] | None = None
    background: Literal["transparent", "opaque", "auto"] | None = None
    output_format: Literal["png", "webp", "jpeg", "gif", "svg"] | None = None
    output_compression: int | None = Field(None, ge=0, le=100)
    moderation: Literal["low", "auto"] | None = None
    stream: bool = False
    partial_images: int = Field(0, ge=0, le=3)


class EditFields(GenerateFields):
    input_fidelity: Literal["high", "low"] | None = None


@dataclass(frozen=True)
class Target:
    """What ``model`` selects: an engine, or a template release; and its family's default format."""

    engine: str | None
    template: str | None
    release: str | None
    default_format: ResponseFormat


def target_of(model: str | None, engines: tuple[str, ...]) -> Target:
    if model is None or model == "":
        return Target(None, None, None, "url")
    if model.startswith(TEMPLATE_PREFIX):
        name, _, release = model[len(TEMPLATE_PREFIX):].partition("@")
        if not name:
            raise ValidationError("model", "template:<name> or template:<name>@<release>")
        return Target(None, name, release or None, "url")
    if model in engines:
        return Target(model, None, None, "url")
    if model.startswith(OPENAI_FAMILIES):
        return Target(None, None, None, "b64_json" if model.startswith("gpt-image-") else "url")
    raise OpenAIError(
        404, f"The model '{model}' does not exist here: use one of {', '.join(engines)}, template:<name>[@<release>], "
        "or an OpenAI image model name (dall-e-*, gpt-image-*)", param="model", code="model_not_found",
    )


def variables_of(prompt: str) -> dict[str, Any]:
    """A template's variables: a JSON object in ``prompt``, else the text as the variable
    ``prompt``."""
    text = prompt.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
    return {"prompt": prompt}


def tasks_for(n: int) -> int:
    return math.ceil(n / PER_TASK)


def picture_fields(body: GenerateFields) -> dict[str, Any]:
    """The imagine fields ``size``, ``quality`` and ``style`` become (only those given)."""
    fields: dict[str, Any] = {}
    if body.size not in (None, "auto"):
        fields["size"] = body.size
    if body.quality == "low":
        fields["draft"] = True
    elif body.quality in ("high", "hd"):
        fields["quality"] = 2
    elif body.quality in ("xhigh", "max"):
        fields["quality"] = 4
    if body.style == "natural":
        fields["raw"] = True
    return fields


def output_profile(body: GenerateFields) -> str | None:
    """The output profile ``output_format`` and ``output_compression`` name (None: the caller's
    default profile)."""
    if body.background == "transparent":
        raise ValidationError("background", "transparent backgrounds are not made by these engines; use opaque or auto")
    if body.output_format in ("gif", "svg"):
        raise ValidationError("output_format", f"{body.output_format} is not written here; use png, webp or jpeg")
    if body.output_format is None:
        if body.output_compression is not None:
            raise ValidationError("output_compression", "goes with output_format webp or jpeg")
        return None
    if body.output_format == "png":
        return "png"
    # output_compression is the quality of the lossy file, 100 the best (OpenAI's default).
    return f"{body.output_format}:{max(1, body.output_compression if body.output_compression is not None else 100)}"


def end_user(body: ImageFields) -> str | None:
    return body.safety_identifier or body.user


def task_status(task: Task) -> str:
    """A task's state in the words of the async mode: queued, in_progress, completed, failed."""
    if task.status is TaskStatus.SUCCESS:
        return "completed"
    if task.status in (TaskStatus.FAILURE, TaskStatus.CANCEL):
        return "failed"
    return "in_progress" if task.status is TaskStatus.IN_PROGRESS else "queued"


def error_body(message: str, kind: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_result(exc: PixelmillError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, body and headers of a refusal, as the SDK maps them to its exception classes."""
    headers: dict[str, str] = {}
    if exc.retry_after is not None:
        headers["retry-after"] = str(exc.retry_after)
    status, kind, param, code = exc.http_status, "invalid_request_error", exc.properties.get("field"), None
    if isinstance(exc, OpenAIError):
        status, kind, param, code = exc.http_status, exc.kind, exc.param, exc.error_code
    elif isinstance(exc, BannedPrompt):
        status, code = 400, "content_policy_violation"
    elif isinstance(exc, ValidationError):
        status, code = 400, "invalid_value"
    elif isinstance(exc, InsufficientQuota):
        status, kind, code = 429, "insufficient_quota", "insufficient_quota"
        headers["x-should-retry"] = "false"  # the SDK retries a 429; no quota stays no quota
    elif isinstance(exc, RateLimited):
        status, kind, code = 429, "requests", "rate_limit_exceeded"
    elif isinstance(exc, QueueFull):
        status, kind, code = 429, "requests", "queue_full"
    elif isinstance(exc, AuthenticationError):
        code = "invalid_api_key"
    elif isinstance(exc, Forbidden):
        code = "forbidden"
    elif isinstance(exc, IdempotencyInProgress):
        code = "idempotency_in_progress"
    elif isinstance(exc, IdempotencyMismatch):
        code = "idempotency_key_reused"
    elif isinstance(exc, EngineUnavailable):
        kind, code = "server_error", "engine_unavailable"
    elif status == 404:
        code = "not_found"
    elif status >= 500:
        kind, code = "server_error", None
    return status, error_body(exc.description, kind, param if isinstance(param, str) else None, code), headers
