"""Retention on SQLite and PostgreSQL: expired tasks and the files only they used go, everything
else stays; a follow-up keeps its parent; an expired task answers "expired"."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from sqlalchemy import Engine

from pixelmill.auth.keys import KeyStore
from pixelmill.clock import ManualClock
from pixelmill.exceptions import NotFound
from pixelmill.queue.retention import Retention
from pixelmill.queue.store import TaskStore
from pixelmill.storage.base import content_key
from pixelmill.storage.memory import MemoryStorage
from pixelmill.storage.tracked import TrackedStorage
from pixelmill.tasks.record import TaskResult
from tests.queue.test_store import LANES, new_task

DAY = 86_400


def finish(store: TaskStore, storage: MemoryStorage, *, files: list[bytes], parent: str | None = None, tenant: str = "acme") -> str:
    keys = [storage.put(f, "png").key for f in files]
    task = store.insert(replace(new_task(), parent_task_id=parent, tenant_id=tenant), queue_limit=100)
    claimed = store.claim("w", LANES, lease_seconds=30)
    assert claimed is not None and claimed.id == task.id
    store.complete(task.id, "w", TaskResult(grid_key=keys[0], image_keys=tuple(keys[1:]), width=64, height=64))
    return task.id


def tracked(db: Engine, clock: ManualClock) -> tuple[MemoryStorage, TrackedStorage, Retention, TaskStore]:
    """Tenant acme, files kept 3 days, and storage that records every write (as a runtime has)."""
    KeyStore(db, clock).create(tenant_id="acme")
    files = MemoryStorage()
    storage = TrackedStorage(files, db, clock)
    retention = Retention(db, clock, storage, default_seconds=3 * DAY)
    return files, storage, retention, TaskStore(db, clock, on_change=[retention.on_change])


def test_the_sweep_removes_expired_tasks_and_only_their_unshared_files(db: Engine, clock: ManualClock) -> None:
    KeyStore(db, clock).create(tenant_id="acme")
    storage = MemoryStorage()
    retention = Retention(db, clock, storage, default_seconds=3 * DAY)
    store = TaskStore(db, clock, on_change=[retention.on_change])
    old = finish(store, storage, files=[b"old-grid", b"shared", b"old-only"])
    clock.advance(2 * DAY)
    young = finish(store, storage, files=[b"young-grid", b"shared"])  # shares a file with the old task
    clock.advance(DAY + 60)
    assert retention.sweep() == (1, 2)  # the old task; its grid and its own image, not the shared one
    assert store.get(old) is None and store.get(young) is not None
    assert store.expired(old, "acme") and not store.expired(old, "other") and not store.expired(young, "acme")
    assert [storage.exists(content_key(b, "png")) for b in (b"old-grid", b"old-only", b"shared", b"young-grid")] == [False, False, True, True]
    clock.advance(3 * DAY)
    assert retention.sweep() == (1, 2)


def test_a_kept_follow_up_keeps_its_parent(db: Engine, clock: ManualClock) -> None:
    KeyStore(db, clock).create(tenant_id="acme")
    storage = MemoryStorage()
    retention = Retention(db, clock, storage, default_seconds=DAY)
    store = TaskStore(db, clock, on_change=[retention.on_change])
    parent = finish(store, storage, files=[b"p-grid", b"p-1"])
    clock.advance(DAY - 60)
    child = finish(store, storage, files=[b"c-1"], parent=parent)
    clock.advance(120)
    assert retention.sweep() == (0, 0)  # the parent is due, but its follow-up is not
    clock.advance(DAY)
    assert retention.sweep()[0] == 1 and store.get(child) is None and store.get(parent) is not None
    assert retention.sweep()[0] == 1 and store.get(parent) is None


def test_a_tenant_keeps_tasks_as_long_as_it_is_told(db: Engine, clock: ManualClock) -> None:
    KeyStore(db, clock).create(tenant_id="acme")
    storage = MemoryStorage()
    retention = Retention(db, clock, storage, default_seconds=DAY)
    store = TaskStore(db, clock, on_change=[retention.on_change])
    assert retention.set_tenant("acme", 7 * DAY) and not retention.set_tenant("nobody", DAY)
    kept = finish(store, storage, files=[b"k"])
    clock.advance(2 * DAY)
    assert retention.sweep() == (0, 0) and store.get(kept) is not None
    clock.advance(6 * DAY)
    assert retention.sweep()[0] == 1


def test_an_expired_task_takes_its_held_review_images_with_it(db: Engine, clock: ManualClock) -> None:
    from PIL import Image

    from pixelmill.observe.audit import AuditLog
    from pixelmill.safety.detector import Finding
    from pixelmill.safety.review import ReviewQueue

    KeyStore(db, clock).create(tenant_id="acme")
    storage = MemoryStorage()
    retention = Retention(db, clock, storage, default_seconds=DAY)
    store = TaskStore(db, clock, on_change=[retention.on_change])
    reviews = ReviewQueue(db, clock, store, AuditLog(db, clock))
    task_id = finish(store, storage, files=[b"grid", b"one"])
    task = store.get(task_id)
    assert task is not None
    review_id = reviews.hold(task, 2, Image.new("RGB", (8, 8)), "m", [Finding("FACE_FEMALE", 0.5)])
    assert [r["id"] for r in reviews.list()] == [review_id]
    clock.advance(DAY + 60)
    assert retention.sweep()[0] == 1
    assert reviews.list() == []
    with pytest.raises(NotFound):
        reviews.get(review_id)


def test_files_nobody_points_at_go_once_old_whatever_wrote_them(db: Engine, clock: ManualClock) -> None:
    # Uploads, fetched inputs, earlier previews and outputs of lost attempts were never deleted.
    files, storage, retention, store = tracked(db, clock)
    upload, preview = storage.put(b"an upload", "png").key, storage.put(b"an earlier preview", "jpg").key
    kept = finish(store, storage, files=[b"a result"])  # finished now: kept for 3 days
    clock.advance(3 * DAY - 60)
    fresh = storage.put(b"an upload of today", "png").key
    assert retention.sweep() == (0, 0)  # nothing is old enough yet
    clock.advance(120)
    tasks_removed, files_removed = retention.sweep()
    assert (tasks_removed, files_removed) == (1, 3)  # the task, its result, the upload, the preview
    assert not any(files.exists(k) for k in (upload, preview)) and files.exists(fresh)
    with pytest.raises(NotFound):
        store_get_or_raise(store, kept)


def store_get_or_raise(store: TaskStore, task_id: str) -> None:
    if store.get(task_id) is None:
        raise NotFound("gone")


def test_a_write_racing_the_delete_of_the_same_content_leaves_the_file_there(db: Engine, clock: ManualClock) -> None:
    deleting, proceed = threading.Event(), threading.Event()

    class SlowDelete(MemoryStorage):
        def delete(self, key: str) -> None:
            deleting.set()
            assert proceed.wait(10)
            super().delete(key)

    files = SlowDelete()
    storage = TrackedStorage(files, db, clock)
    retention = Retention(db, clock, storage, default_seconds=DAY)
    key = storage.put(b"the same bytes", "png").key
    clock.advance(2 * DAY)  # old and pointed at by nobody: the sweep deletes it
    sweep = threading.Thread(target=retention.sweep)
    sweep.start()
    assert deleting.wait(10)
    # Meanwhile a task writes the same content: it must wait for the delete, then write again.
    writer = threading.Thread(target=lambda: storage.put(b"the same bytes", "png"))
    writer.start()
    proceed.set()
    sweep.join(10)
    writer.join(10)
    assert files.exists(key)  # it once found the file there, skipped the upload, and lost it to the delete


def test_an_owner_removes_finished_tasks_and_the_pictures_only_they_used(db: Engine, clock: ManualClock) -> None:
    files, storage, retention, store = tracked(db, clock)
    parent = finish(store, storage, files=[b"p-grid", b"shared", b"again"])
    child = finish(store, storage, files=[b"c-1"], parent=parent)
    other = finish(store, storage, files=[b"o-grid", b"shared"])
    running = store.insert(new_task(), queue_limit=100).id
    clock.advance(60)
    storage.put(b"again", "png")  # the same picture made again since: its writer may not have recorded it yet

    refused = retention.remove("acme", [parent, running, "unknown"])
    assert refused == {parent: "a kept task was made from it: delete its follow-ups too",
                       running: "still on its way: cancel it first", "unknown": "no such task"}
    assert retention.remove("other-tenant", [child]) == {child: "no such task"}
    assert retention.remove("acme", [parent, child]) == {parent: None, child: None}
    assert store.get(parent) is None and store.get(child) is None and store.expired(parent, "acme")
    assert [files.exists(content_key(b, "png")) for b in (b"p-grid", b"c-1", b"shared", b"again", b"o-grid")] == [False, False, True, True, True]
    assert store.get(other) is not None and store.get(running) is not None
