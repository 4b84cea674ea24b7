"""A tenant's tasks: as a list (``GET /v1/tasks``) and as one event stream (``GET /v1/tasks/events``).

The list is what the console's cards and gallery read, and any API user's history: newest first,
every filter narrowing it (a word a filter does not know is a 400 naming the filter and the words
it takes), cut into pages by ``next_cursor`` (give it back as ``cursor``), so a page costs what it
holds however long the history and tasks submitted meanwhile do not shift the next page.

The stream is one connection for all of a tenant's work (browsers allow six per host): it opens
with every task still on its way (a reloaded page re-attaches to them), then sends a task each
time it changes (status, progress, preview, queue position), its last event once it is final.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from enum import Enum
from typing import IO, Annotated, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from pixelmill.api.deps import CONSOLE_ALIVE, PrincipalDep, RuntimeDep, base_url
from pixelmill.api.waiting import settled
from pixelmill.exceptions import ValidationError
from pixelmill.media.archive import zip_tasks
from pixelmill.queue.listing import MAX_PAGE, TaskQuery
from pixelmill.runtime import Runtime
from pixelmill.tasks.actions import Action
from pixelmill.tasks.record import Task
from pixelmill.tasks.requests import RequestBody
from pixelmill.tasks.status import QUEUED, TaskStatus
from pixelmill.tasks.view import TaskView, task_view

router = APIRouter(tags=["tasks"])

E = TypeVar("E", bound=Enum)


class TaskPage(BaseModel):
    data: list[TaskView]
    next_cursor: str | None = Field(description="Give this back as cursor for the next page; null on the last.")


def _words(field: str, value: str | None, kind: type[E]) -> list[E]:
    """A comma-separated filter (``SUCCESS,FAILURE``) as members of ``kind``."""
    if not value:
        return []
    allowed = {str(m.value): m for m in kind}
    chosen = []
    for word in (w.strip().upper() for w in value.split(",") if w.strip()):
        if word not in allowed:
            raise ValidationError(field, f"{word!r} is not one of {', '.join(sorted(allowed))}")
        chosen.append(allowed[word])
    return chosen


def _aspect(value: str | None) -> tuple[int, int] | None:
    """``16:9`` as (16, 9), in lowest terms."""
    if value is None:
        return None
    w, _, h = value.partition(":")
    if not (w.isdigit() and h.isdigit() and 0 < int(w) <= 100 and 0 < int(h) <= 100):
        raise ValidationError("aspect", f"{value!r} is not W:H with whole numbers 1-100, e.g. 16:9")
    d = math.gcd(int(w), int(h))
    return int(w) // d, int(h) // d


@router.get("/v1/tasks", response_model=TaskPage, responses={400: {"description": "code 4: a filter or the cursor is wrong"}})
async def list_tasks(
    request: Request,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    status: Annotated[str | None, Query(max_length=200, description="Comma-separated statuses, e.g. SUCCESS,FAILURE.")] = None,
    action: Annotated[str | None, Query(max_length=200, description="Comma-separated actions, e.g. IMAGINE,UPSCALE.")] = None,
    engine: Annotated[str | None, Query(max_length=64)] = None,
    template: Annotated[str | None, Query(max_length=64, description="Tasks rendered from this template.")] = None,
    batch_id: Annotated[str | None, Query(max_length=32)] = None,
    parent: Annotated[str | None, Query(max_length=64, description="Tasks made from this task (its buttons and modal).")] = None,
    starred: Annotated[bool, Query(description="Only the tasks the tenant starred.")] = False,
    aspect: Annotated[str | None, Query(max_length=11, description="Width:height of the picture asked for, e.g. 16:9.")] = None,
    since: Annotated[int | None, Query(ge=0, description="Submitted at or after, Unix epoch ms.")] = None,
    until: Annotated[int | None, Query(ge=0, description="Submitted before, Unix epoch ms.")] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=200, description="Words the prompt contains (case-insensitive).")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> TaskPage:
    """The caller's tasks, newest first."""
    query = TaskQuery(
        statuses=_words("status", status, TaskStatus), actions=_words("action", action, Action), engine=engine, template=template,
        batch_id=batch_id, parent=parent, starred=starred, aspect=_aspect(aspect), since=since, until=until, text=q,
    )
    base = base_url(request, runtime)

    def read() -> TaskPage:
        page = runtime.service.page(principal, query, limit=limit, cursor=cursor)
        # A waiting task says where it stands, as it does when polled alone.
        views = [task_view(t, base, runtime.service.queue_position(t) if t.status in QUEUED else None, runtime.storage.url)
                 for t in page.tasks]
        return TaskPage(data=views, next_cursor=page.next_cursor)

    return await run_in_threadpool(read)


