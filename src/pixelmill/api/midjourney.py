"""The Midjourney-style task contract of seed 004 (``/v1/midjourney/...``)."""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from pixelmill.api.deps import CallerDep, IdempotencyKey, PrincipalDep, RuntimeDep, base_url, own_bases
from pixelmill.api.waiting import settled, until_settled
from pixelmill.exceptions import ValidationError
from pixelmill.runtime import Runtime
from pixelmill.tasks.actions import Action
from pixelmill.tasks.record import Task
from pixelmill.tasks.requests import OPERATION_BODIES, ActionRequest, Delivery, ImagineRequest, ModalRequest
from pixelmill.tasks.status import TaskStatus
from pixelmill.tasks.view import TaskView, task_view

router = APIRouter(prefix="/v1/midjourney", tags=["midjourney"])
log = logging.getLogger("pixelmill.api")

KEEPALIVE_SECONDS = 15.0
#: How often an event stream refreshes a waiting task's queue position.
POSITION_SECONDS = 1.0


#: Ids one ``list-by-ids`` call may name.
MAX_LISTED = 1000


class SubmittedTask(BaseModel):
    task_id: str


class SubmitAnswer(BaseModel):
    code: int
    description: str
    properties: dict[str, Any]
    data: list[SubmittedTask]


def _submitted(*tasks: Task) -> SubmitAnswer:
    # One entry per task: several when the prompt asks for --repeat.
    data = [SubmittedTask(task_id=t.id) for t in tasks]
    if any(t.status is TaskStatus.MODAL for t in tasks):
        # Seed 004: code 21 says the task waits for a /modal call within 30 minutes.
        return SubmitAnswer(code=21, description="waiting for /modal", properties={}, data=data)
    return SubmitAnswer(code=1, description="submitted", properties={}, data=data)


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "code 4: bad parameters (the description names the field)"},
    401: {"description": "code 401: missing or invalid API key"},
    404: {"description": "code 3: the task does not exist"},
    409: {"description": "code 409: the first request with this Idempotency-Key is still being accepted"},
    422: {"description": "code 4: this Idempotency-Key was used with a different body"},
    429: {"description": "code 23: queue full, or code 429: rate limited (Retry-After)"},
    503: {"description": "code 3: no engine instance available; retry later"},
}


CacheHeader = Annotated[
    str | None,
    Header(alias="Pixelmill-Cache", description="'allow': like cache: true in the body."),
]


@router.post("/generations", response_model=SubmitAnswer, responses=_ERRORS, include_in_schema=False)
@router.post("/generations/imagine", response_model=SubmitAnswer, responses=_ERRORS)
async def imagine(
    body: ImagineRequest,
    request: Request,
    caller: CallerDep,
    idempotency_key: IdempotencyKey = None,
    cache: CacheHeader = None,
) -> SubmitAnswer:
    """Generate a 2×2 grid of four images from a prompt (one task per run with ``--repeat``)."""
    # The submit routes are the commonest of all: async, with one hop to a thread (Caller.run).
    bases, allow_cache = own_bases(request, caller.runtime), (cache or "").strip().lower() == "allow"
    return await caller.run(lambda principal: _submitted(*caller.runtime.service.imagine(
        principal, body, bases, idempotency_key=idempotency_key, allow_cache=allow_cache,
    )))


#: The operation routes: path → (action, fields the route fixes, summary). The body model is the
#: action's own (``OPERATION_BODIES``), shared with the SDK and the CLI.
_OPERATIONS: dict[str, tuple[Action, dict[str, Any], str]] = {
    "upscale": (Action.UPSCALE, {}, "Pick one image (1-4) of a grid as it is, or enlarge a picture 2× (mode subtle / creative)."),
    "variation": (Action.VARIATION, {}, "Four variations of a picture (mode subtle / strong); with prompt it is a remix."),
    "low-variation": (Action.VARIATION, {"mode": "subtle"}, "A subtle variation (mode is set to subtle)."),
    "high-variation": (Action.VARIATION, {"mode": "strong"}, "A strong variation (mode is set to strong)."),
    "reroll": (Action.REROLL, {}, "The same job again with a new seed."),
    "zoom": (Action.ZOOM, {}, "Zoom out (zoom 1-2) and paint the new surroundings; custom: true waits in MODAL (code 21)."),
    "pan": (Action.PAN, {}, "Extend the canvas by half a side towards direction and paint the new area."),
    "inpaint": (Action.INPAINT, {}, "Vary a region: the task waits in MODAL (code 21) until /modal brings prompt + mask_url."),
    "describe": (Action.DESCRIBE, {}, "Four prompts for a picture, in the task's description."),
    "blend": (Action.BLEND, {}, "Blend 2-5 pictures into a grid (dimensions PORTRAIT / SQUARE / LANDSCAPE)."),
    "shorten": (Action.SHORTEN, {}, "Shorter prompts that keep the words that carry weight, in description."),
    "video": (Action.VIDEO, {}, "MP4 clips from a picture (batch_size 1, 2 or 4, each billed), in video_urls."),
}


