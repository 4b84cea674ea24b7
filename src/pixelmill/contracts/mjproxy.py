"""midjourney-proxy's wire contract, mapped onto pixelmill's requests and tasks.

What the clients named in ``contracts/midjourney-proxy.md`` parse, and so what this module keeps:

- Every submit answers HTTP 200 with ``{code, description, result, properties}``: 1 accepted,
  21 waiting in MODAL, 22 accepted behind others (``properties.numberOfQueues``), 24 a banned
  prompt (``properties.bannedWord``), 4 a bad request, 23 come back later, 9 a failure, and 3 only
  when no engine can take the work (new-api disables a channel on code 3).
- Tasks are camelCase with a string ``id`` that fits a JavaScript number, millisecond times,
  ``progress`` as ``"N%"`` (``"100%"`` with a non-empty ``failReason`` once failed or cancelled)
  and button ``customId``s in Midjourney's own forms (``MJ::Inpaint::...`` for Vary (Region)).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pixelmill.exceptions import (
    BannedPrompt,
    EngineUnavailable,
    PixelmillError,
    TaskNotFound,
    TooManyRequests,
    ValidationError,
)
from pixelmill.tasks.actions import Action
from pixelmill.tasks.record import Task
from pixelmill.tasks.status import TaskStatus
from pixelmill.tasks.view import UrlFor, file_url, task_view

SPEEDS = ("fast", "relax", "turbo")


# --- request bodies ----------------------------------------------------------------------------


class MjBody(BaseModel):
    # midjourney-proxy ignores fields it does not know, and its clients send some (new-api adds
    # its own, Dooy's sends empty notifyHook and state): unknown fields are ignored here too.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    state: str | None = Field(None, max_length=255, description="Your own text, echoed in the task.")
    notifyHook: str | None = Field(None, max_length=2000, description="POST the whole task here on every change (retried on the webhook schedule).")


class AccountFilter(BaseModel):
    model_config = ConfigDict(extra="ignore")

    modes: list[str] | None = Field(None, max_length=3, description="RELAX / FAST / TURBO: the first is the speed tier.")


class MjImagine(MjBody):
    prompt: str | None = Field(None, min_length=1, max_length=8192, description="Required unless template is given.")
    base64Array: list[str] | None = Field(None, max_length=5, description="Image prompts as data URLs (or bare base64).")
    base64: str | None = Field(None, description="One image prompt (deprecated in midjourney-proxy).")
    botType: str | None = Field(None, description="MID_JOURNEY (default) or NIJI_JOURNEY (also mj / niji).")
    accountFilter: AccountFilter | None = None
    # pixelmill's own fields, which midjourney-proxy clients do not send: a template release
    # instead of a prompt, as on every other door.
    template: str | None = Field(None, max_length=64, description="pixelmill: a published template to render instead of prompt.")
    release: str | None = Field(None, max_length=32, description="pixelmill: the template's release tag (default stable).")
    variables: dict[str, str | int | float] | None = Field(None, max_length=50, description="pixelmill: the template's variables.")


class MjAction(MjBody):
    taskId: str = Field(min_length=1, max_length=64)
    customId: str = Field(min_length=1, max_length=256)
    enableRemix: bool | None = Field(None, description="Accepted and ignored: a remix is a variation with a prompt.")


class MjModal(MjBody):
    taskId: str = Field(min_length=1, max_length=64)
    prompt: str | None = Field(None, max_length=8192, description="Empty: the task's own prompt.")
    maskBase64: str | None = Field(None, description="Inpaint: the mask, white = repaint.")


class MjBlend(MjBody):
    base64Array: list[str] = Field(min_length=2, max_length=5)
    dimensions: Literal["PORTRAIT", "SQUARE", "LANDSCAPE"] = "SQUARE"
    botType: str | None = None
    accountFilter: AccountFilter | None = None


class MjDescribe(MjBody):
    base64: str | None = None
    link: str | None = Field(None, max_length=2048)
    botType: str | None = None


class MjShorten(MjBody):
    prompt: str = Field(min_length=1, max_length=8192)
    botType: str | None = None


class MjChange(MjBody):
    taskId: str = Field(min_length=1, max_length=64)
    action: Literal["UPSCALE", "VARIATION", "REROLL"]
    index: int | None = Field(None, ge=1, le=4)


class MjSimpleChange(MjBody):
    content: str = Field(min_length=1, max_length=128, description="'<task id> U1-U4 | V1-V4 | R'.")


class MjVideo(MjBody):
    prompt: str | None = Field(None, max_length=8192)
    motion: Literal["low", "high"] = "low"
    image: str | None = Field(None, description="The first frame: a URL or base64; or taskId + index.")
    endImage: str | None = None
    loop: bool | None = None
    action: str | None = None
    index: int | None = Field(None, ge=1, le=4, description="Which image of the task's grid, 1-4.")
    taskId: str | None = Field(None, max_length=64)
    videoType: Literal["vid_1.1_i2v_480", "vid_1.1_i2v_720"] | None = None
    batchSize: Literal[1, 2, 4] = 1


class MjEdits(MjBody):
    prompt: str = Field(min_length=1, max_length=8192)
    image: str = Field(min_length=1, description="The picture to work from: a URL or base64.")


class MjUpload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    base64Array: list[str] = Field(min_length=1, max_length=5)


class MjIds(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # Dooy's web app sends numbers (+id): both forms name the same task.
    ids: list[int | str] = Field(max_length=1000)

    def strings(self) -> list[str]:
        return [str(i) for i in self.ids]


def niji_of(bot_type: str | None) -> bool | None:
    if bot_type is None or bot_type == "":
        return None
    kind = bot_type.strip().upper()
    if kind in ("NIJI_JOURNEY", "NIJI"):
        return True
    if kind in ("MID_JOURNEY", "MJ"):
        return None
    raise ValidationError("botType", f"must be MID_JOURNEY or NIJI_JOURNEY, got {bot_type!r}")


def speed_of(prefix_speed: str | None, account_filter: AccountFilter | None) -> str | None:
    """The speed tier: the path prefix (/mj-relax/mj/...) first, then ``accountFilter.modes``."""
    if prefix_speed is not None:
        return prefix_speed
    if account_filter and account_filter.modes:
        mode = account_filter.modes[0].strip().lower()
        if mode not in SPEEDS:
            raise ValidationError("accountFilter.modes[0]", f"must be RELAX, FAST or TURBO, got {account_filter.modes[0]!r}")
        return mode
    return None


_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(;[\w-]+=[^;,]*)*;base64,", re.IGNORECASE)


def decode_image(value: str, field: str) -> bytes:
    """A data URL or bare base64, decoded (what the bytes are is checked where they are stored)."""
    text = _DATA_URL.sub("", value.strip(), count=1)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(field, "is neither a data URL (data:image/png;base64,...) nor base64") from None


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def parse_simple_change(content: str) -> tuple[str, str, int | None]:
    """``"<id> U2"`` → (task id, UPSCALE, 2); ``"<id> R"`` → (task id, REROLL, None)."""
    m = re.fullmatch(r"\s*(\S+)\s+([UuVv])([1-4])\s*|\s*(\S+)\s+[Rr]\s*", content)
    if not m:
        raise ValidationError("content", f"must be '<task id> U1-U4', '<task id> V1-V4' or '<task id> R', got {content!r}")
    if m.group(4):
        return m.group(4), "REROLL", None
    return m.group(1), "UPSCALE" if m.group(2) in "Uu" else "VARIATION", int(m.group(3))


# --- button ids --------------------------------------------------------------------------------

#: pixelmill's button operation → Midjourney's custom id, with {n} and {id} to fill in. new-api
#: reads the action from these exact forms (split on "::": [2] after JOB, else [1]).
_MJ_FORMS: dict[str, str] = {
    "upsample": "MJ::JOB::upsample::{n}::{id}",
    "variation": "MJ::JOB::variation::{n}::{id}",
    "reroll": "MJ::JOB::reroll::0::{id}::SOLO",
    "upsample_subtle": "MJ::JOB::upsample_v6_2x_subtle::1::{id}::SOLO",
    "upsample_creative": "MJ::JOB::upsample_v6_2x_creative::1::{id}::SOLO",
    "low_variation": "MJ::JOB::low_variation::1::{id}::SOLO",
    "high_variation": "MJ::JOB::high_variation::1::{id}::SOLO",
    "inpaint": "MJ::Inpaint::1::{id}::SOLO",
    "outpaint_2x": "MJ::Outpaint::50::1::{id}::SOLO",
    "outpaint_1.5x": "MJ::Outpaint::75::1::{id}::SOLO",
    "custom_zoom": "MJ::CustomZoom::{id}",
    **{f"pan_{d}": f"MJ::JOB::pan_{d}::1::{{id}}::SOLO" for d in ("left", "right", "up", "down")},
    "animate_low": "MJ::JOB::animate_low::1::{id}::SOLO",
    "animate_high": "MJ::JOB::animate_high::1::{id}::SOLO",
}
_FROM_MJ = [
    (re.compile("^" + re.escape(form).replace(r"\{n\}", r"(?P<n>\d)").replace(r"\{id\}", r"(?P<id>[^:]+)") + "$"), op)
    for op, form in _MJ_FORMS.items()
]


def to_mj_custom_id(custom_id: str) -> str:
    """pixelmill's ``MJ::JOB::<op>::<n>::<task id>`` in Midjourney's form."""
    _, _, op, n, task_id = custom_id.split("::")
    return _MJ_FORMS[op].format(n=n, id=task_id)


def from_mj_custom_id(custom_id: str) -> str:
    """A Midjourney-form custom id as pixelmill's; unknown forms are left for the pipeline to
    refuse (code 4, naming the buttons that apply)."""
    for pattern, op in _FROM_MJ:
        m = pattern.match(custom_id)
        if m:
            n = m.groupdict().get("n") or ("0" if op == "reroll" else "1")
            return f"MJ::JOB::{op}::{n}::{m['id']}"
    return custom_id


# --- answers -----------------------------------------------------------------------------------


def submit_result(task: Task, queue_position: int | None) -> dict[str, Any]:
    """The answer to an accepted submit."""
    properties: dict[str, Any] = {"discordInstanceId": task.engine}
    if task.status is TaskStatus.MODAL:
        # finalPrompt is what clients confirm the modal with (Dooy's app sends it back as is).
        return {"code": 21, "description": "Waiting for window confirm", "result": task.id,
                "properties": {**properties, "finalPrompt": modal_prompt(task, None) or "", "remix": True}}
    if queue_position is not None and queue_position > 1:
        return {"code": 22, "description": f"In queue, there are {queue_position - 1} tasks ahead", "result": task.id,
                "properties": {**properties, "numberOfQueues": queue_position - 1}}
    return {"code": 1, "description": "Submit success", "result": task.id, "properties": properties}


def error_result(exc: PixelmillError) -> tuple[int, dict[str, Any]]:
    """HTTP status and body of a refusal. HTTP 200 carries the refusal in ``code``, as
    midjourney-proxy answers; auth, unknown routes and tasks, and server faults keep their HTTP
    status. Code 3 means one thing only, no engine for new work: new-api disables a channel on it,
    so an unknown task, route or template is code 4 and never 3."""
    # properties: what pixelmill's own answer says (field, cost and balance, retry_after ...).
    body: dict[str, Any] = {"code": 9, "description": exc.description, "result": None, "properties": dict(exc.properties)}
    if isinstance(exc, BannedPrompt):
        term = exc.properties.get("found") or exc.properties.get("term") or exc.properties.get("label") or ""
        body.update(code=24, properties={"bannedWord": term, **exc.properties})
        return 200, body
    if isinstance(exc, EngineUnavailable):
        # A follow-up whose parent's engine is gone: that task is stuck, the channel is not.
        body["code"] = 4 if exc.properties.get("follow_up") else 3
        return 200, body
    if isinstance(exc, TooManyRequests):
        body.update(code=23, properties={**exc.properties, "retryAfter": exc.retry_after})
        return 200, body
    if isinstance(exc, ValidationError | TaskNotFound):
        body["code"] = 4  # a submit naming an unknown task is a bad request
        return 200, body
    if exc.http_status in (401, 403, 404, 405) or exc.http_status >= 500:
        body["code"] = 4 if exc.http_status == 404 else 9
        return exc.http_status, body
    if exc.code == 4:  # the Idempotency-Key used with another body, a conflict
        body["code"] = 4
    return 200, body  # quota, idempotency in progress: a failure (code 9) to try again


def modal_prompt(task: Task, prompt: str | None) -> str | None:
    """What ``/submit/modal`` continues a task with: the caller's prompt, else the task's own; a
    custom zoom's with ``--zoom 2`` unless it names a factor, as Midjourney pre-fills its box."""
    text = prompt or task.prompt or None
    if task.action is Action.ZOOM and not re.search(r"--zoom\b", text or ""):
        text = f"{text or ''} --zoom 2".strip()
    return text


