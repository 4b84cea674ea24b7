"""Retention: finished tasks and their files are kept for their tenant's retention (seed 004 keeps
tasks 3 days; ``PIXELMILL_TASK_RETENTION_SECONDS``, or per tenant), then removed.

- When a task ends, the files its result points at (grid, images, renditions, clips, provenance,
  its last preview) are recorded in ``task_files``, in the same transaction (a TaskStore observer).
- The sweep removes expired tasks in batches, leaving a tombstone (``expired_tasks``) so that a
  poll of one answers "expired" instead of "unknown". A task is kept while a kept task names it as
  parent, so a follow-up never loses the chain under it.
- A file is deleted once no kept task points at it: content-addressed files are shared (cache
  hits, upscale picks), and a shared file outlives every task but the last.

Storage deletes happen after the rows are gone: a crash in between leaves files nobody points at,
never a task pointing at a missing file.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from sqlalchemy import Connection, Engine, delete, exists, func, insert, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased

from pixelmill.clock import Clock
from pixelmill.db.engine import read_tx, write_tx
from pixelmill.db.schema import expired_tasks, reviews, task_files, tasks, tenants, webhook_events
from pixelmill.storage.base import Storage
from pixelmill.tasks.record import Task
from pixelmill.tasks.status import TERMINAL, TaskEvent

log = structlog.get_logger("pixelmill.retention")
#: Tasks removed per transaction: a sweep never holds the database for long.
BATCH = 500


def result_files(task: Task) -> set[str]:
    keys: set[str] = set()
    if task.result is not None:
        r = task.result
        keys.update(k for k in (r.grid_key, *r.image_keys, *r.video_keys) if k)
        for files in r.renditions:
            keys.update(files.values())
    if task.preview_key:
        keys.add(task.preview_key)
    return keys


class Retention:
    def __init__(self, engine: Engine, clock: Clock, storage: Storage, default_seconds: float) -> None:
        self._engine = engine
        self._clock = clock
        self._storage = storage
        self._default_ms = int(default_seconds * 1000)
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    def on_change(self, conn: Connection, task: Task, event: TaskEvent) -> None:
        """TaskStore observer: record the files of a task that just ended."""
        if event not in (TaskEvent.COMPLETED, TaskEvent.REVIEWED):  # an approval adds files
            return
        keys = sorted(result_files(task))
        if keys:
            # One statement on the completing transaction's path, whatever the number of files.
            stmt = self._insert(task_files).values([{"task_id": task.id, "key": k} for k in keys])
            conn.execute(stmt.on_conflict_do_nothing())

    def set_tenant(self, tenant_id: str, seconds: int | None) -> bool:
        """Set (or with None, reset to the default) a tenant's retention; False if no such tenant."""
        with write_tx(self._engine) as conn:
            done = conn.execute(tenants.update().where(tenants.c.id == tenant_id).values(retention_seconds=seconds))
        return done.rowcount == 1

    def expired(self, task_id: str, tenant_id: str) -> bool:
        with read_tx(self._engine) as conn:
            row = conn.execute(
                select(expired_tasks.c.id).where(expired_tasks.c.id == task_id, expired_tasks.c.tenant_id == tenant_id)
            ).first()
        return row is not None

    def sweep(self) -> tuple[int, int]:
        """Remove expired tasks (in batches) and the files only they used. Returns (tasks, files)."""
        removed_tasks = removed_files = 0
        while True:
            n, keys = self._sweep_batch()
            removed_tasks += n
            removed_files += self._delete_unused(keys)
            if n < BATCH:
                break
        if removed_tasks:
            log.info("retention sweep", tasks=removed_tasks, files=removed_files)
        return removed_tasks, removed_files

    def _sweep_batch(self) -> tuple[int, set[str]]:
        now = self._clock.now_ms()
        child = aliased(tasks)
        keep_ms = func.coalesce(tenants.c.retention_seconds * 1000, self._default_ms)
        with write_tx(self._engine) as conn:
            ids = [row.id for row in conn.execute(
                select(tasks.c.id)
                .join(tenants, tenants.c.id == tasks.c.tenant_id)
                .where(
                    tasks.c.status.in_([s.value for s in TERMINAL]),
                    tasks.c.finish_time < now - keep_ms,
                    ~exists().where(child.c.parent_task_id == tasks.c.id),
                )
                .limit(BATCH)
            )]
            if not ids:
                return 0, set()
            keys = {row.key for row in conn.execute(select(task_files.c.key).where(task_files.c.task_id.in_(ids)))}
            tenant_of = dict(conn.execute(select(tasks.c.id, tasks.c.tenant_id).where(tasks.c.id.in_(ids))).all())
            conn.execute(delete(webhook_events).where(webhook_events.c.task_id.in_(ids)))
            conn.execute(delete(task_files).where(task_files.c.task_id.in_(ids)))
            # Held images of an expired task go with it; decided reviews keep their record (the
            # audit log names them) without the image, which a decision already cleared.
            conn.execute(delete(reviews).where(reviews.c.task_id.in_(ids), reviews.c.state == "pending"))
            conn.execute(delete(tasks).where(tasks.c.id.in_(ids)))
            conn.execute(insert(expired_tasks), [{"id": i, "tenant_id": tenant_of[i], "expired_at": now} for i in ids])
        return len(ids), keys

    def _delete_unused(self, keys: Iterable[str]) -> int:
        deleted = 0
        for key in sorted(keys):
            with read_tx(self._engine) as conn:
                still = conn.execute(select(literal(1)).where(task_files.c.key == key).limit(1)).first()
            if still is None:
                self._storage.delete(key)
                deleted += 1
        return deleted

