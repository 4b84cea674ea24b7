"""The OpenAI Images API: ``POST /v1/images/generations``, ``/edits`` and ``/variations``, so an
unchanged ``openai`` client (or Open WebUI, LibreChat, LiteLLM ...) generates through pixelmill by
changing its base URL. Fields and errors are mapped in ``contracts/openai_images.py``; the work is
the same imagine / inpaint / variation tasks as every other route's.

Three ways to get the images:
- by default the request waits for them (at most ``PIXELMILL_IMAGES_WAIT_SECONDS``);
- ``stream: true`` sends Server-Sent Events: ``partial_image`` events from the engine's previews
  (up to ``partial_images``), then one ``completed`` event per image;
- ``Prefer: respond-async`` answers 202 at once with the task ids, to poll at
  ``GET /v1/images/tasks/{id}``.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from pixelmill.api.deps import IdempotencyKey, PrincipalDep, RuntimeDep, base_url, own_bases
from pixelmill.api.errors import EnvelopeResponse, contract_errors
from pixelmill.api.uploads import read_limited
from pixelmill.api.waiting import until_settled
from pixelmill.auth.keys import Principal
from pixelmill.contracts import openai_images as oa
from pixelmill.exceptions import PixelmillError, ValidationError
from pixelmill.media.inputs import FILES_PATH
from pixelmill.prompts.params import MAX_IMAGE_PROMPTS
from pixelmill.runtime import Runtime
from pixelmill.tasks.actions import Action
from pixelmill.tasks.record import Task
from pixelmill.tasks.requests import ImagineRequest, InpaintRequest, VariationRequest, validated
from pixelmill.tasks.status import TaskStatus

router = APIRouter(prefix="/v1/images", tags=["openai-images"])
log = logging.getLogger("pixelmill.api")

#: Most pictures one edit may send (``image[]``): they become the image prompts of an imagine.
MAX_EDIT_IMAGES = MAX_IMAGE_PROMPTS
#: Room for multipart boundaries, headers and the text fields on top of the images.
_FORM_OVERHEAD = 256 * 1024


def _render_error(exc: PixelmillError) -> Response:
    status, body, headers = oa.error_result(exc)
    return EnvelopeResponse(body, status_code=status, headers=headers)


contract_errors(("/v1/images",), _render_error)

Prefer = Annotated[str | None, Header(description="'respond-async': answer 202 with the task ids at once.")]


def _multipart(model: type[oa.ImageFields], files: dict[str, bool]) -> dict[str, Any]:
    """The OpenAPI request body of a multipart route: ``model``'s fields as text parts, and
    ``files`` (name → required)."""
    schema = model.model_json_schema()
    binary = {"type": "string", "format": "binary"}
    properties = {**schema["properties"], **{name: binary for name in files}}
    if "image[]" in properties:
        properties["image[]"] = {"type": "array", "items": binary}
    required = [*schema.get("required", []), *(name for name, needed in files.items() if needed)]
    body = {"type": "object", "properties": properties, "required": required}
    if "$defs" in schema:
        body["$defs"] = schema["$defs"]
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": body}}}}


def _async(prefer: str | None) -> bool:
    return any(part.strip().lower() == "respond-async" for part in (prefer or "").split(","))


def _common(body: oa.ImageFields, target: oa.Target) -> dict[str, Any]:
    # A stream with partial images watches its task from the start: its previews are stored.
    watching = bool(getattr(body, "stream", False) and getattr(body, "partial_images", 0))
    return {"engine": target.engine, "end_user": oa.end_user(body), "previews": watching or None}


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


@router.post("/generations", responses={200: {"description": "ImagesResponse, or text/event-stream when stream is true"}})
async def generations(
    body: oa.GenerateFields, request: Request, principal: PrincipalDep, runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None, prefer: Prefer = None,
) -> Response:
    """Generate ``n`` images from a prompt (one imagine task per four images)."""
    target = oa.target_of(body.model, tuple(runtime.settings.engines))
    fields: dict[str, Any] = {**_common(body, target), **oa.picture_fields(body), "output_profile": oa.output_profile(body)}
    if target.template is not None:
        # A template release: brand-locked generation from any OpenAI client. A rollout keeps
        # each end user on one version.
        fields.update(template=target.template, release=target.release, variables=oa.variables_of(body.prompt),
                      subject_id=oa.end_user(body))
    else:
        fields["prompt"] = body.prompt
    if oa.tasks_for(body.n) > 1:
        fields["repeat"] = oa.tasks_for(body.n)
    req = validated(ImagineRequest, _clean(fields))
    bases = own_bases(request, runtime)
    release = _hold(runtime, body, prefer)
    tasks = await _accept(release, lambda: runtime.service.imagine(principal, req, bases, idempotency_key=idempotency_key))
    return await _respond(request, runtime, principal, tasks, body, target, "image_generation", prefer, release)


@router.post("/edits", openapi_extra=_multipart(oa.EditFields, {"image": False, "image[]": False, "mask": False}))
async def edits(request: Request, principal: PrincipalDep, runtime: RuntimeDep, idempotency_key: IdempotencyKey = None, prefer: Prefer = None) -> Response:
    """Edit pictures (multipart): ``image`` or repeated ``image[]``, an optional ``mask``, and
    ``prompt``. With a mask the first picture is repainted where the mask is transparent (or
    white); without one the pictures are image prompts of a new generation."""
    form = await _form(request, runtime)
    body = validated(oa.EditFields, _scalars(form))
    target = oa.target_of(body.model, tuple(runtime.settings.engines))
    if target.template is not None:
        raise ValidationError("model", "templates generate (POST /v1/images/generations); an edit runs on an engine")
    images = [p for name in ("image", "image[]") for p in form.getlist(name) if isinstance(p, UploadFile)]
    if not images:
        raise ValidationError("image", "send the picture to edit as the file part 'image' (or repeated 'image[]')")
    if len(images) > MAX_EDIT_IMAGES:
        raise ValidationError("image", f"at most {MAX_EDIT_IMAGES} pictures")
    mask = form.get("mask")
    base = base_url(request, runtime)
    urls = [await _stored(runtime, part, f"image[{i}]", base) for i, part in enumerate(images)]
    bases = own_bases(request, runtime)
    common = {**_common(body, target), "output_profile": oa.output_profile(body)}
    if isinstance(mask, UploadFile):
        if len(images) > 1:
            raise ValidationError("mask", "a mask applies to one picture; send one image with it")
        _one_task(body)
        if body.size not in (None, "auto"):
            raise ValidationError("size", "an edit with a mask keeps the picture's size; leave size out (or auto)")
        req = validated(InpaintRequest, _clean({**common, "image_url": urls[0], "mask_url": await _stored(runtime, mask, "mask", base),
                                                "prompt": body.prompt}))
        release = _hold(runtime, body, prefer)
        task = await _accept(release, lambda: [runtime.operations.submit(principal, Action.INPAINT, req, bases, idempotency_key=idempotency_key)])
        return await _respond(request, runtime, principal, task, body, target, "image_edit", prefer, release)
    fields = {**common, **oa.picture_fields(body), "prompt": body.prompt, "image_urls": urls,
              "repeat": oa.tasks_for(body.n) if oa.tasks_for(body.n) > 1 else None}
    imagine = validated(ImagineRequest, _clean(fields))
    release = _hold(runtime, body, prefer)
    tasks = await _accept(release, lambda: runtime.service.imagine(principal, imagine, bases, idempotency_key=idempotency_key))
    return await _respond(request, runtime, principal, tasks, body, target, "image_edit", prefer, release)


@router.post("/variations", openapi_extra=_multipart(oa.ImageFields, {"image": True}))
async def variations(request: Request, principal: PrincipalDep, runtime: RuntimeDep, idempotency_key: IdempotencyKey = None, prefer: Prefer = None) -> Response:
    """Variations of one picture (multipart ``image``): a strong variation, four images a task."""
    form = await _form(request, runtime)
    body = validated(oa.ImageFields, _scalars(form))
    target = oa.target_of(body.model, tuple(runtime.settings.engines))
    if target.template is not None:
        raise ValidationError("model", "templates generate (POST /v1/images/generations); a variation runs on an engine")
    image = form.get("image")
    if not isinstance(image, UploadFile):
        raise ValidationError("image", "send the picture as the file part 'image'")
    _one_task(body)
    url = await _stored(runtime, image, "image", base_url(request, runtime))
    req = validated(VariationRequest, _clean({**_common(body, target), "image_url": url}))
    if body.size not in (None, "auto"):
        raise ValidationError("size", "a variation keeps the picture's size; leave size out (or auto)")
    bases = own_bases(request, runtime)
    release = _hold(runtime, body, prefer)
    task = await _accept(release, lambda: [runtime.operations.submit(principal, Action.VARIATION, req, bases, idempotency_key=idempotency_key)])
    return await _respond(request, runtime, principal, task, body, target, "image_variation", prefer, release)


@router.get("/tasks/{task_id}")
async def get_task(
    task_id: str, request: Request, principal: PrincipalDep, runtime: RuntimeDep,
    response_format: Annotated[oa.ResponseFormat, Query(description="How finished images are given.")] = "url",
) -> dict[str, Any]:
    """A task accepted with ``Prefer: respond-async``: its status, and once completed its images
    as an ImagesResponse's ``data``."""
    task = await run_in_threadpool(runtime.service.get, principal, task_id)
    answer: dict[str, Any] = {"id": task.id, "object": "image.task", "status": oa.task_status(task), "created": task.submit_time // 1000}
    if task.status is TaskStatus.SUCCESS:
        answer["data"] = await run_in_threadpool(_data, runtime, [task], 4, response_format, base_url(request, runtime))
    elif task.status in (TaskStatus.FAILURE, TaskStatus.CANCEL):
        answer["error"] = oa.error_body(task.fail_reason or "failed", "server_error", None, "generation_failed")["error"]
    return answer


# --- multipart ---------------------------------------------------------------------------------


async def _form(request: Request, runtime: Runtime) -> FormData:
    """The multipart body, counted while it arrives and refused past what its images may weigh."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ValidationError("Content-Type", f"send multipart/form-data (image, mask, prompt ...), got {content_type or 'none'!r}")
    limit = (MAX_EDIT_IMAGES + 1) * runtime.settings.input_max_bytes + _FORM_OVERHEAD
    body = await read_limited(request, limit, "body")

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        return await Request(request.scope, replay).form(max_files=MAX_EDIT_IMAGES + 1, max_fields=64)
    except Exception as exc:  # noqa: BLE001 - a malformed multipart body is the caller's error
        raise ValidationError("body", f"the multipart body could not be read ({exc})") from None


def _scalars(form: FormData) -> dict[str, Any]:
    """The text fields; the SDK sends every scalar as text ("2", "true"), which the models read."""
    return {k: v for k, v in form.multi_items() if isinstance(v, str) and k not in ("image", "image[]", "mask")}


async def _stored(runtime: Runtime, part: UploadFile, field: str, base: str) -> str:
    data = await part.read()
    image = await run_in_threadpool(runtime.inputs.accept, data, field, part.filename or field)
    return base + FILES_PATH + image.key


def _one_task(body: oa.ImageFields) -> None:
    if body.n > oa.PER_TASK:
        raise ValidationError("n", f"at most {oa.PER_TASK} images from one picture (one task makes four)")


# --- answers -----------------------------------------------------------------------------------


def _images(tasks: Sequence[Task], n: int) -> list[tuple[Task, str]]:
    """The first ``n`` published images of the tasks, with the task each came from."""
    found = [(t, key) for t in tasks if t.result for key in t.result.image_keys if key]
    return found[:n]


def _data(runtime: Runtime, tasks: Sequence[Task], n: int, fmt: str, base: str) -> list[dict[str, Any]]:
    items = []
    for task, key in _images(tasks, n):
        item: dict[str, Any] = {"revised_prompt": task.final_prompt}
        if fmt == "b64_json":
            item["b64_json"] = base64.b64encode(runtime.storage.get(key)).decode()
        else:
            item["url"] = runtime.storage.url(key, base)
        items.append(item)
    return items


def _format_of(key: str) -> str:
    ext = key.rsplit(".", 1)[-1].lower()
    return {"jpg": "jpeg"}.get(ext, ext)


def _size(task: Task) -> str:
    return f"{task.result.width}x{task.result.height}" if task.result and task.result.width else "auto"


def _quality(body: oa.ImageFields) -> str:
    quality = getattr(body, "quality", None)
    return {"standard": "auto", "hd": "high", None: "auto"}.get(quality, quality or "auto")


def _task_ids(tasks: Sequence[Task]) -> dict[str, str]:
    return {"x-pixelmill-task-ids": ",".join(t.id for t in tasks)}


def _hold(runtime: Runtime, body: oa.ImageFields, prefer: str | None) -> Callable[[], None]:
    """A place among the process's open streams for the wait (or the event stream) to come,
    taken before any work is accepted: a 503 for too many streams then means nothing was
    queued, so a client retrying it makes nothing twice. The async mode waits for nothing."""
    if _async(prefer):
        return lambda: None
    return runtime.signals.feed.hold()


async def _accept(release: Callable[[], None], submit: Callable[[], list[Task]]) -> list[Task]:
    """Run the submit; a refusal gives the stream place back."""
    try:
        return await run_in_threadpool(submit)
    except BaseException:
        release()
        raise


async def _respond(
    request: Request, runtime: Runtime, principal: Principal, tasks: list[Task], body: oa.ImageFields,
    target: oa.Target, kind: str, prefer: str | None, release: Callable[[], None],
) -> Response:
    base = base_url(request, runtime)
    if _async(prefer):
        polls = [f"{base}/v1/images/tasks/{t.id}" for t in tasks]
        accepted = {
            "id": tasks[0].id, "object": "image.task", "status": oa.task_status(tasks[0]), "created": int(time.time()),
            "task_ids": [t.id for t in tasks], "poll_urls": polls,
        }
        return JSONResponse(accepted, status_code=202, headers={**_task_ids(tasks), "Location": polls[0]})
    if getattr(body, "stream", False):
        return _stream(request, runtime, principal, tasks, body, kind, release)
    deadline = time.monotonic() + runtime.settings.images_wait_seconds
    try:
        done = [await until_settled(request, runtime, principal, t.id, deadline) for t in tasks]
        failure = _failure(done)
        if failure is None:
            fmt = body.response_format or target.default_format
            data = await run_in_threadpool(_data, runtime, done, body.n, fmt, base)
    except PixelmillError as exc:
        failure, done = _after_acceptance(exc, tasks), tasks
    except Exception as exc:  # the work is accepted: answer for it, never with a 5xx the SDK would retry
        log.exception("waiting for accepted tasks failed")
        failure, done = _after_acceptance(PixelmillError(f"{type(exc).__name__} while waiting"), tasks), tasks
    finally:
        release()
    if failure is not None:
        status, error = failure
        # Work began (and a failure's charge was refunded): the SDK must not retry it on its own,
        # or it would make the images again; the task ids say where to look instead.
        return JSONResponse(error, status_code=status, headers={**_task_ids(done), "x-should-retry": "false"})
    answer: dict[str, Any] = {"created": int(time.time()), "data": data, "size": _size(done[0]), "quality": _quality(body),
                              "background": "opaque"}
    if done[0].result and done[0].result.image_keys:
        answer["output_format"] = _format_of(next(k for k in done[0].result.image_keys if k))
    return JSONResponse(answer, headers=_task_ids(done))


def _after_acceptance(exc: PixelmillError, tasks: Sequence[Task]) -> tuple[int, dict[str, Any]]:
    """An error while waiting for accepted tasks (the database or the store out of reach): the
    tasks go on, so the answer names them instead of inviting a retry that would submit again."""
    ids = ", ".join(t.id for t in tasks)
    return 503 if exc.http_status == 503 else 500, oa.error_body(
        f"{exc.description}; the work was accepted and goes on: poll GET /v1/images/tasks/{{id}} for {ids}",
        "server_error", None, "accepted_but_unanswered",
    )


def _failure(tasks: Sequence[Task]) -> tuple[int, dict[str, Any]] | None:
    """Why finished tasks give no answer: a failure, a timeout, or every image held back."""
    for task in tasks:
        if task.status in (TaskStatus.FAILURE, TaskStatus.CANCEL):
            return 500, oa.error_body(f"task {task.id}: {task.fail_reason or 'failed'}", "server_error", None, "generation_failed")
        if task.status is not TaskStatus.SUCCESS:
            return 504, oa.error_body(
                f"task {task.id} is still {task.status.value}; it goes on: poll GET /v1/images/tasks/{task.id}",
                "server_error", None, "timeout",
            )
    if not _images(tasks, 1):
        return 400, oa.error_body("every image was held back by output screening", "invalid_request_error", None, "content_policy_violation")
    return None


def _stream(
    request: Request, runtime: Runtime, principal: Principal, tasks: list[Task], body: oa.ImageFields, kind: str, release: Callable[[], None]
) -> StreamingResponse:
    """``partial_image`` events from the first task's previews, then ``completed`` per image.
    The stream gives its place back (``release``) when it ends or is dropped."""
    feed = runtime.signals.feed
    wanted = getattr(body, "partial_images", 0)

    def event(payload: dict[str, Any]) -> bytes:
        return f"event: {payload['type']}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()

    def common(task: Task, fmt: str) -> dict[str, Any]:
        return {"background": "opaque", "created_at": int(time.time()), "output_format": fmt, "quality": _quality(body), "size": _size(task)}

    async def partial(task: Task, index: int) -> bytes:
        data = await run_in_threadpool(runtime.storage.get, task.preview_key or "")
        return event({"type": f"{kind}.partial_image", "b64_json": base64.b64encode(data).decode(), "partial_image_index": index,
                      **common(task, _format_of(task.preview_key or ".jpeg"))})

    async def stream() -> AsyncIterator[bytes]:
        try:
            async with aclosing(events()) as chunks:
                async for chunk in chunks:
                    yield chunk
        except Exception as exc:  # a body already begun: end it with an error event, not a cut connection
            if not isinstance(exc, PixelmillError):
                log.exception("image stream failed")
            reason = exc if isinstance(exc, PixelmillError) else PixelmillError(f"{type(exc).__name__} while streaming")
            yield event({"type": "error", **_after_acceptance(reason, tasks)[1]})
        finally:
            release()

    async def events() -> AsyncGenerator[bytes]:
        deadline = time.monotonic() + runtime.settings.images_wait_seconds
        first, sent, shown = tasks[0], 0, None
        with feed.subscribe(first.id) as changes:
            task = await run_in_threadpool(runtime.service.get, principal, first.id)
            while True:
                if sent < wanted and task.preview_key and task.preview_key != shown and not task.status.is_terminal:
                    yield await partial(task, sent)
                    sent, shown = sent + 1, task.preview_key
                if task.status.is_terminal or time.monotonic() >= deadline:
                    break
                await changes.wait(deadline - time.monotonic())
                task = await run_in_threadpool(runtime.service.get, principal, first.id)
        if sent == 0 and wanted and task.preview_key and task.status is TaskStatus.SUCCESS:
            yield await partial(task, 0)  # it finished before the stream saw a preview: show its last
        done = [task, *[await until_settled(request, runtime, principal, t.id, deadline) for t in tasks[1:]]]
        failure = _failure(done)
        if failure is not None:
            yield event({"type": "error", **failure[1]})
            return
        for t, key in _images(done, body.n):
            data = await run_in_threadpool(runtime.storage.get, key)
            usage = {"input_tokens": 0, "input_tokens_details": {"image_tokens": 0, "text_tokens": 0}, "output_tokens": 0, "total_tokens": 0}
            yield event({"type": f"{kind}.completed", "b64_json": base64.b64encode(data).decode(), **common(t, _format_of(key)),
                         "usage": usage})

    body_stream = stream()
    weakref.finalize(body_stream, release)
    return StreamingResponse(body_stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache", **_task_ids(tasks)})