def _operation_route(path: str, action: Action, fixed: dict[str, Any], summary: str) -> None:
    model = OPERATION_BODIES[action.value.lower()]

    async def submit(body: Delivery, request: Request, caller: CallerDep, idempotency_key: IdempotencyKey = None) -> SubmitAnswer:
        if fixed:
            body = body.model_copy(update=fixed)
        bases, operations = own_bases(request, caller.runtime), caller.runtime.operations
        return await caller.run(lambda principal: _submitted(operations.submit(principal, action, body, bases, idempotency_key=idempotency_key)))

    submit.__annotations__["body"] = model  # each route validates its own body model
    router.add_api_route(
        f"/generations/{path}", submit, methods=["POST"], response_model=SubmitAnswer, responses=_ERRORS,
        name=path.replace("-", "_"), summary=path.replace("-", " ").capitalize(), description=summary,
    )


for _path, (_action, _fixed, _summary) in _OPERATIONS.items():
    _operation_route(_path, _action, _fixed, _summary)


@router.post("/generations/modal", response_model=SubmitAnswer, responses=_ERRORS)
async def modal(body: ModalRequest, request: Request, caller: CallerDep) -> SubmitAnswer:
    """Continue a MODAL task (inpaint: prompt + mask_url; custom zoom: zoom or --zoom); it is queued."""
    bases = own_bases(request, caller.runtime)
    return await caller.run(lambda principal: _submitted(caller.runtime.operations.modal(principal, body, bases)))


@router.post("/generations/action", response_model=SubmitAnswer, responses=_ERRORS)
async def action(body: ActionRequest, request: Request, caller: CallerDep, idempotency_key: IdempotencyKey = None) -> SubmitAnswer:
    """Press a button: ``custom_id`` from a task's ``buttons`` (code 4 when it does not apply)."""
    bases = own_bases(request, caller.runtime)
    return await caller.run(lambda principal: _submitted(caller.runtime.operations.press(principal, body, bases, idempotency_key=idempotency_key)))


