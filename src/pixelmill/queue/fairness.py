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

from sqlalchemy import Connection, and_, func, or_, select

from pixelmill.db.schema import tasks
from pixelmill.tasks.actions import Lane
from pixelmill.tasks.record import Task
from pixelmill.tasks.status import QUEUED

QUEUED_VALUES = sorted(s.value for s in QUEUED)

#: Which place of a lane a claim fills next (partial index ix_tasks_queued_fair). A tenant holds
#: each place once, so (place, tenant) orders places whichever task holds them after swaps.
HEAD_ORDER = (tasks.c.fair_seq, tasks.c.tenant_id)
#: Which of the place's tenant's tasks runs in it (partial index ix_tasks_queued_tenant): by
#: submit time, not by place, because places move when tasks swap them. Tasks of one submit have
#: rising ids; two submits of one tenant in the same millisecond were concurrent, in no order.
TENANT_ORDER = (tasks.c.priority.desc(), tasks.c.submit_time, tasks.c.id)


def fair_start(conn: Connection, tenant_id: str, lane: Lane) -> int:
    """The ``fair_seq`` of ``tenant_id``'s next task in ``lane``."""
    in_lane = tasks.c.lane == lane.value
    virtual = conn.execute(select(func.min(tasks.c.fair_seq)).where(in_lane, tasks.c.status.in_(QUEUED_VALUES))).scalar()
    if virtual is None:  # nothing waiting: the lane's clock stands where the last task was placed
        virtual = conn.execute(select(func.max(tasks.c.fair_seq)).where(in_lane)).scalar() or 0
    own = conn.execute(select(func.max(tasks.c.fair_seq)).where(tasks.c.tenant_id == tenant_id, in_lane)).scalar()
    return max(virtual, own + 1 if own is not None else 0)


def queue_position(conn: Connection, task: Task) -> int:
    """1 = the next task its lane's workers take. The task runs in its tenant's k-th place, k its
    rank among the tenant's waiting tasks by ``TENANT_ORDER``; before it run the tenant's k-1
    better tasks and every other tenant's task placed before that k-th place."""
    queued = and_(tasks.c.lane == task.lane.value, tasks.c.status.in_(QUEUED_VALUES))
    own = and_(queued, tasks.c.tenant_id == task.tenant_id)
    same = tasks.c.priority == task.priority
    better = conn.execute(select(func.count()).where(own, or_(
        tasks.c.priority > task.priority,
        and_(same, tasks.c.submit_time < task.submit_time),
        and_(same, tasks.c.submit_time == task.submit_time, tasks.c.id < task.id),
    ))).scalar_one()
    place = conn.execute(select(tasks.c.fair_seq).where(own).order_by(*HEAD_ORDER).offset(better).limit(1)).scalar()
    if place is None:  # the task left the queue meanwhile
        return int(better) + 1
    others = conn.execute(select(func.count()).where(queued, tasks.c.tenant_id != task.tenant_id, or_(
        tasks.c.fair_seq < place, and_(tasks.c.fair_seq == place, tasks.c.tenant_id < task.tenant_id),
    ))).scalar_one()
    return int(better) + int(others) + 1
