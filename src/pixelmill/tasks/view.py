"""The wire form of a task: what ``GET /v1/midjourney/{task_id}`` answers (the task object itself,
unwrapped), what the event stream sends and what webhooks carry."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from pixelmill.tasks.buttons import buttons_for
from pixelmill.tasks.record import Task


class ButtonView(BaseModel):
    custom_id: str
    label: str


class AttemptError(BaseModel):
    attempt: int
    at: int
    error: str


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
    lane: str = Field(description="interactive or batch.")
    priority: int = Field(description="Higher runs first inside its lane.")
    queue_position: int | None = Field(
        description="While SUBMITTED / NOT_START: 1 = next to run in its lane; null otherwise."
    )
    preview_url: str | None = Field(
        description="A low-resolution preview while the engine runs, when it makes them and the task is watched "
        "(its event stream, previews: true, or a webhook that hears progress).",
    )
    attempts: list[AttemptError] = Field(description="The error of every failed attempt, oldest first.")
    batch_id: str | None
    renditions: list[dict[str, str]] = Field(
        description="Per image in image_urls, in the same order: web and thumb renditions, metadata (its provenance record). "
        "Made right after SUCCESS: {} until then (the files webhook event says when)."
    )
    engine: str = Field(description="The engine that runs it.")
    starred: bool = Field(False, description="Its tenant starred it (PUT /v1/tasks/{task_id}/star).")
    engine_meta: dict[str, Any] = Field(description="What the engine kept (engine=remote: upstream_task_id, upstream_quota).")
    stages: dict[str, float] = Field(
        default_factory=dict,
        description="Where the task's time went, in ms: accept once accepted; queue, claim, engine, preview, screening, "
        "postprocess and storage once it succeeded (docs/performance.md, the stage budget).",
    )
    screening: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Images output screening kept back, by index: decision (block, review, approved, rejected), "
        "reasons [{label, score, box}], review_id. image_urls lists only the published images.",
    )


_SAID = {"block": "blocked", "review": "held for review", "approved": "approved in review", "rejected": "rejected in review"}


def screening_text(entries: Sequence[Mapping[str, Any]]) -> str | None:
    """Those entries in words, for ``fail_reason``: "image 2 blocked (FEMALE_BREAST_EXPOSED 0.81)"."""
    said = [
        f"image {e['index']} {_SAID.get(e['decision'], e['decision'])} ("
        + ", ".join(f"{r['label']} {r['score']:.2f}" for r in e.get("reasons", [])) + ")"
        for e in entries if e.get("decision") != "approved"
    ]
    return "; ".join(said) or None


#: Where a client fetches a stored key, given the base URL the answer is for: ``Storage.url``.
UrlFor = Callable[[str, str], str]


def file_url(key: str, base: str) -> str:
    """pixelmill's own file route (the local storage's URLs)."""
    return f"{base}/files/{key}"


def task_view(task: Task, base: str, queue_position: int | None = None, url_for: UrlFor = file_url) -> TaskView:
    result = task.result

    def url(key: str) -> str:
        return url_for(key, base)

    return TaskView(
        task_id=task.id,
        action=task.action.value,
        status=task.status.value,
        progress=f"{task.progress}%",
        prompt=task.prompt,
        final_prompt=task.final_prompt,
        description=task.description,
        grid_image_url=url(result.grid_key) if result and result.grid_key else None,
        image_urls=[url(k) for k in result.image_keys if k] if result else [],
        video_urls=[url(k) for k in result.video_keys] if result else [],
        buttons=[ButtonView(custom_id=b.custom_id, label=b.label) for b in buttons_for(task)],
        fail_reason=task.fail_reason or (screening_text(result.screening) if result else None),
        quota=task.quota,
        seed=task.seed,
        parent_task_id=task.parent_task_id,
        index=task.index,
        submit_time=task.submit_time,
        start_time=task.start_time,
        finish_time=task.finish_time,
        template=task.params.get("template"),
        params=task.params,
        lane=task.lane.value,
        priority=task.priority,
        queue_position=queue_position,
        preview_url=url(task.preview_key) if task.preview_key and not task.status.is_terminal else None,
        attempts=[AttemptError(**e) for e in task.errors],
        batch_id=task.batch_id,
        # One entry per image shown in image_urls, in the same order: {} until its files are made.
        renditions=[
            {name: url(file) for name, file in (result.renditions[i] if i < len(result.renditions) else {}).items()}
            for i, key in enumerate(result.image_keys) if key
        ] if result else [],
        engine=task.engine,
        starred=task.starred,
        engine_meta=result.meta if result else {},
        screening=list(result.screening) if result else [],
        stages=task.stages,
    )