@router.post("/{task_id}/cancel", response_model=SubmitAnswer, responses=_ERRORS)
def cancel(task_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> SubmitAnswer:
    """Cancel queued, waiting or running work; the charge is refunded. A finished task: code 4."""
    task = runtime.service.cancel(principal, task_id)
    return SubmitAnswer(code=1, description="cancelled", properties={}, data=[SubmittedTask(task_id=task.id)])


def _wait_seconds(wait: float | None, prefer: str | None, runtime: Runtime) -> float:
    """``?wait=30`` or ``Prefer: wait=30`` (RFC 7240), capped by the server's limit."""
    if wait is None and prefer:
        for part in prefer.split(","):
            name, _, value = part.strip().partition("=")
            if name.strip().lower() == "wait":
                try:
                    wait = float(value.strip())
                except ValueError:
                    raise ValidationError("Prefer", f"wait needs seconds, got {value.strip()!r}") from None
    return max(0.0, min(wait or 0.0, runtime.settings.max_wait_seconds))


def _view(runtime: Runtime, task: Task, base: str) -> TaskView:
    """The task object; a waiting task also says where it stands in its lane."""
    return task_view(task, base, runtime.service.queue_position(task), runtime.storage.url)


class TaskIds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(min_length=1, max_length=MAX_LISTED, description=f"Task ids, at most {MAX_LISTED}.")


class TaskList(BaseModel):
    code: int = 1
    description: str = "ok"
    data: list[TaskView]


@router.post("/list-by-ids", response_model=TaskList, responses=_ERRORS)
async def list_by_ids(body: TaskIds, request: Request, caller: CallerDep) -> TaskList:
    """Many tasks in one call (what a pixelmill in front of this one polls with): the caller's
    tasks among ``ids``, as ``GET /v1/midjourney/{task_id}`` shows each; unknown ids and other
    tenants' are left out alike."""
    runtime, base = caller.runtime, base_url(request, caller.runtime)
    return await caller.run(lambda principal: TaskList(data=[_view(runtime, t, base) for t in runtime.service.get_many(principal, body.ids)]))


@router.get("/{task_id}", response_model=TaskView, responses=_ERRORS)
async def get_task(
    task_id: str,
    request: Request,
    caller: CallerDep,
    wait: Annotated[float | None, Query(ge=0, le=3600, description="Long-poll: answer once the task is final, or after this many seconds.")] = None,
    prefer: Annotated[str | None, Header(description="'wait=N': the same as ?wait=N.")] = None,
) -> TaskView:
    """The task object: status, progress, and once SUCCESS its image URLs and buttons."""
    runtime = caller.runtime
    seconds = _wait_seconds(wait, prefer, runtime)
    base = base_url(request, runtime)
    if seconds <= 0:  # a plain poll, the commonest call of all: one hop to a thread, not three
        return await caller.read(lambda principal: _view(runtime, runtime.service.get(principal, task_id), base))
    principal = await run_in_threadpool(caller.principal)
    with runtime.signals.feed.stream():
        task = await until_settled(request, runtime, principal, task_id, time.monotonic() + seconds)
    return await run_in_threadpool(_view, runtime, task, base)


@router.get(
    "/{task_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}, **_ERRORS},
)
async def task_events(task_id: str, request: Request, principal: PrincipalDep, runtime: RuntimeDep) -> StreamingResponse:
    """Server-Sent Events: one ``task`` event (the task object) per change of status, progress,
    preview or queue position, until the task is final. A ``: keep-alive`` comment every 15 s
    holds proxies open."""
    task = await run_in_threadpool(runtime.service.get, principal, task_id)  # 404 before streaming
    base = base_url(request, runtime)
    feed = runtime.signals.feed
    release = feed.hold()  # 503 now, before streaming, when the process holds too many streams
    if not task.watched and not settled(task):
        try:  # someone watches now: its previews are worth storing (once; a hint, never an error)
            await run_in_threadpool(runtime.service.watch, principal, task_id)
        except Exception:
            log.warning("could not mark task %s watched", task_id, exc_info=True)

    async def stream() -> AsyncIterator[bytes]:
        nonlocal task
        last: tuple[object, ...] | None = None
        quiet_since = time.monotonic()
        position: int | None = None
        position_at = -POSITION_SECONDS
        try:
            with feed.subscribe(task.id) as changes:
                task = await run_in_threadpool(runtime.service.get, principal, task_id)  # read after subscribing
                while True:
                    # The queue position is a count over the lane: refreshed once a second, not per change.
                    if time.monotonic() - position_at >= POSITION_SECONDS or (last and last[0] != task.status.value):
                        position = await run_in_threadpool(runtime.service.queue_position, task)
                        position_at = time.monotonic()
                    view = task_view(task, base, position, runtime.storage.url)
                    state = (task.status.value, task.progress, task.preview_key, position)
                    if state != last:
                        last, quiet_since = state, time.monotonic()
                        data = view.model_dump_json()
                        yield f"id: {task.id}-{task.status.value}-{task.progress}\nevent: task\ndata: {data}\n\n".encode()
                    elif time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                        quiet_since = time.monotonic()
                        yield b": keep-alive\n\n"
                    if settled(task):  # a client that left is noticed by StreamingResponse, which ends this
                        return
                    # Until the task changes, its queue position is due, or a keep-alive is.
                    until = quiet_since + KEEPALIVE_SECONDS - time.monotonic()
                    if position is not None:
                        until = min(until, position_at + POSITION_SECONDS - time.monotonic())
                    await changes.wait(max(0.0, until))
                    task = await run_in_threadpool(runtime.service.get, principal, task_id)
        finally:
            release()

    # The place is given back when the stream ends, or when the stream is dropped without ever
    # starting (a client gone at once); releasing twice is harmless.
    events = stream()
    weakref.finalize(events, release)
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
