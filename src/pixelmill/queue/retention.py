"""Retention: finished tasks and their files are kept for their tenant's retention (seed 004 keeps
tasks 3 days; ``PIXELMILL_TASK_RETENTION_SECONDS``, or per tenant), then removed.

- When a task ends, the files its result points at (grid, images, renditions, clips, provenance,
  its last preview) are recorded in ``task_files``, in the same transaction (a TaskStore observer).
- The sweep removes expired tasks in batches, leaving a tombstone (``expired_tasks``) so that a
  poll of one answers "expired" instead of "unknown". A task is kept while a kept task names it as
  parent, so a follow-up never loses the chain under it.
- Retention owns every file, not only results: every write is registered (``stored_files``,
  storage/tracked.py). A file is deleted when nobody points at it (no kept task's result or
  current preview, no evaluation sheet) and it was last written long enough ago: an hour for the
  files of tasks that just expired (content-addressed files are shared: a file outlives every
  task but the last), the default retention for files nothing ever pointed at (uploads and
  fetched inputs, earlier previews, outputs of lost attempts).
- A delete holds the lock on the file's row while it deletes the bytes, and checks again under
  it; a write of the same content waits on that row (storage/tracked.py), so no task is left
  pointing at a file deleted under it (but see there for cache hits).

Storage deletes happen after the task rows are gone: a crash in between leaves files nobody
points at, which a later sweep deletes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, delete, exists, func, insert, literal, or_, select
from sqlalchemy.orm import aliased

from pixelmill.clock import Clock
from pixelmill.db.engine import dialect_insert, read_tx, write_tx
from pixelmill.db.schema import (
    evaluations,
    expired_tasks,
    finishing,
    reviews,
    stored_files,
    task_files,
    tasks,
    tenants,
    upstream_tasks,
    webhook_events,
)
from pixelmill.storage.base import Storage
from pixelmill.tasks.record import Task
from pixelmill.tasks.status import TERMINAL, TaskEvent, TaskStatus

log = structlog.get_logger("pixelmill.retention")
#: Tasks removed per transaction: a sweep never holds the database for long.
BATCH = 500
#: A file written this recently is kept even when nothing points at it yet: its writer is about
#: to record the task that will (a result being completed, an input being submitted).
GRACE_MS = 3_600_000


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
        insert = dialect_insert(engine)
        #: Built once: it runs in every completing transaction.
        self._record_files = insert(task_files).on_conflict_do_nothing()

    def on_change(self, conn: Connection, task: Task, event: TaskEvent) -> None:
        """TaskStore observer: record the files of a task that just ended."""
        if event not in (TaskEvent.COMPLETED, TaskEvent.REVIEWED, TaskEvent.FILES):  # approvals and finishing add files
            return
        keys = sorted(result_files(task))
        if keys:
            conn.execute(self._record_files, [{"task_id": task.id, "key": k} for k in keys])

    def set_tenant(self, tenant_id: str, seconds: int | None) -> bool:
        """Set (or with None, reset to the default) a tenant's retention; False if no such tenant."""
        with write_tx(self._engine) as conn:
            done = conn.execute(tenants.update().where(tenants.c.id == tenant_id).values(retention_seconds=seconds))
        return done.rowcount == 1

    def sweep(self) -> tuple[int, int]:
        """Remove expired tasks (in batches) and every file nobody points at any more. Returns
        (tasks, files)."""
        removed_tasks = removed_files = 0
        while True:
            n, keys = self._sweep_batch()
            removed_tasks += n
            cutoff = self._clock.now_ms() - GRACE_MS
            removed_files += sum(self._delete_if_unused(key, cutoff) for key in sorted(keys))
            if n < BATCH:
                break
        removed_files += self._sweep_unowned()
        if removed_tasks or removed_files:
            log.info("retention sweep", tasks=removed_tasks, files=removed_files)
        return removed_tasks, removed_files

    def _sweep_unowned(self) -> int:
        """Files nobody ever pointed at, or not any more, older than the default retention."""
        cutoff = self._clock.now_ms() - self._default_ms
        deleted = 0
        while True:
            with read_tx(self._engine) as conn:
                keys = [row.key for row in conn.execute(
                    select(stored_files.c.key).where(stored_files.c.last_put_at < cutoff, ~_pointed_at(stored_files.c.key))
                    .order_by(stored_files.c.last_put_at).limit(BATCH)
                )]
            gone = sum(self._delete_if_unused(key, cutoff) for key in keys)
            deleted += gone
            if len(keys) < BATCH or not gone:  # a batch that deletes nothing would come back the same
                return deleted

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
            return len(ids), set(_drop(conn, ids, now))

    def remove(self, tenant_id: str, task_ids: Sequence[str]) -> dict[str, str | None]:
        """Delete these tasks of the tenant now (its owner asked), and the files that only they
        pointed at and that were written before they finished (their pictures). Files written
        since (renditions and records, or the same content written again by another task that may
        not have recorded it yet) are left to the sweep, which deletes them once nobody points at
        them. Per id: None when removed, else why not. A task still on its way is kept
        (cancel it first), and so is one with a follow-up that is kept: the chain under a
        follow-up never breaks. A task answers "expired" afterwards, as after retention."""
        ids = list(dict.fromkeys(task_ids))
        now = self._clock.now_ms()
        with write_tx(self._engine) as conn:
            found = {r.id: r for r in conn.execute(
                select(tasks.c.id, tasks.c.status, tasks.c.finish_time).where(tasks.c.id.in_(ids), tasks.c.tenant_id == tenant_id)
            )}
            why: dict[str, str | None] = {i: "no such task" for i in ids if i not in found}
            why |= {i: "still on its way: cancel it first" for i, r in found.items() if TaskStatus(r.status) not in TERMINAL}
            children: dict[str, set[str]] = {}
            for child, parent in conn.execute(select(tasks.c.id, tasks.c.parent_task_id).where(tasks.c.parent_task_id.in_(list(found)))):
                children.setdefault(parent, set()).add(child)
            removable = {i for i in found if i not in why}
            while True:  # a parent goes only with all of its follow-ups
                kept = {i for i in removable if not children.get(i, set()) <= removable}
                if not kept:
                    break
                removable -= kept
                why |= {i: "a kept task was made from it: delete its follow-ups too" for i in kept}
            keys = _drop(conn, sorted(removable), now) if removable else {}
        for key, owners in sorted(keys.items()):
            # Written again after the first of its tasks finished: maybe by someone who has yet to
            # record it (the same picture made again). Left to the sweep, which waits that out.
            self._delete_if_unused(key, min(found[i].finish_time or 0 for i in owners) + 1)
        return {i: why.get(i) for i in ids}

    def _delete_if_unused(self, key: str, cutoff: int) -> bool:
        """Delete ``key`` when nobody points at it and it was last written before ``cutoff``,
        holding its row meanwhile (a write of the same content waits). True when deleted."""
        with write_tx(self._engine) as conn:
            row = conn.execute(
                select(stored_files.c.key).where(stored_files.c.key == key).with_for_update()
            ).first()
            if row is not None:
                still = conn.execute(
                    select(literal(1)).where(stored_files.c.key == key, stored_files.c.last_put_at < cutoff, ~_pointed_at(literal(key)))
                ).first()
                if still is None:
                    return False
            elif conn.execute(select(literal(1)).where(_pointed_at(literal(key)))).first() is not None:
                return False  # a file written before files were registered, still in use
            try:
                self._storage.delete(key)
            except Exception as exc:  # noqa: BLE001 - one file the store will not delete must not stop the sweep
                log.warning("file not deleted; kept for the next sweep", key=key, error=f"{type(exc).__name__}: {exc}"[:300])
                return False
            conn.execute(delete(stored_files).where(stored_files.c.key == key))
        return True


