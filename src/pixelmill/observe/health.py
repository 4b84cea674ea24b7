"""The health report: the four figures seed 004 watches, over a window (default the last hour),
each with its threshold and a verdict, plus the tasks waiting longest and where recent tasks'
time went (the stage budget, medians). All from the database.

- SUCCESS rate of tasks that ended SUCCESS or FAILURE (cancels are the caller's choice) > 95 %
- average submit → SUCCESS time, cache hits excluded (they would flatter it) < 90 s
- tasks waiting in MODAL now: near 0 (a client is not calling /modal)
- share of submits refused as banned prompts (code 24) < 5 %

A figure with nothing to measure (no finished task in the window) is null and ``ok``.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Engine, func, select

from pixelmill.clock import Clock
from pixelmill.db.engine import read_tx
from pixelmill.db.schema import QUEUED_ROWS, refusals, tasks
from pixelmill.observe.metrics import cache_hit
from pixelmill.observe.stages import STAGES
from pixelmill.tasks.status import TaskStatus


@dataclass(frozen=True)
class Thresholds:
    success_rate_min: float = 0.95
    avg_completion_seconds_max: float = 90.0
    modal_max: int = 5
    banned_share_max: float = 0.05
    #: A waiting task older than this is listed as stuck.
    stuck_after_seconds: float = 300.0


@dataclass(frozen=True)
class Figure:
    name: str
    value: float | None
    threshold: float
    #: "min": the value must stay above the threshold; "max": at or below it.
    rule: Literal["min", "max"]

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "ok"
        good = self.value > self.threshold if self.rule == "min" else self.value <= self.threshold
        return "ok" if good else "warn"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "threshold": self.threshold, "rule": self.rule, "verdict": self.verdict}


#: How many recent successes the stage budget's medians are taken over.
STAGE_SAMPLE = 1000


def _medians(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The median of each stage over ``rows``, in the order a task meets the stages."""
    found = {name for row in rows for name in row}
    return {name: round(statistics.median(row[name] for row in rows if name in row), 2) for name in STAGES if name in found}


class HealthReport:
    def __init__(self, engine: Engine, clock: Clock, thresholds: Thresholds) -> None:
        self._engine = engine
        self._clock = clock
        self.thresholds = thresholds

    def build(self, window_seconds: float = 3600) -> dict[str, Any]:
        now = self._clock.now_ms()
        since = now - int(window_seconds * 1000)
        th = self.thresholds
        t = tasks.c
        with read_tx(self._engine) as conn:
            ended: dict[str, int] = dict(conn.execute(
                select(t.status, func.count())
                .where(t.finish_time >= since, t.status.in_([TaskStatus.SUCCESS.value, TaskStatus.FAILURE.value]))
                .group_by(t.status)
            ).all())
            avg_ms = conn.execute(
                select(func.avg(t.finish_time - t.submit_time))
                .where(t.finish_time >= since, t.status == TaskStatus.SUCCESS.value, ~cache_hit())
            ).scalar()
            modal = conn.execute(select(func.count()).where(t.status == TaskStatus.MODAL.value)).scalar_one()
            submitted = conn.execute(select(func.count()).where(t.submit_time >= since)).scalar_one()
            banned = conn.execute(
                select(func.count()).select_from(refusals).where(refusals.c.code == 24, refusals.c.created_at >= since)
            ).scalar_one()
            stuck_rows = conn.execute(
                select(t.id, t.status, t.lane, t.submit_time)
                .where(QUEUED_ROWS, t.submit_time < now - int(th.stuck_after_seconds * 1000))
                .order_by(t.submit_time)
                .limit(20)
            ).all()
            timed = conn.execute(
                select(t.stages).where(t.finish_time >= since, t.status == TaskStatus.SUCCESS.value, t.stages.is_not(None))
                .order_by(t.finish_time.desc()).limit(STAGE_SAMPLE)
            ).scalars().all()
            stuck_total = conn.execute(
                select(func.count()).where(QUEUED_ROWS, t.submit_time < now - int(th.stuck_after_seconds * 1000))
            ).scalar_one()
        finished = sum(ended.values())
        figures = [
            Figure("success_rate", round(ended.get("SUCCESS", 0) / finished, 4) if finished else None, th.success_rate_min, "min"),
            Figure("avg_completion_seconds", round(float(avg_ms) / 1000, 3) if avg_ms is not None else None, th.avg_completion_seconds_max, "max"),
            Figure("tasks_in_modal", float(modal), th.modal_max, "max"),
            Figure("banned_prompt_share", round(banned / (banned + submitted), 4) if banned + submitted else None, th.banned_share_max, "max"),
        ]
        return {
            "window_seconds": window_seconds,
            "generated_at": now,
            "verdict": "warn" if any(f.verdict == "warn" for f in figures) else "ok",
            "figures": [f.to_json() for f in figures],
            "counts": {"finished": finished, "succeeded": ended.get("SUCCESS", 0), "submitted": submitted, "banned": banned},
            # The stage budget (observe/stages.py): where the time of recent successes went.
            "stages": {"tasks": len(timed), "p50_ms": _medians(timed)},
            "stuck": {
                "after_seconds": th.stuck_after_seconds,
                "total": stuck_total,
                "oldest": [
                    {"task_id": r.id, "status": r.status, "lane": r.lane, "age_seconds": round((now - r.submit_time) / 1000, 1)}
                    for r in stuck_rows
                ],
            },
        }
