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

import time
import weakref
from collections.abc import AsyncIterator, Sequence
from enum import Enum
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from pixelmill.api.deps import PrincipalDep, RuntimeDep, base_url
from pixelmill.api.waiting import settled
from pixelmill.exceptions import ValidationError
from pixelmill.queue.listing import MAX_PAGE, TaskQuery
from pixelmill.runtime import Runtime
from pixelmill.tasks.actions import Action
from pixelmill.tasks.record import Task
from pixelmill.tasks.status import ACTIVE, QUEUED, TaskStatus
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
    since: Annotated[int | None, Query(ge=0, description="Submitted at or after, Unix epoch ms.")] = None,
    until: Annotated[int | None, Query(ge=0, description="Submitted before, Unix epoch ms.")] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=200, description="Words the prompt contains (case-insensitive).")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> TaskPage:
    """The caller's tasks, newest first."""
    query = TaskQuery(
        statuses=_words("status", status, TaskStatus), actions=_words("action", action, Action), engine=engine, template=template,
        batch_id=batch_id, since=since, until=until, text=q,
    )
    base = base_url(request, runtime)

    def read() -> TaskPage:
        page = runtime.service.page(principal, query, limit=limit, cursor=cursor)
        # A waiting task says where it stands, as it does when polled alone.
        views = [task_view(t, base, runtime.service.queue_position(t) if t.status in QUEUED else None, runtime.storage.url)
                 for t in page.tasks]
        return TaskPage(data=views, next_cursor=page.next_cursor)

    return await run_in_threadpool(read)


#: Statuses of tasks still on their way (what a stream opens with).
LIVE = tuple(ACTIVE | {TaskStatus.MODAL})
#: A comment this often holds proxies open on a quiet stream.
KEEPALIVE_SECONDS = 15.0
#: How often the stream reads the tenant's live tasks anew: queue positions move as other work
#: starts, and a task another process submitted (SQLite, no notifications) shows up.
REFRESH_SECONDS = 1.0


def _views(runtime: Runtime, found: Sequence[Task], base: str) -> list[tuple[Task, TaskView]]:
    return [(t, task_view(t, base, runtime.service.queue_position(t) if t.status in QUEUED else None, runtime.storage.url)) for t in found]


@router.get("/v1/tasks/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}})
async def task_events(request: Request, principal: PrincipalDep, runtime: RuntimeDep) -> StreamingResponse:
    """Server-Sent Events: a ``task`` event (the task object) for each of the caller's tasks still
    on its way, then one per change of any of its tasks. A ``: keep-alive`` comment every 15 s."""
    base = base_url(request, runtime)
    feed = runtime.signals.feed
    release = feed.hold()  # 503 now, before streaming, when the process holds too many streams

    def live(also: Sequence[str]) -> list[tuple[Task, TaskView]]:
        found = {t.id: t for t in runtime.service.page(principal, TaskQuery(statuses=LIVE), limit=MAX_PAGE).tasks}
        found |= {t.id: t for t in runtime.service.get_many(principal, [i for i in also if i not in found])}
        return _views(runtime, sorted(found.values(), key=lambda t: (t.submit_time, t.id)), base)

    def changed(ids: Sequence[str]) -> list[tuple[Task, TaskView]]:
        return _views(runtime, runtime.service.get_many(principal, ids), base)

    async def stream() -> AsyncIterator[bytes]:
        sent: dict[str, tuple[object, ...]] = {}  # the tasks on their way, as last sent
        try:
            with feed.subscribe_tenant(principal.tenant_id) as changes:
                found = await run_in_threadpool(live, ())  # read after subscribing
                quiet_since = refreshed = time.monotonic()
                while True:
                    for task, view in found:
                        state = (task.status.value, task.progress, task.preview_key, view.queue_position)
                        if sent.get(task.id) == state:
                            continue
                        sent[task.id] = state
                        if settled(task) and task.status is not TaskStatus.MODAL:
                            del sent[task.id]  # final: its last event
                        quiet_since = time.monotonic()
                        yield f"id: {task.id}-{task.status.value}-{task.progress}\nevent: task\ndata: {view.model_dump_json()}\n\n".encode()
                    if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                        quiet_since = time.monotonic()
                        yield b": keep-alive\n\n"
                    until = min(quiet_since + KEEPALIVE_SECONDS, refreshed + REFRESH_SECONDS) - time.monotonic()
                    ids = await changes.wait(max(0.0, until))
                    if None in ids or time.monotonic() - refreshed >= REFRESH_SECONDS:
                        found = await run_in_threadpool(live, list(sent))
                        refreshed = time.monotonic()
                    else:  # the tasks a notification named, or (no notification) those on their way
                        found = await run_in_threadpool(changed, [i for i in ids if i is not None] or list(sent))
        finally:
            release()

    # The place is given back when the stream ends, or when it is dropped without ever starting.
    events = stream()
    weakref.finalize(events, release)
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
