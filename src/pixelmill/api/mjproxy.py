"""midjourney-proxy's ``/mj/...`` API: new-api channels, Dooy's and Licoy's web apps work by
pointing them at pixelmill. The same routes under ``/mj-fast``, ``/mj-relax`` and ``/mj-turbo``
pick the speed tier. Bodies and answers are mapped in ``contracts/mjproxy.py``; everything else
is the seed-004 routes' own pipeline (``runtime.service``, ``runtime.operations``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from pixelmill.api import deps
from pixelmill.api.deps import IdempotencyKey, RuntimeDep, base_url, own_bases
from pixelmill.api.errors import EnvelopeResponse, contract_errors
from pixelmill.auth.keys import Principal
from pixelmill.contracts import mjproxy as mj
from pixelmill.exceptions import NotFound, PixelmillError, TaskNotFound, ValidationError
from pixelmill.media.inputs import FILES_PATH
from pixelmill.runtime import Runtime
from pixelmill.tasks.actions import Action
from pixelmill.tasks.record import Task
from pixelmill.tasks.requests import (
    ActionRequest,
    BlendRequest,
    Delivery,
    DescribeRequest,
    ImagineRequest,
    ModalRequest,
    RerollRequest,
    ShortenRequest,
    UpscaleRequest,
    VariationRequest,
    VideoRequest,
    validated,
)

#: The path prefixes: plain /mj, and one per speed tier (trueai-org's midjourney-proxy).
PREFIXES = {"/mj": None, **{f"/mj-{speed}/mj": speed for speed in mj.SPEEDS}}
#: Most recent tasks /mj/task/list answers.
LIST_LIMIT = 100


def _render_error(exc: PixelmillError) -> Response:
    status, body = mj.error_result(exc)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
    return EnvelopeResponse(body, status_code=status, headers=headers)


contract_errors(tuple(PREFIXES), _render_error)


async def mj_caller(request: Request, runtime: RuntimeDep) -> deps.Caller:
    """``mj-api-secret`` (new-api, Dooy's app), ``x-ptoken``, or ``Authorization`` raw or with
    ``Bearer `` (Licoy's app forwards it raw); checked where the route does its work."""
    token = request.headers.get("mj-api-secret") or request.headers.get("x-ptoken")
    if not token:
        authorization = request.headers.get("authorization", "").strip()
        token = authorization[7:].strip() if authorization[:7].lower() == "bearer " else authorization
    return deps.Caller(runtime, None, token or None).checked()


MjCaller = Annotated[deps.Caller, Depends(mj_caller)]


def mj_principal(caller: MjCaller) -> Principal:
    return caller.principal()


def _speed(request: Request) -> str | None:
    path = request.url.path
    for prefix, speed in PREFIXES.items():
        if path.startswith(prefix + "/"):
            return speed
    return None


Caller = Annotated[Principal, Depends(mj_principal)]
router = APIRouter(tags=["midjourney-proxy"])


class Inline:
    """Images sent inline (data URLs, base64) are stored like ``/v1/uploads``: the same size,
    type and decompression-bomb checks as a fetched URL, then referred to by their own URL."""

    def __init__(self, request: Request, runtime: Runtime) -> None:
        self._base = base_url(request, runtime)
        self._runtime = runtime

    def url(self, value: str, field: str) -> str:
        if mj.is_url(value):
            return value
        image = self._runtime.inputs.accept(mj.decode_image(value, field), field, "the image")
        return self._base + FILES_PATH + image.key


def _hook(body: mj.MjBody) -> dict[str, Any]:
    """The fields every submit shares: state, and notifyHook as a midjourney-proxy webhook."""
    fields: dict[str, Any] = {"state": body.state or None}
    if body.notifyHook:
        fields.update(webhook_url=body.notifyHook, webhook_format="midjourney-proxy")
    return fields


def _answer(runtime: Runtime, task: Task) -> dict[str, Any]:
    return mj.submit_result(task, runtime.service.queue_position(task))


@router.post("/submit/imagine")
async def imagine(body: mj.MjImagine, request: Request, caller: MjCaller, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    # A submit and a fetch are what midjourney-proxy's clients send most: one hop to a thread.
    bases = own_bases(request, caller.runtime)
    return await caller.run(lambda principal: _imagine(body, request, principal, caller.runtime, bases, idempotency_key))


def _imagine(
    body: mj.MjImagine, request: Request, principal: Principal, runtime: Runtime, bases: list[str], idempotency_key: str | None
) -> dict[str, Any]:
    inline = Inline(request, runtime)
    images = [*(body.base64Array or []), *([body.base64] if body.base64 else [])]
    fields = {
        "prompt": body.prompt, "niji": mj.niji_of(body.botType), "speed": mj.speed_of(_speed(request), body.accountFilter),
        "image_urls": [inline.url(v, f"base64Array[{i}]") for i, v in enumerate(images)] or None, **_hook(body),
        "template": body.template, "release": body.release, "variables": body.variables,
    }
    req = validated(ImagineRequest, {k: v for k, v in fields.items() if v is not None})
    if req.prompt is not None and req.to_prompt().repeat:
        # midjourney-proxy answers one task id, and its clients track (and bill) only that one.
        raise ValidationError("prompt", "--repeat makes several tasks, but this API answers one task id; submit them one by one")
    tasks = runtime.service.imagine(principal, req, bases, idempotency_key=idempotency_key)
    return _answer(runtime, tasks[0])


@router.post("/submit/action")
async def action(body: mj.MjAction, request: Request, caller: MjCaller, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    runtime, bases = caller.runtime, own_bases(request, caller.runtime)

    def press(principal: Principal) -> dict[str, Any]:
        req = validated(ActionRequest, {"custom_id": mj.from_mj_custom_id(body.customId), "task_id": body.taskId, **_hook(body)})
        return _answer(runtime, runtime.operations.press(principal, req, bases, idempotency_key=idempotency_key))

    return await caller.run(press)


@router.post("/submit/modal")
def modal(body: mj.MjModal, request: Request, principal: Caller, runtime: RuntimeDep) -> dict[str, Any]:
    waiting = runtime.service.get(principal, body.taskId)
    mask = Inline(request, runtime).url(body.maskBase64, "maskBase64") if body.maskBase64 else None
    req = validated(ModalRequest, {"task_id": body.taskId, "prompt": mj.modal_prompt(waiting, body.prompt), "mask_url": mask})
    return _answer(runtime, runtime.operations.modal(principal, req, own_bases(request, runtime)))


@router.post("/submit/change")
def change(body: mj.MjChange, request: Request, principal: Caller, runtime: RuntimeDep, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    return _answer(runtime, _change(runtime, principal, request, body.taskId, body.action, body.index, body, idempotency_key))


@router.post("/submit/simple-change")
def simple_change(
    body: mj.MjSimpleChange, request: Request, principal: Caller, runtime: RuntimeDep, idempotency_key: IdempotencyKey = None
) -> dict[str, Any]:
    task_id, verb, index = mj.parse_simple_change(body.content)
    return _answer(runtime, _change(runtime, principal, request, task_id, verb, index, body, idempotency_key))


def _change(
    runtime: Runtime, principal: Principal, request: Request, task_id: str, verb: str, index: int | None, body: mj.MjBody, key: str | None
) -> Task:
    if verb != "REROLL" and index is None:
        raise ValidationError("index", f"{verb} needs index 1-4")
    fields = {"task_id": task_id, **_hook(body)}
    req: Delivery
    if verb == "REROLL":
        req = validated(RerollRequest, fields)
    else:
        req = validated(UpscaleRequest if verb == "UPSCALE" else VariationRequest, {**fields, "index": index})
    return runtime.operations.submit(principal, Action(verb), req, own_bases(request, runtime), idempotency_key=key)


@router.post("/submit/blend")
def blend(body: mj.MjBlend, request: Request, principal: Caller, runtime: RuntimeDep, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    inline = Inline(request, runtime)
    req = validated(BlendRequest, {
        "image_urls": [inline.url(v, f"base64Array[{i}]") for i, v in enumerate(body.base64Array)],
        "dimensions": body.dimensions, **_hook(body),
    })
    return _answer(runtime, runtime.operations.submit(principal, Action.BLEND, req, own_bases(request, runtime), idempotency_key=idempotency_key))


@router.post("/submit/describe")
def describe(body: mj.MjDescribe, request: Request, principal: Caller, runtime: RuntimeDep, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    if (body.base64 is None) == (body.link is None):
        raise ValidationError("base64", "give the picture as base64 or as link")
    url = body.link if body.link is not None else Inline(request, runtime).url(body.base64 or "", "base64")
    req = validated(DescribeRequest, {"image_url": url, **_hook(body)})
    return _answer(runtime, runtime.operations.submit(principal, Action.DESCRIBE, req, own_bases(request, runtime), idempotency_key=idempotency_key))


@router.post("/submit/shorten")
def shorten(body: mj.MjShorten, request: Request, principal: Caller, runtime: RuntimeDep, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    req = validated(ShortenRequest, {"prompt": body.prompt, **_hook(body)})
    return _answer(runtime, runtime.operations.submit(principal, Action.SHORTEN, req, own_bases(request, runtime), idempotency_key=idempotency_key))


@router.post("/submit/video")
def video(body: mj.MjVideo, request: Request, principal: Caller, runtime: RuntimeDep, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    if body.loop:
        raise ValidationError("loop", "looping clips are not made here; leave loop out")
    if body.action is not None:
        raise ValidationError("action", f"{body.action!r} is not supported (extending a clip is not made here)")
    inline = Inline(request, runtime)
    fields: dict[str, Any] = {
        "motion": body.motion, "batch_size": body.batchSize, "prompt": body.prompt or None, **_hook(body),
        "video_type": (body.videoType or "vid_1.1_i2v_480").replace("i2v_", "i2v_start_end_") if body.endImage else body.videoType,
    }
    if body.image is not None:
        fields["image_url"] = inline.url(body.image, "image")
    if body.endImage is not None:
        fields["end_url"] = inline.url(body.endImage, "endImage")
    if body.taskId is not None:
        # midjourney-proxy counts grid images 1-4; pixelmill's video counts from 0.
        fields.update(task_id=body.taskId, index=None if body.index is None else body.index - 1)
    req = validated(VideoRequest, {k: v for k, v in fields.items() if v is not None})
    return _answer(runtime, runtime.operations.submit(principal, Action.VIDEO, req, own_bases(request, runtime), idempotency_key=idempotency_key))


@router.post("/submit/edits")
@router.post("/submit/edit", include_in_schema=False)
def edits(body: mj.MjEdits, request: Request, principal: Caller, runtime: RuntimeDep, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    """An edit of a picture: an imagine with the picture as its image prompt."""
    req = validated(ImagineRequest, {"prompt": body.prompt, "image_urls": [Inline(request, runtime).url(body.image, "image")], **_hook(body)})
    return _answer(runtime, runtime.service.imagine(principal, req, own_bases(request, runtime), idempotency_key=idempotency_key)[0])


@router.post("/submit/upload-discord-images")
def upload(body: mj.MjUpload, request: Request, principal: Caller, runtime: RuntimeDep) -> dict[str, Any]:
    inline = Inline(request, runtime)
    urls = [inline.url(v, f"base64Array[{i}]") for i, v in enumerate(body.base64Array)]
    return {"code": 1, "description": "Submit success", "result": urls, "properties": {}}


def _task(runtime: Runtime, principal: Principal, task_id: str) -> Task:
    """The task a task route names: an unknown one is HTTP 404 (code 3) here, where a submit
    naming one answers code 4."""
    try:
        return runtime.service.get(principal, task_id)
    except TaskNotFound as exc:
        raise NotFound(exc.description, properties=exc.properties) from None


@router.get("/task/{task_id}/fetch")
async def fetch(task_id: str, request: Request, caller: MjCaller) -> JSONResponse:
    runtime, base = caller.runtime, base_url(request, caller.runtime)

    def read(principal: Principal) -> dict[str, Any]:
        task = _task(runtime, principal, task_id)
        return mj.mj_task(task, base, runtime.service.queue_position(task), runtime.storage.url)

    return JSONResponse(await caller.read(read))


@router.get("/task/{task_id}/image-seed")
def image_seed(task_id: str, principal: Caller, runtime: RuntimeDep) -> dict[str, Any]:
    task = _task(runtime, principal, task_id)
    if task.seed is None:
        raise ValidationError("task_id", f"task {task.id} has no seed")
    return {"code": 1, "description": "Success", "result": str(task.seed), "properties": {}}


@router.post("/task/list-by-condition")
@router.post("/task/list-by-ids", include_in_schema=False)
async def list_by_condition(body: mj.MjIds, request: Request, caller: MjCaller) -> list[dict[str, Any]]:
    """The caller's tasks among ``ids``, as a bare array; ids it does not know are left out."""
    runtime, base = caller.runtime, base_url(request, caller.runtime)
    return await caller.run(lambda principal: [
        mj.mj_task(t, base, url_for=runtime.storage.url) for t in runtime.service.get_many(principal, body.strings())
    ])


@router.get("/task/list")
def list_tasks(request: Request, principal: Caller, runtime: RuntimeDep) -> list[dict[str, Any]]:
    """The caller's latest 100 tasks, newest first."""
    base = base_url(request, runtime)
    return [mj.mj_task(t, base, url_for=runtime.storage.url) for t in runtime.service.recent(principal, LIST_LIMIT)]


@router.post("/task/{task_id}/cancel")
def cancel(task_id: str, principal: Caller, runtime: RuntimeDep) -> dict[str, Any]:
    _task(runtime, principal, task_id)
    task = runtime.service.cancel(principal, task_id)
    return {"code": 1, "description": "Success", "result": task.id, "properties": {}}
