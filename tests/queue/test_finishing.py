"""Files nobody waits for are made after SUCCESS: a task succeeds with its images, then gains
their renditions and provenance records. Nothing is lost when a finisher dies or fails: the work
is recorded with the task's images and retried. Real SQLite, executor and procedural engine."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from pixelmill.auth.keys import Principal
from pixelmill.clock import ManualClock
from pixelmill.db.engine import write_tx
from pixelmill.db.schema import finishing, task_files
from pixelmill.queue.finishing import MAX_ATTEMPTS, Finishing
from pixelmill.runtime import Runtime, build_runtime
from pixelmill.settings import Settings
from pixelmill.tasks.actions import Action, Lane
from pixelmill.tasks.record import Task, TaskResult
from pixelmill.tasks.requests import ImagineRequest, UpscaleRequest
from pixelmill.tasks.status import TaskEvent, TaskStatus
from pixelmill.tasks.view import task_view
from pixelmill.work.finisher import BUSY_LAG_SECONDS, Finisher

LOCK_SECONDS = 30


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def runtime(tmp_path: Path, clock: ManualClock) -> Iterator[Runtime]:
    rt = build_runtime(Settings(data_dir=tmp_path, workers=0, screening="off"), clock=clock)
    yield rt
    rt.close()


def run_to_success(runtime: Runtime, task: Task) -> Task:
    """What a worker does with ``task``, without the pool's finisher."""
    claimed = runtime.tasks.claim("w", [Lane.INTERACTIVE], 60)
    assert claimed is not None and claimed.id == task.id
    outcome = runtime.executor.run(claimed, lambda fraction, preview=None: None)
    assert runtime.tasks.complete(task.id, "w", outcome.result)
    done = runtime.tasks.get(task.id)
    assert done is not None and done.status is TaskStatus.SUCCESS
    return done


def imagine(runtime: Runtime, acme: Principal, prompt: str = "a heron at dawn --seed 3") -> Task:
    [task] = runtime.service.imagine(acme, ImagineRequest(prompt=prompt))
    return run_to_success(runtime, task)


def finisher(runtime: Runtime, owner: str, clock: ManualClock | None = None) -> Finisher:
    owed = runtime.finishing if clock is None else Finishing(runtime.db, clock)
    return Finisher(owed, runtime.tasks, runtime.executor, owner=owner, lock_seconds=LOCK_SECONDS)


def owed(runtime: Runtime) -> list[Any]:
    with runtime.db.connect() as conn:
        return list(conn.execute(select(finishing)).all())


def test_a_task_succeeds_with_its_images_then_gains_their_renditions_and_records(runtime: Runtime, acme: Principal) -> None:
    task = imagine(runtime, acme)
    assert task.result is not None and len(task.result.image_keys) == 4 and task.result.grid_key
    assert task.result.renditions == () and task.result.unfinished() == (1, 2, 3, 4)
    assert [row.task_id for row in owed(runtime)] == [task.id]  # recorded with the images, in their transaction

    assert finisher(runtime, "f1").run_once() == 1
    done = runtime.tasks.get(task.id)
    assert done is not None and done.result is not None and done.result.unfinished() == () and owed(runtime) == []
    assert done.result.image_keys == task.result.image_keys  # what the caller already had is unchanged
    for index, files in enumerate(done.result.renditions, 1):
        assert set(files) == {"web", "thumb", "metadata"}
        record = json.loads(runtime.storage.get(files["metadata"]))
        assert record["task_id"] == task.id and record["seed"] == 3 + index - 1 and record["model"] == "procedural-v1"
        with Image.open(io.BytesIO(runtime.storage.get(files["thumb"]))) as thumb:
            assert thumb.format == "WEBP" and max(thumb.size) == 256
    with runtime.db.connect() as conn:  # retention knows the new files belong to the task
        kept = {row.key for row in conn.execute(select(task_files.c.key).where(task_files.c.task_id == task.id))}
    assert {key for files in done.result.renditions for key in files.values()} <= kept
    assert finisher(runtime, "f1").run_once() == 0


def test_a_pick_of_a_finished_grid_shares_its_files_and_of_an_unfinished_one_gets_its_own(runtime: Runtime, acme: Principal) -> None:
    grid = imagine(runtime, acme)
    early = run_to_success(runtime, runtime.operations.submit(acme, Action.UPSCALE, UpscaleRequest(task_id=grid.id, index=2)))
    assert early.result is not None and early.result.unfinished() == (1,)
    while finisher(runtime, "f").run_once():
        pass
    late = run_to_success(runtime, runtime.operations.submit(acme, Action.UPSCALE, UpscaleRequest(task_id=grid.id, index=3)))
    parent, first = runtime.tasks.get(grid.id), runtime.tasks.get(early.id)
    assert parent and parent.result and first and first.result and late.result
    assert late.result.renditions == (parent.result.renditions[2],) and late.result.unfinished() == ()
    # Made for the pick itself, from the same file: the same renditions (content-addressed) and
    # the record the file carries, its grid's image 2 (seed 3 + 1).
    assert first.result.renditions[0] == parent.result.renditions[1]
    record = json.loads(runtime.storage.get(first.result.renditions[0]["metadata"]))
    assert (record["task_id"], record["seed"], record["params"]["index"]) == (grid.id, 4, 2)


