"""Waiting for a task without polling: the long-poll of ``GET /v1/midjourney/{id}`` and the
synchronous answers of ``/v1/images`` wait here, woken by the task's changes."""

from __future__ import annotations

import time

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from pixelmill.auth.keys import Principal
from pixelmill.runtime import Runtime
from pixelmill.tasks.record import Task
from pixelmill.tasks.status import TaskStatus


def settled(task: Task) -> bool:
    # MODAL waits for the caller, so waiting longer would not change it either.
    return task.status.is_terminal or task.status is TaskStatus.MODAL


async def until_settled(request: Request, runtime: Runtime, principal: Principal, task_id: str, deadline: float) -> Task:
    """The task once it is settled, or as it is at ``deadline`` (``time.monotonic``), or when the
    client has gone. The caller holds a stream place (``runtime.signals.feed.stream()``)."""
    # Woken by the task's changes (queue/signals.py), not by polling; subscribed before the first
    # read, so a change between a read and the wait is not missed.
    with runtime.signals.feed.subscribe(task_id) as changes:
        task = await run_in_threadpool(runtime.service.get, principal, task_id)
        while not settled(task) and time.monotonic() < deadline and not await request.is_disconnected():
            await changes.wait(deadline - time.monotonic())
            task = await run_in_threadpool(runtime.service.get, principal, task_id)
    return task