#: Tasks one archive or delete may name.
MAX_CHOSEN = 200
#: Statuses of tasks still on their way (what a stream opens with).
RUNNING = (TaskStatus.IN_PROGRESS, TaskStatus.MODAL)
WAITING = tuple(QUEUED)
#: A comment this often holds proxies open on a quiet stream.
KEEPALIVE_SECONDS = 15.0
#: How often the stream reads the tenant's tasks on their way anew while some wait in the queue:
#: their positions move as other work starts. Without waiting tasks, every ``IDLE_REFRESH_SECONDS``
#: (a task another process submitted, where no notification tells: SQLite).
REFRESH_SECONDS = 1.0
IDLE_REFRESH_SECONDS = 10.0
#: Waiting tasks whose queue position a stream keeps up to date (the first in line).
POSITIONS = 50
#: Finished tasks a stream remembers, so that a final event is sent once.
FINISHED_KEPT = 1000


def _views(runtime: Runtime, found: Sequence[Task], base: str) -> list[tuple[Task, TaskView]]:
    """The tasks as views, oldest first; the first ``POSITIONS`` waiting ones with their place."""
    ordered = sorted(found, key=lambda t: (t.submit_time, t.id))
    placed = {t.id for t in [t for t in ordered if t.status in QUEUED][:POSITIONS]}
    return [(t, task_view(t, base, runtime.service.queue_position(t) if t.id in placed else None, runtime.storage.url)) for t in ordered]


@router.get("/v1/tasks/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}})
async def task_events(request: Request, principal: PrincipalDep, runtime: RuntimeDep) -> StreamingResponse:
    """Server-Sent Events: a ``task`` event (the task object) for each of the caller's tasks still
    on its way, then one per change of any of its tasks. A ``: keep-alive`` comment every 15 s.
    The tasks it follows are watched: their previews are stored as they render."""
    base = base_url(request, runtime)
    feed = runtime.signals.feed
    # The stream ends at a refresh once its key is revoked (or its console session ended).
    allowed: Callable[[], bool] = request.scope.get(CONSOLE_ALIVE) or (lambda: runtime.keys.live(principal.key_id))
    release = feed.hold()  # 503 now, before streaming, when the process holds too many streams

    def live(also: Sequence[str]) -> list[tuple[Task, TaskView]]:
        """Every running task, the newest waiting ones, and ``also``."""
        found = {t.id: t for t in runtime.service.page(principal, TaskQuery(statuses=RUNNING), limit=MAX_PAGE).tasks}
        found |= {t.id: t for t in runtime.service.page(principal, TaskQuery(statuses=WAITING), limit=MAX_PAGE).tasks}
        found |= {t.id: t for t in runtime.service.get_many(principal, [i for i in also if i not in found])}
        return _views(runtime, list(found.values()), base)

    def changed(ids: Sequence[str]) -> list[tuple[Task, TaskView]]:
        return _views(runtime, runtime.service.get_many(principal, ids), base)

    def watch(task_ids: Sequence[str]) -> None:
        for task_id in task_ids:  # a hint: a task that ended meanwhile is simply not marked
            runtime.service.watch(principal, task_id)

    async def stream() -> AsyncIterator[bytes]:
        sent: dict[str, tuple[object, ...]] = {}  # the tasks on their way, as last sent
        finished: dict[str, tuple[object, ...]] = {}  # the last of the finished ones, as sent
        try:
            with feed.subscribe_tenant(principal.tenant_id) as changes:
                found = await run_in_threadpool(live, ())  # read after subscribing
                quiet_since = refreshed = time.monotonic()
                while True:
                    unwatched = []
                    for task, view in found:
                        state = (task.status.value, task.progress, task.preview_key, view.queue_position)
                        if sent.get(task.id) == state or finished.get(task.id) == state:
                            continue
                        if settled(task) and task.status is not TaskStatus.MODAL:  # final: its last event
                            sent.pop(task.id, None)
                            finished[task.id] = state
                            while len(finished) > FINISHED_KEPT:
                                del finished[next(iter(finished))]
                        else:
                            if task.id not in sent and not task.watched:
                                unwatched.append(task.id)
                            sent[task.id] = state
                        quiet_since = time.monotonic()
                        yield f"id: {task.id}-{task.status.value}-{task.progress}\nevent: task\ndata: {view.model_dump_json()}\n\n".encode()
                    if unwatched:
                        await run_in_threadpool(watch, unwatched)
                    if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                        quiet_since = time.monotonic()
                        yield b": keep-alive\n\n"
                    waiting = any(state[3] is not None for state in sent.values())
                    every = REFRESH_SECONDS if waiting else IDLE_REFRESH_SECONDS
                    until = min(quiet_since + KEEPALIVE_SECONDS, refreshed + every) - time.monotonic()
                    ids = await changes.wait(max(0.0, until))
                    named = [i for i in ids if i is not None]
                    if None in ids or time.monotonic() - refreshed >= every:
                        if not await run_in_threadpool(allowed):
                            return
                        found = await run_in_threadpool(live, [*sent, *named])
                        refreshed = time.monotonic()
                    else:  # the tasks a notification named; with none (another process, SQLite), the running ones
                        running = [i for i, state in sent.items() if state[0] in (TaskStatus.IN_PROGRESS.value, TaskStatus.MODAL.value)]
                        ask = named or ([] if ids else running)
                        found = await run_in_threadpool(changed, ask) if ask else []
        finally:
            release()

    # The place is given back when the stream ends, or when it is dropped without ever starting.
    events = stream()
    weakref.finalize(events, release)
    # X-Accel-Buffering: nginx would otherwise hold events back in its buffer.
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class ChosenTasks(RequestBody):
    ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1, max_length=MAX_CHOSEN, description=f"At most {MAX_CHOSEN}.")


