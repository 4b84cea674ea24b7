"""What the operations page shows beside the health report: queue depth and running tasks per
lane, the workers holding tasks, the latest failures, and success rate, latency and cost over time.

Each figure is one indexed query (the partial indexes over waiting tasks, ``ix_tasks_lease`` for
running ones, ``ix_tasks_status_finish`` for what finished lately), so the page can ask every few
seconds on a database with weeks of history.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, case, func, select

from pixelmill.clock import Clock
from pixelmill.db.engine import read_tx
from pixelmill.db.schema import QUEUED_ROWS, tasks
from pixelmill.tasks.status import TaskStatus

#: Failures listed, newest first.
FAILURES = 20
#: Points a chart has, whatever the period.
POINTS = 24


class OperationsReport:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def now(self) -> dict[str, Any]:
        """Lanes, workers and the latest failures, as they are now."""
        t = tasks.c
        now = self._clock.now_ms()
        running = t.status == TaskStatus.IN_PROGRESS.value
        with read_tx(self._engine) as conn:
            waiting: dict[str, int] = {lane: n for lane, n in conn.execute(
                select(t.lane, func.count()).where(QUEUED_ROWS).group_by(t.lane))}
            busy: dict[str, int] = {lane: n for lane, n in conn.execute(select(t.lane, func.count()).where(running).group_by(t.lane))}
            modal = conn.execute(select(func.count()).where(t.status == TaskStatus.MODAL.value)).scalar_one()
            # A worker is live while its lease on a task runs; idle workers hold no row to see.
            workers = conn.execute(
                select(t.lease_owner, func.count()).where(running, t.lease_expires_at > now).group_by(t.lease_owner)
            ).all()
            failures = conn.execute(
                select(t.id, t.tenant_id, t.action, t.engine, t.fail_reason, t.finish_time)
                .where(t.status == TaskStatus.FAILURE.value).order_by(t.finish_time.desc().nulls_last()).limit(FAILURES)
            ).all()
        lanes = sorted(set(waiting) | set(busy) | {"interactive", "batch"})
        return {
            "at": now,
            "lanes": [{"lane": lane, "waiting": waiting.get(lane, 0), "running": busy.get(lane, 0)} for lane in lanes],
            "modal": modal,
            "workers": [{"worker": w, "running": n} for w, n in workers],
            "failures": [
                {"task_id": r.id, "tenant_id": r.tenant_id, "action": r.action, "engine": r.engine, "reason": r.fail_reason,
                 "finished_at": r.finish_time} for r in failures
            ],
        }

    def series(self, hours: float) -> list[dict[str, Any]]:
        """``POINTS`` buckets over the last ``hours``: tasks finished, the share that succeeded,
        their mean time from submit to finish, and the units they cost (failures are refunded)."""
        t = tasks.c
        now = self._clock.now_ms()
        width = max(1, int(hours * 3_600_000) // POINTS)
        since = now + 1 - width * POINTS  # the last bucket ends with this very millisecond
        ok = t.status == TaskStatus.SUCCESS.value
        bucket = ((t.finish_time - since) // width).label("bucket")  # integer division on every dialect
        with read_tx(self._engine) as conn:
            rows = conn.execute(
                select(bucket, func.count(), func.sum(case((ok, 1), else_=0)), func.sum(case((ok, t.quota), else_=0)),
                       func.avg(case((ok, t.finish_time - t.submit_time), else_=None)))
                .where(t.status.in_([TaskStatus.SUCCESS.value, TaskStatus.FAILURE.value]), t.finish_time >= since)
                .group_by(bucket)
            ).all()
        found = {int(r[0]): r for r in rows}
        out = []
        for i in range(POINTS):
            r = found.get(i)
            finished, succeeded = (int(r[1]), int(r[2] or 0)) if r else (0, 0)
            out.append({
                "from": since + i * width, "finished": finished,
                "success_rate": succeeded / finished if finished else None,
                "mean_ms": float(r[4]) if r and r[4] is not None else None,
                "cost": int(r[3] or 0) if r else 0,
            })
        return out
