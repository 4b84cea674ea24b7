"""The wire contracts a remote engine speaks to its upstream, behind one shape.

The engine works in seed 004's terms: an operation with its fields (``UpstreamStep``), an upstream
task id, and the task as seed 004 shows it (``status``, ``progress``, ``image_urls``,
``video_urls``, ``fail_reason``). A contract maps those onto one upstream API:

- ``seed004``: seed 004's own contract (another pixelmill qualifies): fields pass through.
- ``midjourney-proxy``: ``/mj/submit/*`` with ``mj-api-secret``. Follow-ups press the parent's
  buttons (``/mj/submit/action`` with the button's ``customId``, read from the parent task),
  inpaint and custom zoom confirm the MODAL through ``/mj/submit/modal`` with the mask as base64,
  blends send their pictures as base64; ``/mj/task/{id}/fetch`` and batched
  ``/mj/task/list-by-condition`` follow tasks; ``notifyHook`` carries the callback URL. A task
  that shows only the grid (``imageUrl``, midjourney-proxy's Java line) is cut into its four
  pictures.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pixelmill.engines.base import UpstreamStep
from pixelmill.exceptions import EngineError

#: An answer that means the account itself is gone (not the prompt, which is code 24): banned,
#: suspended, or without a subscription. It disables the account at once.
ACCOUNT_GONE = re.compile(
    r"(account|user).{0,40}(banned|blocked|suspended|disabled|deactivated)|"
    r"(no|without|inactive|expired|cancel+ed) (active |valid )?subscription|subscription.{0,20}(expired|inactive|required|cancel+ed)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    #: JSON, or the text fields of a multipart form when ``files`` are given.
    body: dict[str, Any] | None = None
    #: Multipart file parts: (field name, (file name, bytes, content type)).
    files: tuple[tuple[str, tuple[str, bytes, str]], ...] = ()


@dataclass(frozen=True)
class Verdict:
    """What an answer means: ``ok``, ``request`` (the request is wrong), ``banned`` (a banned
    prompt), ``lost`` (the upstream does not know the task), ``gone`` (the account is), ``busy``
    (rate limited, queue full: later, or elsewhere), ``retry`` (failing: later, or elsewhere),
    ``unsure`` (the upstream may have taken the submit: 409 while an earlier one with the key is
    accepted, a gateway's 502 or 504: only the same account, later)."""

    kind: str
    description: str


class Context:
    """What a contract may need while it builds a call: the upstream's view of another task (a
    parent's buttons) and the bytes behind a URL (a mask to send as base64)."""

    def __init__(self, task: Callable[[str], dict[str, Any]], read: Callable[[str], bytes], key: str | None = None) -> None:
        self.task = task
        self.read = read
        #: The submit's Idempotency-Key, which a contract may also carry in the body (``state``).
        self.key = key


class Contract:
    name: str
    #: Answered when the upstream is up and takes the key (an unknown task).
    probe: Call
    #: Ids per batched status call; 0: one call per task.
    batch_size = 0
    #: The upstream answers a repeated Idempotency-Key with the task it made (another pixelmill).
    #: Elsewhere an unanswered submit is looked for (``lookup``) before it is sent again.
    idempotent = False

    def headers(self, api_key: str) -> dict[str, str]:
        raise NotImplementedError

    def verdict(self, status: int, data: Any, text: str) -> Verdict:
        raise NotImplementedError

    def submit(self, step: UpstreamStep, callback_url: str | None, ctx: Context) -> Call:
        raise NotImplementedError

    def confirm(self, step: UpstreamStep, ctx: Context) -> dict[str, Any] | None:
        """What confirms the MODAL of ``step``'s upstream task, when the upstream opens one: the
        step's own (an inpaint's mask and prompt), or what this contract needs for it."""
        return step.fields.get("modal")

    def accepted(self, answer: dict[str, Any]) -> tuple[str, bool]:
        """The upstream task id of an accepted submit, and whether it waits for /modal."""
        raise NotImplementedError

    def fetch(self, upstream_id: str) -> Call:
        raise NotImplementedError

    def task(self, data: Any) -> dict[str, Any] | None:
        """An upstream task in seed 004's terms; None when ``data`` is not a task."""
        raise NotImplementedError

    def modal(self, upstream_id: str, modal: dict[str, Any], ctx: Context) -> Call:
        raise NotImplementedError

    def cancel(self, upstream_id: str) -> Call:
        raise NotImplementedError

    def lookup(self) -> Call | None:
        """Where the tasks a submit key may have made are listed (None: nowhere)."""
        return None

    def found(self, data: Any, submit_key: str) -> dict[str, Any] | None:
        """The accepted-submit answer for the task ``submit_key`` made, if ``data`` (the answer
        to ``lookup``) shows one."""
        return None

    def batch(self, upstream_ids: Sequence[str]) -> Call:
        raise NotImplementedError(f"{self.name} has no batched status call")

    def tasks(self, data: Any) -> dict[str, dict[str, Any]]:
        """The tasks a batched status call answered, by upstream id, in seed 004's terms."""
        raise NotImplementedError(f"{self.name} has no batched status call")


def _common(status: int, code: Any, description: str) -> Verdict:
    """Seed 004's retry table where both contracts agree, for answers that are not accepted."""
    if code == 4:
        return Verdict("request", description)
    if code == 24:
        return Verdict("banned", description)
    if status in (401, 403) or ACCOUNT_GONE.search(description):
        return Verdict("gone", f"HTTP {status}: {description}")
    described = f"HTTP {status}, code {code}: {description}"
    if status in (409, 502, 504):
        return Verdict("unsure", described)
    if status == 429 or code in (3, 23):  # rate limited, no instance free, queue full
        return Verdict("busy", described)
    return Verdict("retry", described)


class Seed004(Contract):
    name = "seed004"
    probe = Call("GET", "/v1/midjourney/0")
    idempotent = True

    def headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    def verdict(self, status: int, data: Any, text: str) -> Verdict:
        data = data if isinstance(data, dict) else {}
        code = data.get("code")
        description = str(data.get("description", text[:200])) if data else text[:200]
        if status == 200 and (code in (1, 200, 21) or (code is None and "status" in data)):
            return Verdict("ok", description)
        if code == 3 and "task" in description.lower():
            return Verdict("lost", description)
        # 3 (no instance), 9, 409 (an earlier submit with this key is still being accepted), 429,
        # 5xx: retry later with backoff.
        return _common(status, code, description)

    def submit(self, step: UpstreamStep, callback_url: str | None, ctx: Context) -> Call:
        fields = {k: v for k, v in step.fields.items() if k != "modal"}
        if callback_url:
            fields |= {"webhook_url": callback_url, "webhook_events": ["completed"]}
        return Call("POST", f"/v1/midjourney/generations/{step.operation}", fields)

    def accepted(self, answer: dict[str, Any]) -> tuple[str, bool]:
        return str(answer["data"][0]["task_id"]), answer.get("code") == 21

    def fetch(self, upstream_id: str) -> Call:
        return Call("GET", f"/v1/midjourney/{upstream_id}")

    def task(self, data: Any) -> dict[str, Any] | None:
        return data if isinstance(data, dict) and "status" in data else None

    def modal(self, upstream_id: str, modal: dict[str, Any], ctx: Context) -> Call:
        return Call("POST", "/v1/midjourney/generations/modal", {"task_id": upstream_id, **modal})

    def cancel(self, upstream_id: str) -> Call:
        return Call("POST", f"/v1/midjourney/{upstream_id}/cancel")

    # Another pixelmill answers many tasks in one call; an upstream without the route is polled
    # task by task (the engine finds out on the first batch).
    batch_size = 100

    def batch(self, upstream_ids: Sequence[str]) -> Call:
        return Call("POST", "/v1/midjourney/list-by-ids", {"ids": list(upstream_ids)})

    def tasks(self, data: Any) -> dict[str, dict[str, Any]]:
        found = data.get("data") if isinstance(data, dict) else None
        return {str(t["task_id"]): t for t in found or () if isinstance(t, dict) and "task_id" in t and "status" in t}


def _button_prefix(step: UpstreamStep) -> str:
    """midjourney-proxy's button for a follow-up: the start of its customId (a regular
    expression), before the message hash."""
    f = step.fields
    index = f.get("index", 1)
    match step.operation:
        case "upscale":
            mode = f.get("mode")
            # v6's and v7's (and later) subtle / creative upscalers
            return rf"MJ::JOB::upsample_v\d+_2x_{mode}::" if mode in ("subtle", "creative") else f"MJ::JOB::upsample::{index}::"
        case "variation":
            if "index" in f:
                return f"MJ::JOB::variation::{index}::"
            return "MJ::JOB::high_variation::" if f.get("mode") == "strong" else "MJ::JOB::low_variation::"
        case "reroll":
            return "MJ::JOB::reroll::"
        case "pan":
            return f"MJ::JOB::pan_{f['direction']}::"
        case "zoom":
            return {2.0: "MJ::Outpaint::50::", 1.5: "MJ::Outpaint::75::"}.get(float(f["zoom"]), "MJ::CustomZoom::")
        case "inpaint":
            return "MJ::Inpaint::"
        case "video":
            return f"MJ::JOB::animate_{f.get('motion', 'low')}::"
    raise EngineError(f"midjourney-proxy has no button for {step.operation}", retryable=False)


#: Actions whose result is a 2×2 grid (four pictures in one image where the upstream sends one).
_GRID_ACTIONS = {"IMAGINE", "VARIATION", "REROLL", "BLEND", "ZOOM", "PAN", "OUTPAINT"}


class MidjourneyProxy(Contract):
    name = "midjourney-proxy"
    probe = Call("GET", "/mj/task/0/fetch")
    batch_size = 100

    def headers(self, api_key: str) -> dict[str, str]:
        return {"mj-api-secret": api_key}

    def verdict(self, status: int, data: Any, text: str) -> Verdict:
        if status == 200 and isinstance(data, dict) and "status" in data and "code" not in data:
            return Verdict("ok", "")  # a task (fetch)
        if status == 200 and isinstance(data, list):
            return Verdict("ok", "")  # tasks (list-by-condition)
        if status in (200, 204) and data is None and text.strip() in ("", "null"):
            return Verdict("lost", "the upstream does not know the task")  # fetch of an unknown id
        data = data if isinstance(data, dict) else {}
        code = data.get("code")
        description = str(data.get("description", text[:200])) if data else text[:200]
        if status == 200 and code in (1, 21, 22):  # accepted; waiting in MODAL; accepted behind others
            return Verdict("ok", description)
        if status == 404:  # a missing parent (code 3 with HTTP 404), or an unknown task
            return Verdict("lost", description)
        # 3 (no account instance), 9, 23 (queue full), 429, 5xx: later, or on another account.
        return _common(status, code, description)

    def submit(self, step: UpstreamStep, callback_url: str | None, ctx: Context) -> Call:
        f = step.fields
        # ``state`` carries the submit key: an unanswered submit is found by it (``found``).
        hook = ({"notifyHook": callback_url} if callback_url else {}) | ({"state": ctx.key} if ctx.key else {})
        modes = {"accountFilter": {"modes": [step.speed.upper()]}} if step.speed else {}
        match step.operation:
            case "imagine":
                return Call("POST", "/mj/submit/imagine", {"prompt": f["prompt"], **hook, **modes})
            case "blend":
                images = [_data_url(ctx.read(url)) for url in f["image_urls"]]
                return Call("POST", "/mj/submit/blend", {"base64Array": images, "dimensions": f.get("dimensions") or "SQUARE", **hook, **modes})
            case "video" if "task_id" not in f or "index" in f:
                # From a picture, or from one of a grid's (midjourney-proxy counts them 1-4, seed
                # 004 from 0); an upscaled picture's clip is its animate button, below.
                body = {"motion": f.get("motion", "low"), "batchSize": f.get("batch_size", 1), **hook}
                body |= {"videoType": f["video_type"]} if f.get("video_type") else {}
                if "task_id" in f:
                    body |= {"taskId": str(f["task_id"]), "index": int(f["index"]) + 1}
                else:
                    body |= {"image": f["image_url"]} | ({"endImage": f["end_url"]} if f.get("end_url") else {})
                return Call("POST", "/mj/submit/video", body)
        parent = ctx.task(str(f["task_id"]))
        prefix = _button_prefix(step)
        buttons = [str(b.get("customId", "")) for b in parent.get("buttons") or [] if isinstance(b, dict)]
        for custom_id in buttons:
            if re.match(prefix, custom_id):
                return Call("POST", "/mj/submit/action", {"taskId": str(f["task_id"]), "customId": custom_id, **hook})
        change = {"upscale": "UPSCALE", "variation": "VARIATION", "reroll": "REROLL"}.get(step.operation)
        if not buttons and change and (change == "REROLL" or ("index" in f and not (change == "UPSCALE" and f.get("mode")))):
            # The Java line shows no buttons; its /change does U1-U4, V1-V4 and reroll.
            index = {"index": f["index"]} if change != "REROLL" else {}
            return Call("POST", "/mj/submit/change", {"taskId": str(f["task_id"]), "action": change, **index, **hook})
        offered = ", ".join(c.rsplit("::", 1)[0] for c in buttons) or "none"
        wanted = prefix.replace("\\d+", "N").rstrip(":")
        raise EngineError(f"upstream task {f['task_id']} has no {wanted} button (it offers: {offered})", retryable=False)

    def confirm(self, step: UpstreamStep, ctx: Context) -> dict[str, Any] | None:
        # A remix's prompt; a custom zoom's factor, with the parent's prompt as Midjourney
        # pre-fills its box; an inpaint's mask and prompt. An account in Remix mode opens a MODAL
        # for variations, rerolls and pans too: confirmed with the parent's prompt, unchanged.
        f = step.fields
        if step.operation == "variation" and f.get("prompt"):
            return {"prompt": f["prompt"]}
        if "modal" in f or "task_id" not in f:
            return super().confirm(step, ctx)
        parent = ctx.task(str(f["task_id"]))
        if step.operation == "zoom":
            return {"prompt": f"{parent.get('prompt') or ''} --zoom {float(f['zoom']):g}".strip()}
        return {"prompt": str(parent.get("prompt") or "")}

    def accepted(self, answer: dict[str, Any]) -> tuple[str, bool]:
        return str(answer["result"]), answer.get("code") == 21

    def fetch(self, upstream_id: str) -> Call:
        return Call("GET", f"/mj/task/{upstream_id}/fetch")

    def task(self, data: Any) -> dict[str, Any] | None:
        if not isinstance(data, dict) or "status" not in data or "id" not in data:
            return None
        urls = [str(u["url"]) for u in data.get("imageUrls") or [] if isinstance(u, dict) and u.get("url")]
        grid = not urls and data.get("imageUrl") is not None and data.get("action") in _GRID_ACTIONS
        if not urls and data.get("imageUrl"):
            urls = [str(data["imageUrl"])]
        videos = [str(u["url"]) for u in data.get("videoUrls") or [] if isinstance(u, dict) and u.get("url")]
        if not videos and data.get("videoUrl"):
            videos = [str(data["videoUrl"])]
        return {
            "task_id": str(data["id"]), "status": data["status"], "progress": data.get("progress") or None,
            "image_urls": urls, "video_urls": videos, "grid": grid, "fail_reason": data.get("failReason"),
            "action": data.get("action"), "quota": None,
        }

    def modal(self, upstream_id: str, modal: dict[str, Any], ctx: Context) -> Call:
        body: dict[str, Any] = {"taskId": upstream_id, "prompt": modal.get("prompt") or ""}
        if modal.get("mask_url"):
            body["maskBase64"] = _data_url(ctx.read(modal["mask_url"]))
        return Call("POST", "/mj/submit/modal", body)

    def cancel(self, upstream_id: str) -> Call:
        return Call("POST", f"/mj/task/{upstream_id}/cancel")

    def lookup(self) -> Call | None:
        return Call("GET", "/mj/task/list")  # the latest tasks (100 in trueai-org's line)

    def found(self, data: Any, submit_key: str) -> dict[str, Any] | None:
        for task in data if isinstance(data, list) else ():
            if isinstance(task, dict) and task.get("state") == submit_key and task.get("id"):
                return {"code": 21 if task.get("status") == "MODAL" else 1, "description": "found by its state", "result": str(task["id"])}
        return None

    def batch(self, upstream_ids: Sequence[str]) -> Call:
        return Call("POST", "/mj/task/list-by-condition", {"ids": list(upstream_ids)})

    def tasks(self, data: Any) -> dict[str, dict[str, Any]]:
        found = (self.task(item) for item in data) if isinstance(data, list) else ()
        return {task["task_id"]: task for task in found if task is not None}


class OpenAIImages(Contract):
    """The OpenAI Images API: calls that answer with the pictures (no upstream task to follow),
    made by ``openai.py``; this class says what its answers mean."""

    name = "openai"
    probe = Call("GET", "/v1/models")

    def headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    def verdict(self, status: int, data: Any, text: str) -> Verdict:
        error = data.get("error") if isinstance(data, dict) else None
        error = error if isinstance(error, dict) else {}
        code, kind = str(error.get("code") or ""), str(error.get("type") or "")
        description = str(error.get("message") or text[:200])
        if status == 200 and isinstance(data, dict) and isinstance(data.get("data"), list):
            return Verdict("ok", description)
        if code in ("content_policy_violation", "moderation_blocked"):
            return Verdict("banned", description)
        if status in (401, 403) or "insufficient_quota" in (code, kind) or code == "billing_hard_limit_reached":
            return Verdict("gone", f"HTTP {status}: {description}")
        if status in (400, 404, 413, 422):
            return Verdict("request", description)
        if status == 429:
            return Verdict("busy", f"HTTP 429: {description}")
        if status in (502, 504):  # a gateway gave up: the call may have gone through
            return Verdict("unsure", f"HTTP {status}: {description}")
        # 408, 409, 500, 503: later, or on another account.
        return Verdict("retry", f"HTTP {status}: {description}")


def _data_url(data: bytes) -> str:
    kind = "png" if data.startswith(b"\x89PNG") else "jpeg" if data.startswith(b"\xff\xd8") else "webp" if data[8:12] == b"WEBP" else "png"
    return f"data:image/{kind};base64,{base64.b64encode(data).decode()}"


def contract(name: str) -> Contract:
    return {"seed004": Seed004, "midjourney-proxy": MidjourneyProxy, "openai": OpenAIImages}[name]()
