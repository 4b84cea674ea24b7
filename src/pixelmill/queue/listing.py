"""A tenant's tasks, newest first, filtered and paged (the console's cards and gallery, and any API
user's history).

Pages are cut by a cursor (the last task's submit time and id), not an offset: a page costs what it
holds whatever the history behind it (``ix_tasks_tenant``), and tasks submitted meanwhile do not
shift the next page.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Engine, and_, func, or_, select

from pixelmill.db.engine import read_tx
from pixelmill.db.schema import tasks
from pixelmill.exceptions import ValidationError
from pixelmill.tasks.actions import Action
from pixelmill.tasks.record import Task
from pixelmill.tasks.status import TaskStatus

#: Tasks one page holds at most.
MAX_PAGE = 200


@dataclass(frozen=True)
class TaskQuery:
    """What a list asks for; every field narrows it (None or empty: no narrowing)."""

    statuses: Sequence[TaskStatus] = ()
    actions: Sequence[Action] = ()
    engine: str | None = None
    template: str | None = None
    batch_id: str | None = None
    #: Tasks made from this one (its buttons, or its modal).
    parent: str | None = None
    #: Only starred tasks.
    starred: bool = False
    #: Width:height of the picture asked for (its width and height params), e.g. (16, 9).
    aspect: tuple[int, int] | None = None
    #: Submit time, Unix epoch ms: from (inclusive), until (exclusive).
    since: int | None = None
    until: int | None = None
    #: Words the prompt (as given, or final) contains, each of them, in any case.
    text: str | None = None


@dataclass(frozen=True)
class Page:
    tasks: list[Task]
    #: Where the next page starts (None: this was the last).
    next_cursor: str | None


def encode_cursor(task: Task) -> str:
    return base64.urlsafe_b64encode(f"{task.submit_time}:{task.id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        submit_time, _, task_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition(":")
        if not task_id:
            raise ValueError(cursor)
        return int(submit_time), task_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("cursor", "not a cursor this server gave (use next_cursor from the last page)") from None


def page(engine: Engine, tenant_id: str, query: TaskQuery, *, limit: int, cursor: str | None = None) -> Page:
    """Up to ``limit`` of the tenant's tasks that match ``query``, newest first, after ``cursor``."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError("limit", f"from 1 to {MAX_PAGE}")
    t = tasks.c
    where: list[ColumnElement[bool]] = [t.tenant_id == tenant_id]
    if cursor is not None:
        submit_time, task_id = decode_cursor(cursor)
        where.append(or_(t.submit_time < submit_time, and_(t.submit_time == submit_time, t.id < task_id)))
    if query.statuses:
        where.append(t.status.in_([s.value for s in query.statuses]))
    if query.actions:
        where.append(t.action.in_([a.value for a in query.actions]))
    if query.engine:
        where.append(t.engine == query.engine)
    if query.batch_id:
        where.append(t.batch_id == query.batch_id)
    if query.parent:
        where.append(t.parent_task_id == query.parent)
    if query.starred:
        # Written into the SQL as the index's own condition: ix_tasks_tenant_starred holds exactly these.
        where.append(t.starred_at.is_not(None))
    if query.aspect is not None:
        # Within 2 %: sizes are rounded to whole blocks of pixels (16:9 at 512 px is 680 × 384).
        w, h = query.aspect
        width, height = t.params["width"].as_integer(), t.params["height"].as_integer()
        where.append(func.abs(width * h - height * w) * 50 <= width * h)
    if query.template:
        where.append(t.params["template"]["name"].as_string() == query.template)
    if query.since is not None:
        where.append(t.submit_time >= query.since)
    if query.until is not None:
        where.append(t.submit_time < query.until)
    # Each word, in any case (SQLite folds ASCII letters only), in the prompt as given or final.
    for word in (query.text or "").lower().split():
        where.append(or_(func.lower(t.prompt).contains(word, autoescape=True), func.lower(t.final_prompt).contains(word, autoescape=True)))
    with read_tx(engine) as conn:
        rows = conn.execute(select(tasks).where(*where).order_by(t.submit_time.desc(), t.id.desc()).limit(limit + 1)).all()
    found = [Task.from_row(row) for row in rows[:limit]]
    return Page(found, encode_cursor(found[-1]) if len(rows) > limit else None)
