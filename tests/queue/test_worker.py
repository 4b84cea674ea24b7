"""Worker pools that cannot die quietly: a database error costs a retry, not a worker; a thread
that ends anyway is restarted; readiness and metrics say when workers cannot claim; housekeeping
never delays lease recovery. Real SQLite, real executor and procedural engine, in-process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from sqlalchemy.exc import OperationalError

from pixelmill.auth.keys import Principal
from pixelmill.exceptions import EngineError
from pixelmill.runtime import Runtime, build_runtime
from pixelmill.settings import Settings
from pixelmill.tasks.record import Task
from pixelmill.tasks.requests import ImagineRequest
from pixelmill.tasks.status import TaskStatus
from pixelmill.work import worker as worker_module
from pixelmill.work.worker import WorkerPool
from tests.helpers import wait_for


def db_error() -> OperationalError:
    return OperationalError("UPDATE tasks ...", {}, Exception("the database system is shutting down"))


def failing_once(real: Callable[..., Any], calls: list[int]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise db_error()
        return real(*args, **kwargs)

    return wrapper


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = build_runtime(Settings(data_dir=tmp_path, workers=0, screening="off", sweep_interval_seconds=0.05,
                                 retry_backoff_seconds=(0.01,)))
    yield rt
    rt.close()


def submit(runtime: Runtime, acme: Principal, prompt: str = "a cat") -> Task:
    [task] = runtime.service.imagine(acme, ImagineRequest(prompt=f"{prompt} --seed 1"))
    return task


def ends_in_success(runtime: Runtime, task: Task, timeout: float = 15) -> None:
    wait_for(lambda: (t := runtime.tasks.get(task.id)) is not None and t.status is TaskStatus.SUCCESS, timeout=timeout,
             what=f"task {task.id} to succeed")


@pytest.mark.parametrize("write", ["complete", "fail"])
def test_a_database_error_while_recording_an_outcome_costs_a_retry_not_the_worker(
    runtime: Runtime, acme: Principal, monkeypatch: pytest.MonkeyPatch, write: str
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(runtime.tasks, write, failing_once(getattr(runtime.tasks, write), calls))
    if write == "fail":  # the first attempt fails on purpose, so its failure must be recorded
        failed: set[str] = set()
        real_run = runtime.executor.run

        def run(task: Task, progress: Any) -> Any:
            if task.id not in failed:
                failed.add(task.id)
                raise EngineError("engine fell over", retryable=True)
            return real_run(task, progress)

        monkeypatch.setattr(runtime.executor, "run", run)
    pool = runtime.start_workers(1)
    task = submit(runtime, acme)
    ends_in_success(runtime, task)  # well before the 30 s lease: the write was retried at once
    assert len(calls) >= 2
    assert pool.health()["live"] == 1
    ends_in_success(runtime, submit(runtime, acme, "a dog"))  # and the worker goes on working


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread's end is the point
def test_a_thread_that_ends_anyway_is_restarted_and_counted(runtime: Runtime, acme: Principal, monkeypatch: pytest.MonkeyPatch) -> None:
    ended = threading.Event()
    real_once = WorkerPool._work_once

    def work_once(self: WorkerPool, worker_id: str) -> None:
        if not ended.is_set():
            ended.set()
            raise SystemExit  # what the loop's own error handling does not catch: the thread ends
        real_once(self, worker_id)

    monkeypatch.setattr(WorkerPool, "_work_once", work_once)
    pool = runtime.start_workers(1)
    wait_for(ended.is_set, timeout=10, what="the worker thread to end")
    wait_for(lambda: pool.health()["restarts"] == 1 and pool.health()["live"] == 1, timeout=10, what="the supervisor's restart")
    ends_in_success(runtime, submit(runtime, acme))
    text = generate_latest(runtime.worker_metrics.registry).decode()
    assert 'pixelmill_worker_thread_restarts_total{kind="worker"} 1.0' in text
    assert 'pixelmill_workers_live{lane="interactive"} 1.0' in text


def test_readiness_says_when_workers_cannot_claim_and_recovers(runtime: Runtime, acme: Principal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "CLAIM_FAILING_SECONDS", 0.2)
    monkeypatch.setattr(worker_module, "ERROR_PAUSE_SECONDS", 0.05)
    real_claim = runtime.tasks.claim
    broken = threading.Event()
    broken.set()

    def claim(*args: Any, **kwargs: Any) -> Task | None:
        if broken.is_set():
            raise db_error()
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(runtime.tasks, "claim", claim)
    runtime.start_workers(2)
    state = wait_for(lambda: (s := runtime.readiness()["workers"]) != "ok" and s, timeout=10, what="readiness to report failing claims")
    assert state.startswith("RuntimeError: workers cannot claim tasks: failing for") and "shutting down" in state
    assert 'pixelmill_worker_claims_failing 1.0' in wait_for(
        lambda: (t := generate_latest(runtime.worker_metrics.registry).decode()) and "claims_failing 1.0" in t and t, timeout=10)
    broken.clear()
    ends_in_success(runtime, submit(runtime, acme))
    assert runtime.readiness()["workers"] == "ok"


def test_a_slow_or_failing_chore_delays_neither_the_others_nor_lease_recovery(runtime: Runtime, acme: Principal) -> None:
    release, ran = threading.Event(), threading.Event()

    def failing() -> None:
        raise RuntimeError("retention sweep fell over")

    settings = runtime.settings.model_copy(update={"chores_interval_seconds": 0.05})
    pool = WorkerPool(runtime.tasks, runtime.executor, settings, runtime.signals.queued, size=1, chores=(failing, ran.set, release.wait))
    task = submit(runtime, acme)
    claimed = runtime.tasks.claim("a-worker-that-dies", [task.lane], lease_seconds=0.1)
    assert claimed is not None and claimed.id == task.id
    pool.start()
    try:
        wait_for(ran.is_set, timeout=10, what="the chore after the failing one")
        # The third chore is still blocked, yet the expired lease is recovered and the task runs.
        ends_in_success(runtime, task)
        assert not release.is_set()
    finally:
        release.set()
        pool.stop()


def test_a_database_restart_during_a_run_is_retried_not_failed(runtime: Runtime, acme: Principal, monkeypatch: pytest.MonkeyPatch) -> None:
    # Found by the chaos run: a read of the database inside the run (a preview, a review) failing
    # while PostgreSQL restarted ended the task as FAILURE ("internal error: OperationalError").
    real_run, failed = runtime.executor.run, set()

    def run(task: Task, progress: Any) -> Any:
        if task.id not in failed:
            failed.add(task.id)
            raise db_error()
        return real_run(task, progress)

    monkeypatch.setattr(runtime.executor, "run", run)
    runtime.start_workers(1)
    task = submit(runtime, acme)
    ends_in_success(runtime, task)
    assert [a["attempt"] for a in runtime.tasks.get(task.id).errors] == [1]  # type: ignore[union-attr]
