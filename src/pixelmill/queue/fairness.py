"""Fair order inside a lane: start-time fair queueing between tenants, priority within a tenant.

Every queued task carries ``fair_seq``, its place in the lane's fair order. A tenant's next task
starts at the later of (a) the lane's virtual time, the smallest ``fair_seq`` still waiting (or,
with nothing waiting, the largest ever given), and (b) one past the tenant's own last place.
So a tenant that queues 10,000 tasks at once takes places v, v+1, ... v+9,999, and a tenant who
arrives later starts near the head: the two alternate instead of the newcomer waiting behind the
whole batch.

``priority`` is the caller's, so it orders only the caller's own work: a claim takes the lane's
next place (``HEAD_ORDER``), and runs in it the best task of that place's tenant
(``TENANT_ORDER``: highest priority, then first submitted); the two tasks swap places, so the
tenant's places are used up in order whichever of its tasks runs. A tenant's 1,000 priority-10
tasks therefore jump its own queue, never another tenant's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, bindparam, func, select

from pixelmill.db.schema import QUEUED_ROWS, lane_state, tasks
from pixelmill.tasks.actions import Lane
from pixelmill.tasks.record import Task

#: Which place of a lane a claim fills next (partial index ix_tasks_queued_fair). A tenant holds
#: each place once, so (place, tenant) orders places whichever task holds them after swaps.
HEAD_ORDER = (tasks.c.fair_seq, tasks.c.tenant_id)
#: Which of the place's tenant's tasks runs in it (partial index ix_tasks_queued_tenant): by
#: submit time, not by place, because places move when tasks swap them. Tasks of one submit have
#: rising ids; two submits of one tenant in the same millisecond were concurrent, in no order.
TENANT_ORDER = (tasks.c.priority.desc(), tasks.c.submit_time, tasks.c.id)


def tenant_best(due: Sequence[ColumnElement[bool]], tenant_id: str | ColumnElement[str]) -> Select[Any]:
    """The task of ``tenant_id`` that runs in its place (``TENANT_ORDER``) among ``due`` tasks,
    in two index walks: its best due priority, then the first submitted at that priority. One
    ORDER BY of ``TENANT_ORDER`` (priority descending, time ascending: no index walks both ways
    at once) sorted every waiting task of the tenant in each claim, under the write lock."""
    own = (*due, tasks.c.tenant_id == tenant_id)
    top = select(tasks.c.priority).where(*own).order_by(tasks.c.priority.desc()).limit(1).scalar_subquery()
    return select(tasks.c.id, tasks.c.fair_seq).where(*own, tasks.c.priority == top).order_by(tasks.c.submit_time, tasks.c.id).limit(1)


def tenant_sorted(due: Sequence[ColumnElement[bool]], tenant_id: str | ColumnElement[str]) -> Select[Any]:
    """The same task by one ORDER BY of ``TENANT_ORDER``: for when ``tenant_best`` finds none
    because, on PostgreSQL, other claimers hold every due task at the best priority (their
    locks are skipped, but the subquery still saw that priority). Rare, so its sort is affordable."""
    return select(tasks.c.id, tasks.c.fair_seq).where(*due, tasks.c.tenant_id == tenant_id).order_by(*TENANT_ORDER).limit(1)


def fair_start(conn: Connection, tenant_id: str, lane: Lane) -> int:
    """The ``fair_seq`` of ``tenant_id``'s next task in ``lane``."""
    # One statement of three lookups, none of which walks finished tasks: this runs in every
    # accepting transaction, and a lane keeps weeks of history.
    row = conn.execute(_FAIR_START, {"lane": lane.value, "tenant_id": tenant_id}).one()
    virtual, last, own = (None if value is None else int(value) for value in row)
    if virtual is None:  # nothing waiting: the lane's clock stands where the last task was placed
        virtual = last or 0
    return max(virtual, own + 1 if own is not None else 0)


def _fair_start() -> Select[Any]:
    # Each an ORDER BY over an index, LIMIT 1, rather than min() / max(): a planner whose
    # statistics are stale (a table that just grew) may aggregate every matching row instead.
    in_lane = tasks.c.lane == bindparam("lane")
    virtual = select(tasks.c.fair_seq).where(in_lane, QUEUED_ROWS).order_by(tasks.c.fair_seq).limit(1).scalar_subquery()
    last = select(func.max(lane_state.c.last_seq)).where(lane_state.c.lane == bindparam("lane")).scalar_subquery()
    own = (
        select(tasks.c.fair_seq).where(tasks.c.tenant_id == bindparam("tenant_id"), in_lane)
        .order_by(tasks.c.fair_seq.desc()).limit(1).scalar_subquery()
    )
    return select(virtual, last, own)


#: Built once: a statement built per call spends more time on its cache key than SQLite on it.
_FAIR_START = _fair_start()


def queue_position(conn: Connection, task: Task) -> int:
    """1 = the next task its lane's workers take. The task runs in its tenant's k-th place, k its
    rank among the tenant's waiting tasks by ``TENANT_ORDER``; before it run the tenant's k-1
    better tasks and every other tenant's task placed before that k-th place."""
    # Every count is one index range over waiting tasks ending where the task stands, so a poll
    # costs what its position is, whatever the lane's length or history. (One count with an OR
    # of the three ranges had the planner walk every task the tenant ever had in the lane.)
    at = {"b_lane": task.lane.value, "b_tenant": task.tenant_id}
    better = sum(conn.execute(_BETTER, {**at, "b_priority": task.priority, "b_time": task.submit_time, "b_id": task.id}).one())
    place = conn.execute(_PLACE, {**at, "b_rank": better}).scalar()
    if place is None:  # the task left the queue meanwhile
        return int(better) + 1
    # Every task placed before the k-th place runs first: the tenant's own k-1 and the others'.
    before, level = conn.execute(_BEFORE, {**at, "b_place": place}).one()
    return int(before) + int(level) + 1


def _counts(*ranges: Sequence[ColumnElement[bool]]) -> Select[Any]:
    return select(*(select(func.count()).where(*where).scalar_subquery() for where in ranges))


def _position_statements() -> tuple[Select[Any], Select[Any], Select[Any]]:
    queued = (tasks.c.lane == bindparam("b_lane"), QUEUED_ROWS)
    own = (*queued, tasks.c.tenant_id == bindparam("b_tenant"))
    priority, submitted = bindparam("b_priority", type_=tasks.c.priority.type), bindparam("b_time", type_=tasks.c.submit_time.type)
    better = _counts(  # ix_tasks_queued_tenant, in TENANT_ORDER
        (*own, tasks.c.priority > priority),
        (*own, tasks.c.priority == priority, tasks.c.submit_time < submitted),
        (*own, tasks.c.priority == priority, tasks.c.submit_time == submitted, tasks.c.id < bindparam("b_id")),
    )
    # ix_tasks_queued_tenant_fair: the tenant's k-th place.
    place = select(tasks.c.fair_seq).where(*own).order_by(tasks.c.fair_seq).offset(bindparam("b_rank")).limit(1)
    at = bindparam("b_place", type_=tasks.c.fair_seq.type)
    before = _counts(  # ix_tasks_queued_fair, in HEAD_ORDER
        (*queued, tasks.c.fair_seq < at),
        (*queued, tasks.c.fair_seq == at, tasks.c.tenant_id < bindparam("b_tenant")),
    )
    return better, place, before


_BETTER, _PLACE, _BEFORE = _position_statements()