class Deleted(BaseModel):
    task_id: str
    deleted: bool
    error: str | None = Field(description="Why it was kept: unknown, still on its way, or a kept follow-up was made from it.")


@router.put("/v1/tasks/{task_id}/star", status_code=204, response_class=Response, responses={404: {"description": "code 3: no such task"}})
async def star(task_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> Response:
    """Star the task (its tenant's mark, shown as ``starred``; ``GET /v1/tasks?starred=true``)."""
    await run_in_threadpool(runtime.service.star, principal, task_id, True)
    return Response(status_code=204)


@router.delete("/v1/tasks/{task_id}/star", status_code=204, response_class=Response, responses={404: {"description": "code 3: no such task"}})
async def unstar(task_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> Response:
    await run_in_threadpool(runtime.service.star, principal, task_id, False)
    return Response(status_code=204)


@router.post("/v1/tasks/archive", response_class=StreamingResponse, responses={200: {"content": {"application/zip": {}}}})
async def archive(body: ChosenTasks, principal: PrincipalDep, runtime: RuntimeDep) -> StreamingResponse:
    """A zip of the pictures of these tasks of the caller's (``<task id>-<n>.<ext>``); ids of
    others or unknown ones are left out."""
    def build() -> tuple[IO[bytes], int]:
        return zip_tasks(runtime.service.get_many(principal, body.ids), runtime.storage)

    zipped, count = await run_in_threadpool(build)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while chunk := await run_in_threadpool(zipped.read, 1 << 20):
                yield chunk
        finally:
            zipped.close()

    return StreamingResponse(chunks(), media_type="application/zip", headers={
        "Content-Disposition": 'attachment; filename="pixelmill.zip"', "X-Files": str(count)})


@router.post("/v1/tasks/delete", response_model=list[Deleted])
async def delete_tasks(body: ChosenTasks, principal: PrincipalDep, runtime: RuntimeDep) -> list[Deleted]:
    """Delete finished tasks of the caller's now, with the pictures only they used (renditions and
    records made after a task finished go with the retention sweep); each id says whether it went. A task still on its way is kept (cancel it first), and so is one a
    kept follow-up was made from (delete the follow-ups with it)."""
    outcome = await run_in_threadpool(runtime.retention.remove, principal.tenant_id, body.ids)
    return [Deleted(task_id=i, deleted=why is None, error=why) for i, why in outcome.items()]
