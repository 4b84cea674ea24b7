"""Finishing: the files of a finished task that nobody waits for, made after SUCCESS.

SUCCESS means the files the caller asked for (the grid, the images, the clips) are screened and
stored. Each image's smaller renditions (web, thumb) and its provenance record as JSON (the same
record is embedded in the image itself) come after, made by the finisher of any worker process
(``work/finisher.py``), so they never sit on the latency path of a task:

- The transaction that gives a task images also records that it needs finishing (a store
  observer, so it holds for every way a task gets images: a worker's result, a cache hit of a
  task not finished yet, an approved review).
- A finisher claims due rows under a lock that runs out, makes the files, then adds them to the
  task's result and removes the row in one transaction (event ``files``: webhook subscribers may
  ask for it; retention records the new files from it).
- Nothing is lost on a crash: the row stays, its lock runs out and any finisher takes it again.
  The files are content-addressed and the record is rebuilt from the task, so making them twice
  gives the same keys. A failure is retried with backoff; after ``MAX_ATTEMPTS`` it is given up,
  logged and counted, and the task keeps its images without renditions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import structlog
from sqlalchemy import Connection, Engine, and_, bindparam, delete, or_, select, update

from pixelmill.clock import Clock
from pixelmill.db.engine import dialect_insert, read_tx, write_tx
from pixelmill.db.schema import finishing
from pixelmill.queue.store import TaskStore
from pixelmill.tasks.record import Task, TaskResult
from pixelmill.tasks.status import TaskEvent, TaskStatus

log = structlog.get_logger("pixelmill.finishing")

#: Tries before a task's renditions are given up (about 4 minutes of backoff in all).
MAX_ATTEMPTS = 8
#: The wait before try n+1 is 2^n seconds, at most this.
MAX_BACKOFF_SECONDS = 120


@dataclass(frozen=True)
class Claimed:
    task_id: str
    #: Tries so far, this one included.
    attempts: int


class Finishing:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        insert = dialect_insert(engine)
        owed = insert(finishing).values(task_id=bindparam("b_task"), due_at=bindparam("b_now"), attempts=0)
        #: Built once: it runs in every transaction that gives a task images.
        self._owe = owed.on_conflict_do_update(index_elements=[finishing.c.task_id], set_={"due_at": owed.excluded.due_at, "attempts": 0})

    def on_change(self, conn: Connection, task: Task, event: TaskEvent) -> None:
        """TaskStore observer: a task that just got images without their files owes them."""
        if event not in (TaskEvent.COMPLETED, TaskEvent.REVIEWED) or task.status is not TaskStatus.SUCCESS:
            return
        if task.result is None or not task.result.unfinished():
            return
        now = self._clock.now_ms()
        # Already owed (a review approved another image meanwhile): the new image gets its own
        # tries, at once; a finisher at work on the row looks again when it adds what it made.
        conn.execute(self._owe, {"b_task": task.id, "b_now": now})

    def claim(self, owner: str, limit: int, lock_seconds: float, *, due_for: float = 0.0) -> list[Claimed]:
        """Lock up to ``limit`` rows due for at least ``due_for`` seconds for ``owner``, counting
        a try on each. A row whose tries are used up is given up here too: a try that took its
        process down never reached ``failed``."""
        now = self._clock.now_ms()
        due_by = now - int(due_for * 1000)
        f = finishing.c
        free = or_(f.locked_until.is_(None), f.locked_until < now)
        with read_tx(self._engine) as conn:
            # Nearly always nothing is owed: a read, not two turns of the write lock the workers
            # queue on, each time a task finishes and each poll.
            if conn.execute(select(f.task_id).where(free, or_(f.due_at <= due_by, f.attempts >= MAX_ATTEMPTS)).limit(1)).first() is None:
                return []
        with write_tx(self._engine) as conn:
            lost = conn.execute(
                delete(finishing).where(f.attempts >= MAX_ATTEMPTS, free)
                .returning(f.task_id)
            ).scalars().all()
        for task_id in lost:
            log.error("renditions not made; given up", task_id=task_id, attempts=MAX_ATTEMPTS, error="each try ended its process")
        due = (
            select(f.task_id)
            .where(f.due_at <= due_by, free)
            .order_by(f.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with write_tx(self._engine) as conn:
            rows = conn.execute(
                update(finishing)
                .where(f.task_id.in_(due))
                .values(locked_by=owner, locked_until=now + int(lock_seconds * 1000), attempts=f.attempts + 1)
                .returning(f.task_id, f.attempts)
            ).all()
        return [Claimed(row.task_id, row.attempts) for row in rows]

    def add(self, store: TaskStore, claimed: Claimed, owner: str, made: Mapping[int, tuple[str, dict[str, str]]]) -> Task | None:
        """Put ``made`` (by image index: the image's key, its files) into the task's result and
        settle the row, in one transaction. An entry whose image changed meanwhile (a review
        rejected it) is dropped. The row stays due when an image is still owed (a review
        approved one while these were being made). None when the task is no longer SUCCESS."""

        def revise(result: TaskResult) -> TaskResult:
            renditions = list(result.renditions) + [{}] * (len(result.image_keys) - len(result.renditions))
            for index, (key, files) in made.items():
                if 0 < index <= len(result.image_keys) and result.image_keys[index - 1] == key and not renditions[index - 1]:
                    renditions[index - 1] = files
            return replace(result, renditions=tuple(renditions))

        def settle(conn: Connection, task: Task) -> None:
            assert task.result is not None
            mine = and_(finishing.c.task_id == task.id, finishing.c.locked_by == owner)
            if task.result.unfinished():
                conn.execute(update(finishing).where(mine).values(due_at=self._clock.now_ms(), locked_until=None, attempts=0))
            else:
                conn.execute(delete(finishing).where(mine))

        task = store.revise_result(claimed.task_id, revise, within=settle, event=TaskEvent.FILES)
        if task is None:
            self.drop(claimed.task_id)
        return task

    def failed(self, claimed: Claimed, owner: str, error: str) -> bool:
        """Schedule the next try; False (and the row removed) once the tries are used up. The
        row's own count decides: an approval meanwhile gave it new tries."""
        f = finishing.c
        mine = and_(f.task_id == claimed.task_id, f.locked_by == owner)
        with write_tx(self._engine) as conn:
            if conn.execute(delete(finishing).where(mine, f.attempts >= MAX_ATTEMPTS)).rowcount:
                return False
            wait_ms = 1000 * min(2**claimed.attempts, MAX_BACKOFF_SECONDS)
            conn.execute(
                update(finishing).where(mine).values(due_at=self._clock.now_ms() + wait_ms, locked_until=None, error=error[:2000])
            )
        return True

    def drop(self, task_id: str) -> None:
        """Owe nothing for ``task_id`` (it ended otherwise, or retention removed it)."""
        with write_tx(self._engine) as conn:
            conn.execute(delete(finishing).where(finishing.c.task_id == task_id))
