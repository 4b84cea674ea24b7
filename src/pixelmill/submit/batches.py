"""Batch jobs: many imagine tasks accepted together into the batch lane, tracked as one.

A batch is accepted all or none, in one transaction with its tasks (so a crash can never leave
half a batch), and counts as one submission against the key's rate cap: the batch lane's worker
slots and fair order are what pace it. Its status is counted from its tasks, never stored twice.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from pixelmill.auth.keys import Principal
from pixelmill.clock import Clock
from pixelmill.db.engine import read_tx, write_tx
from pixelmill.db.schema import batches
from pixelmill.db.schema import tasks as task_rows  # "tasks" names the TaskService here
from pixelmill.exceptions import BatchNotFound, ValidationError
from pixelmill.prompts.slots import render_template
from pixelmill.queue.store import TaskStore
from pixelmill.settings import Settings
from pixelmill.submit.service import TaskService
from pixelmill.tasks.record import NewTask, Task
from pixelmill.tasks.requests import BatchRequest, ImagineRequest, validated
from pixelmill.tasks.status import TERMINAL, TaskStatus
from pixelmill.tasks.view import UrlFor, file_url, task_view

#: Variable values are substituted as text; these would turn a value into prompt syntax.


@dataclass(frozen=True)
class BatchStatus:
    batch_id: str
    status: str  # running | completed | cancelled
    total: int
    counts: dict[str, int]
    created_at: int
    cancelled_at: int | None
    metadata: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        done = sum(n for s, n in self.counts.items() if TaskStatus(s) in TERMINAL)
        return {
            "batch_id": self.batch_id, "status": self.status, "total": self.total, "done": done,
            "counts": {s.value: self.counts.get(s.value, 0) for s in TaskStatus if s is not TaskStatus.MODAL},
            "created_at": self.created_at, "cancelled_at": self.cancelled_at, "metadata": self.metadata,
        }


class BatchService:
    def __init__(
        self, tasks: TaskService, store: TaskStore, engine: Engine, clock: Clock, settings: Settings, url_for: UrlFor = file_url
    ) -> None:
        self._url_for = url_for
        self._tasks = tasks
        self._store = store
        self._engine = engine
        self._clock = clock
        self._settings = settings

    def create(
        self, principal: Principal, req: BatchRequest, own_bases: Sequence[str], *, idempotency_key: str | None = None
    ) -> str:
        tasks = self._tasks.admission.guarded_submit(
            principal, "batch", req, idempotency_key, lambda claim: self._create(principal, req, own_bases, claim)
        )
        return str(tasks[0].batch_id)

    def _requests(self, req: BatchRequest) -> list[tuple[str, ImagineRequest, dict[str, Any] | None]]:
        """(where, request, variables) of each task-to-be; ``where`` names it in errors."""
        if req.lane == "interactive":
            raise ValidationError("lane", "a batch always runs in the batch lane")
        if (req.requests is None) == (req.prompt_template is None):
            raise ValidationError("requests", "give requests, or prompt_template with variables (one of the two)")
        if req.requests is not None:
            if req.variables is not None or req.defaults is not None:
                raise ValidationError("variables", "variables and defaults go with prompt_template, not requests")
            return [(f"requests[{i}]", r, None) for i, r in enumerate(req.requests)]
        if req.variables is None:
            raise ValidationError("variables", "prompt_template needs variables: one set of slot values per task")
        base = req.defaults.model_dump(exclude_none=True) if req.defaults else {}
        out: list[tuple[str, ImagineRequest, dict[str, Any] | None]] = []
        for i, values in enumerate(req.variables):
            where = f"variables[{i}]"
            prompt = render_template(req.prompt_template or "", values, where)
            try:
                out.append((where, validated(ImagineRequest, {**base, "prompt": prompt}), values))
            except ValidationError as exc:
                raise exc.within(where) from None
        return out

    def _create(self, principal: Principal, req: BatchRequest, own_bases: Sequence[str], claim: Any) -> list[Task]:
        batch_id = "batch_" + secrets.token_hex(10)
        plan: list[NewTask | Task] = []
        for index, (where, one, values) in enumerate(self._requests(req)):
            # The batch's own delivery fields apply to every task unless the request sets its own.
            one = one.model_copy(update={
                "priority": one.priority if one.priority is not None else req.priority,
                "webhook_url": one.webhook_url or req.webhook_url,
                "webhook_events": one.webhook_events or req.webhook_events,
                "engine": one.engine or req.engine,
            })
            try:
                planned = self._tasks.plan_imagine(principal, one, own_bases, allow_cache=bool(one.cache), batch=(batch_id, index))
            except ValidationError as exc:
                raise exc.within(where) from None
            for new in planned:
                if isinstance(new, NewTask) and values is not None:
                    new = replace(new, params={**new.params, "variables": values})
                plan.append(new)
            if len(plan) > self._settings.batch_max_tasks:
                raise ValidationError("requests", f"a batch holds at most {self._settings.batch_max_tasks:,} tasks (PIXELMILL_BATCH_MAX_TASKS)")
        now = self._clock.now_ms()

        def insert_batch(conn: Connection) -> None:
            conn.execute(insert(batches).values(
                id=batch_id, tenant_id=principal.tenant_id, api_key_id=principal.key_id, total=len(plan),
                created_at=now, cancelled_at=None, metadata=req.metadata or {},
            ))

        return self._tasks.admission.accept(plan, principal, claim, submissions=1, before_insert=insert_batch)

    def _row(self, principal: Principal, batch_id: str) -> Any:
        with read_tx(self._engine) as conn:
            row = conn.execute(select(batches).where(batches.c.id == batch_id, batches.c.tenant_id == principal.tenant_id)).first()
        if row is None:
            raise BatchNotFound(batch_id)
        return row

    def status(self, principal: Principal, batch_id: str) -> BatchStatus:
        row = self._row(principal, batch_id)
        return _status(row, self._store.batch_counts(batch_id))

    def recent(self, principal: Principal, limit: int) -> list[BatchStatus]:
        """The tenant's latest ``limit`` batches, newest first, with their counts (two queries)."""
        b, t = batches.c, task_rows.c
        with read_tx(self._engine) as conn:
            rows = conn.execute(
                select(batches).where(b.tenant_id == principal.tenant_id).order_by(b.created_at.desc(), b.id.desc()).limit(limit)
            ).all()
            counts: dict[str, dict[str, int]] = {r.id: {} for r in rows}
            if rows:
                for batch_id, status, n in conn.execute(
                    select(t.batch_id, t.status, func.count()).where(t.batch_id.in_(list(counts))).group_by(t.batch_id, t.status)
                ):
                    counts[batch_id][status] = int(n)
        return [_status(r, counts[r.id]) for r in rows]

    def cancel(self, principal: Principal, batch_id: str) -> BatchStatus:
        """Cancel every unfinished task (refunded); finished ones keep their results."""
        self._row(principal, batch_id)
        with write_tx(self._engine) as conn:
            conn.execute(
                update(batches).where(batches.c.id == batch_id, batches.c.cancelled_at.is_(None)).values(cancelled_at=self._clock.now_ms())
            )
        self._store.cancel_batch(batch_id, principal.tenant_id)
        return self.status(principal, batch_id)

    def manifest(self, principal: Principal, batch_id: str, base: str) -> list[dict[str, Any]]:
        """One record per task, in batch order: its outputs and the metadata to trace them."""
        self._row(principal, batch_id)
        rows = []
        for task in self._store.batch_tasks(batch_id, principal.tenant_id):
            view = task_view(task, base, url_for=self._url_for)
            rows.append({
                "batch_index": task.batch_index, "task_id": task.id, "status": view.status,
                "prompt": view.prompt, "final_prompt": view.final_prompt, "seed": view.seed,
                "variables": task.params.get("variables"), "grid_image_url": view.grid_image_url,
                "image_urls": view.image_urls, "width": task.params.get("width"), "height": task.params.get("height"),
                "engine": task.engine, "quota": view.quota, "fail_reason": view.fail_reason,
                "submit_time": view.submit_time, "finish_time": view.finish_time,
            })
        return rows


def _status(row: Any, counts: dict[str, int]) -> BatchStatus:
    unfinished = sum(n for s, n in counts.items() if TaskStatus(s) not in TERMINAL)
    state = "cancelled" if row.cancelled_at else ("running" if unfinished else "completed")
    return BatchStatus(row.id, state, row.total, counts, row.created_at, row.cancelled_at, row.metadata or {})


MANIFEST_CSV_COLUMNS = (
    "batch_index", "task_id", "status", "prompt", "final_prompt", "seed", "variables", "grid_image_url",
    "image_urls", "width", "height", "engine", "quota", "fail_reason", "submit_time", "finish_time",
)


def manifest_csv(rows: list[dict[str, Any]]) -> str:
    """The manifest as CSV: image URLs separated by spaces, variables as JSON."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=MANIFEST_CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({
            **row,
            "image_urls": " ".join(row["image_urls"]),
            "variables": json.dumps(row["variables"]) if row["variables"] is not None else "",
        })
    return out.getvalue()
