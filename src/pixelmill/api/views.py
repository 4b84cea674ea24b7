"""The wire form of a task (``GET /v1/midjourney/{task_id}``): the task object itself, unwrapped."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from pixelmill.tasks.buttons import buttons_for
from pixelmill.tasks.record import Task


class ButtonView(BaseModel):
    custom_id: str
    label: str


class TaskView(BaseModel):
    task_id: str
    action: str
    status: str
    progress: str
    prompt: str
    final_prompt: str
    description: str
    grid_image_url: str | None
    image_urls: list[str]
    video_urls: list[str]
    buttons: list[ButtonView]
    fail_reason: str | None
    quota: int
    seed: int | None
    parent_task_id: str | None
    index: int | None
    submit_time: int
    start_time: int | None
    finish_time: int | None
    template: dict[str, Any] | None
    params: dict[str, Any]


def file_url(base: str, key: str) -> str:
    return f"{base}/files/{key}"


def task_view(task: Task, base: str) -> TaskView:
    result = task.result
    return TaskView(
        task_id=task.id,
        action=task.action.value,
        status=task.status.value,
        progress=f"{task.progress}%",
        prompt=task.prompt,
        final_prompt=task.final_prompt,
        description=task.description,
        grid_image_url=file_url(base, result.grid_key) if result and result.grid_key else None,
        image_urls=[file_url(base, k) for k in result.image_keys] if result else [],
        video_urls=[],
        buttons=[ButtonView(custom_id=b.custom_id, label=b.label) for b in buttons_for(task)],
        fail_reason=task.fail_reason,
        quota=task.quota,
        seed=task.seed,
        parent_task_id=task.parent_task_id,
        index=task.index,
        submit_time=task.submit_time,
        start_time=task.start_time,
        finish_time=task.finish_time,
        template=None,
        params=task.params,
    )
