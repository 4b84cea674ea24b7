"""Fair order inside a lane: start-time fair queueing between tenants.

Every queued task carries ``fair_seq``, its place in the lane's fair order. A tenant's next task
starts at the later of (a) the lane's virtual time, the smallest ``fair_seq`` still waiting (or,
with nothing waiting, the largest ever given), and (b) one past the tenant's own last place.
So a tenant that queues 10,000 tasks at once takes places v, v+1, ... v+9,999, and a tenant who
arrives later starts near the head: the two alternate instead of the newcomer waiting behind the
whole batch. Claims order by ``priority DESC, fair_seq, scheduled_at, id`` (ix_tasks_claim),
which is one index walk, not a count per tenant on every claim.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from pixelmill.db.schema import tasks
from pixelmill.tasks.actions import Lane
from pixelmill.tasks.record import Task
from pixelmill.tasks.status import QUEUED

QUEUED_VALUES = sorted(s.value for s in QUEUED)

#: The order claims take queued tasks of one lane in; ``queue_position`` counts by the same rule.
CLAIM_ORDER = (tasks.c.priority.desc(), tasks.c.fair_seq, tasks.c.scheduled_at, tasks.c.id)


def fair_start(conn: Connection, tenant_id: str, lane: Lane) -> int:
    """The ``fair_seq`` of ``tenant_id``'s next task in ``lane``."""
    in_lane = tasks.c.lane == lane.value
    virtual = conn.execute(select(func.min(tasks.c.fair_seq)).where(in_lane, tasks.c.status.in_(QUEUED_VALUES))).scalar()
    if virtual is None:  # nothing waiting: the lane's clock stands where the last task was placed
        virtual = conn.execute(select(func.max(tasks.c.fair_seq)).where(in_lane)).scalar() or 0
    own = conn.execute(select(func.max(tasks.c.fair_seq)).where(tasks.c.tenant_id == tenant_id, in_lane)).scalar()
    return max(virtual, own + 1 if own is not None else 0)


def ahead_of(task: Task) -> Any:
    """Queued tasks of the task's lane that a claim takes before it (mirrors ``CLAIM_ORDER``)."""
    same = tasks.c.priority == task.priority
    return and_(
        tasks.c.lane == task.lane.value,
        tasks.c.status.in_(QUEUED_VALUES),
        or_(
            tasks.c.priority > task.priority,
            and_(same, tasks.c.fair_seq < task.fair_seq),
            and_(same, tasks.c.fair_seq == task.fair_seq, tasks.c.scheduled_at < task.scheduled_at),
            and_(same, tasks.c.fair_seq == task.fair_seq, tasks.c.scheduled_at == task.scheduled_at, tasks.c.id < task.id),
        ),
    )