def mj_task(task: Task, base: str, queue_position: int | None = None, url_for: UrlFor = file_url) -> dict[str, Any]:
    """A task as midjourney-proxy's ``fetch``, ``list-by-condition`` and notifyHook carry it."""
    view = task_view(task, base, queue_position, url_for)
    ended_badly = task.status in (TaskStatus.FAILURE, TaskStatus.CANCEL)
    fail_reason = (view.fail_reason or ("cancelled" if task.status is TaskStatus.CANCEL else "failed")) if ended_badly else None
    images = view.image_urls
    return {
        "id": task.id,
        "action": task.action.value,
        "status": task.status.value,
        "prompt": task.prompt,
        "promptEn": task.final_prompt,
        "description": task.description,
        "state": task.params.get("client", {}).get("state"),
        "submitTime": task.submit_time,
        "startTime": task.start_time,
        "finishTime": task.finish_time,
        # new-api counts a task unfinished until "100%", and refunds a failure with a reason.
        "progress": "100%" if ended_badly else view.progress,
        "failReason": fail_reason,
        "imageUrl": view.grid_image_url or (images[0] if images else None),
        "imageUrls": [{"url": url} for url in images],
        "videoUrl": view.video_urls[0] if view.video_urls else None,
        "videoUrls": [{"url": url} for url in view.video_urls],
        "buttons": [_button(b.custom_id, b.label) for b in view.buttons],
        "properties": {"finalPrompt": task.final_prompt, "finalZhPrompt": "", "discordInstanceId": task.engine},
        "parentId": task.parent_task_id,
        "botType": "NIJI_JOURNEY" if task.params.get("niji") else "MID_JOURNEY",
        "mode": str(task.params.get("speed") or "fast").upper(),
        "seed": None if task.seed is None else str(task.seed),
        "width": task.result.width if task.result else None,
        "height": task.result.height if task.result else None,
        "queuePosition": queue_position,
    }


def _button(custom_id: str, label: str) -> dict[str, Any]:
    emoji = label if not label.isascii() else ""
    return {"customId": to_mj_custom_id(custom_id), "emoji": emoji, "label": "" if emoji else label, "type": 2, "style": 2}
