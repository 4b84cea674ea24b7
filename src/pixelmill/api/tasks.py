"""A tenant's tasks as a list: ``GET /v1/tasks``, newest first, filtered, a page at a time.

What the console's cards and gallery read, and any API user's history. Every filter narrows the
list; a word a filter does not know is a 400 naming the filter and the words it takes. Pages
are cut by ``next_cursor`` (give it back as ``cursor``), so a page costs what it holds however
long the history, and tasks submitted meanwhile do not shift the next page.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from pixelmill.api.deps import PrincipalDep, RuntimeDep, base_url
from pixelmill.exceptions import ValidationError
from pixelmill.queue.listing import MAX_PAGE, TaskQuery
from pixelmill.tasks.actions import Action
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