def test_while_its_process_runs_tasks_the_finisher_makes_only_files_owed_for_a_while(runtime: Runtime, acme: Principal, clock: ManualClock) -> None:
    imagine(runtime, acme)
    f = finisher(runtime, "f")
    assert f.run_once(busy=True) == 0  # just owed: the running tasks have the cores
    clock.advance(BUSY_LAG_SECONDS - 1)
    assert f.run_once(busy=True) == 0
    clock.advance(1)
    assert f.run_once(busy=True) == 1 and owed(runtime) == []  # owed long enough: made even under load
    imagine(runtime, acme, "a crane at dusk --seed 4")
    assert f.run_once() == 1  # an idle process makes them at once


def test_work_a_finisher_took_and_never_finished_is_taken_again_once_its_lock_runs_out(
    runtime: Runtime, acme: Principal, clock: ManualClock
) -> None:
    task = imagine(runtime, acme)
    [claimed] = runtime.finishing.claim("dies", 4, LOCK_SECONDS)  # then its process is killed
    assert finisher(runtime, "survivor").run_once() == 0  # locked: not done twice at once
    clock.advance(LOCK_SECONDS + 1)
    assert finisher(runtime, "survivor").run_once() == 1
    done = runtime.tasks.get(task.id)
    assert done is not None and done.result is not None and done.result.unfinished() == () and owed(runtime) == []
    assert claimed.attempts == 1


def test_a_failure_is_retried_with_backoff_then_given_up_without_touching_the_images(
    runtime: Runtime, acme: Principal, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = imagine(runtime, acme)
    real_finish = runtime.executor.finish
    monkeypatch.setattr(runtime.executor, "finish", lambda t: (_ for _ in ()).throw(ConnectionError("storage unreachable")))
    f = finisher(runtime, "f")
    assert f.run_once() == 1
    [row] = owed(runtime)
    assert row.attempts == 1 and row.error == "ConnectionError: storage unreachable" and row.locked_until is None
    assert f.run_once() == 0  # backing off
    clock.advance(2)
    assert f.run_once() == 1 and owed(runtime)[0].attempts == 2
    monkeypatch.setattr(runtime.executor, "finish", real_finish)  # storage is back
    clock.advance(4)
    assert f.run_once() == 1 and owed(runtime) == []
    done = runtime.tasks.get(task.id)
    assert done is not None and done.result is not None and done.result.unfinished() == ()

    other = imagine(runtime, acme, "a heron at dusk --seed 4")
    monkeypatch.setattr(runtime.executor, "finish", lambda t: (_ for _ in ()).throw(OSError("disk full")))
    for _ in range(MAX_ATTEMPTS):
        clock.advance(3600)
        assert f.run_once() == 1
    assert owed(runtime) == []  # given up
    kept = runtime.tasks.get(other.id)
    assert kept is not None and kept.status is TaskStatus.SUCCESS and kept.result is not None and other.result is not None
    assert kept.result.image_keys == other.result.image_keys and kept.result.renditions == ()


def test_a_try_that_took_its_process_down_counts_and_the_last_one_gives_up(runtime: Runtime, acme: Principal, clock: ManualClock) -> None:
    imagine(runtime, acme)
    for _ in range(MAX_ATTEMPTS):  # each claim, then the process dies before it can say so
        assert len(runtime.finishing.claim("dies", 1, LOCK_SECONDS)) == 1
        clock.advance(LOCK_SECONDS + 1)
    assert owed(runtime)[0].attempts == MAX_ATTEMPTS
    assert runtime.finishing.claim("next", 1, LOCK_SECONDS) == [] and owed(runtime) == []


def test_an_image_approved_while_its_task_backs_off_gets_new_tries_at_once(
    runtime: Runtime, acme: Principal, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = imagine(runtime, acme)
    monkeypatch.setattr(runtime.executor, "finish", lambda t: (_ for _ in ()).throw(OSError("disk full")))
    f = finisher(runtime, "f")
    for _ in range(MAX_ATTEMPTS - 1):
        clock.advance(3600)
        assert f.run_once() == 1
    assert owed(runtime)[0].attempts == MAX_ATTEMPTS - 1
    current = runtime.tasks.get(task.id)
    assert current is not None
    with write_tx(runtime.db) as conn:  # what an approval's transaction tells the observer
        runtime.finishing.on_change(conn, current, TaskEvent.REVIEWED)
    [row] = owed(runtime)
    assert row.attempts == 0 and row.due_at == clock.now_ms()


def test_renditions_line_up_with_the_images_shown() -> None:
    result = TaskResult(image_keys=("a", "", "c", "d"), renditions=({"web": "a-web"}, {}, {}, {"web": "d-web"}))
    task = Task(
        id="1", tenant_id="t", action=Action.IMAGINE, status=TaskStatus.SUCCESS, progress=100, prompt="p", final_prompt="p",
        description="", params={}, engine="procedural", seed=1, quota=1, parent_task_id=None, index=None, result=result,
        fail_reason=None, submit_time=0, start_time=0, finish_time=0, lane=Lane.INTERACTIVE, priority=0, attempt=1, max_attempts=3,
        scheduled_at=0, lease_owner=None, lease_expires_at=None,
    )
    view = task_view(task, "http://h", url_for=lambda key, base: f"{base}/{key}")
    assert view.image_urls == ["http://h/a", "http://h/c", "http://h/d"]
    assert view.renditions == [{"web": "http://h/a-web"}, {}, {"web": "http://h/d-web"}]  # image c: not made yet