def _drop(conn: Connection, ids: Sequence[str], now: int) -> dict[str, set[str]]:
    """Delete the tasks ``ids`` and what hangs on them, leaving tombstones; the files their results
    pointed at, each with the tasks that did (for the caller to delete once nobody else does)."""
    keys: dict[str, set[str]] = {}
    for row in conn.execute(select(task_files.c.key, task_files.c.task_id).where(task_files.c.task_id.in_(ids))):
        keys.setdefault(row.key, set()).add(row.task_id)
    tenant_of = dict(conn.execute(select(tasks.c.id, tasks.c.tenant_id).where(tasks.c.id.in_(ids))).all())
    conn.execute(delete(webhook_events).where(webhook_events.c.task_id.in_(ids)))
    conn.execute(delete(task_files).where(task_files.c.task_id.in_(ids)))
    conn.execute(delete(finishing).where(finishing.c.task_id.in_(ids)))
    conn.execute(delete(upstream_tasks).where(upstream_tasks.c.task_id.in_(ids)))
    # Held images of a removed task go with it; decided reviews keep their record (the audit
    # log names them) without the image, which a decision already cleared.
    conn.execute(delete(reviews).where(reviews.c.task_id.in_(ids), reviews.c.state == "pending"))
    conn.execute(delete(tasks).where(tasks.c.id.in_(ids)))
    conn.execute(insert(expired_tasks), [{"id": i, "tenant_id": tenant_of[i], "expired_at": now} for i in ids])
    return keys


def _pointed_at(key: Any) -> Any:
    """Somebody points at ``key``: a kept task's result, a task's current preview, an evaluation sheet."""
    return or_(
        exists().where(task_files.c.key == key),
        exists().where(tasks.c.preview_key == key),
        exists().where(evaluations.c.sheet_key == key),
    )
