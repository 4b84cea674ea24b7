"""Accepting tasks: turn a validated request into a queued task row, or a precise refusal."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import replace

from pixelmill.auth.keys import Principal
from pixelmill.exceptions import EngineUnavailable, TaskNotFound, ValidationError
from pixelmill.prompts.aspect import AspectRatio
from pixelmill.engines.base import MAX_SEED
from pixelmill.prompts.parse import parse_prompt
from pixelmill.settings import Settings
from pixelmill.tasks.actions import Action, Lane
from pixelmill.tasks.buttons import parse_custom_id
from pixelmill.tasks.pricing import price_of
from pixelmill.tasks.record import NewTask, Task
from pixelmill.tasks.requests import ImagineRequest, UpscaleRequest
from pixelmill.tasks.status import TaskStatus
from pixelmill.queue.store import TaskStore


class TaskService:
    def __init__(
        self,
        store: TaskStore,
        settings: Settings,
        engine_names: frozenset[str],
        on_enqueued: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._engines = engine_names
        #: Wakes in-process workers at once, instead of at their next poll.
        self._on_enqueued = on_enqueued

    def get(self, principal: Principal, task_id: str) -> Task:
        # Another tenant's task answers exactly like an unknown one.
        task = self._store.get(task_id, tenant_id=principal.tenant_id)
        if task is None:
            raise TaskNotFound(task_id)
        return task

    def imagine(self, principal: Principal, req: ImagineRequest) -> Task:
        parsed = parse_prompt(req.prompt)
        if req.aspect_ratio is not None:
            parsed = replace(parsed, aspect=AspectRatio.parse(req.aspect_ratio))
        if req.seed is not None:
            parsed = parsed.with_seed(req.seed)
        # Every task gets a concrete seed, so every result can be reproduced.
        seed = parsed.seed if parsed.seed is not None else secrets.randbelow(MAX_SEED + 1)
        width, height = parsed.aspect.size(self._settings.image_size)
        engine = self._engine()
        return self._enqueue(
            NewTask(
                tenant_id=principal.tenant_id,
                action=Action.IMAGINE,
                prompt=req.prompt,
                final_prompt=parsed.with_seed(seed).canonical(),
                params={
                    "subject": parsed.subject,
                    "aspect_ratio": str(parsed.aspect),
                    "width": width,
                    "height": height,
                    "negative_prompt": parsed.negative or "",
                    "version": parsed.version,
                    "niji": parsed.niji,
                    "stylize": parsed.stylize,
                    "chaos": parsed.chaos,
                    "tile": parsed.tile,
                },
                engine=engine,
                seed=seed,
                quota=price_of(Action.IMAGINE),
                max_attempts=self._settings.max_attempts,
            )
        )

    def upscale(self, principal: Principal, req: UpscaleRequest) -> Task:
        if req.custom_id is not None:
            press = parse_custom_id(req.custom_id)
            if press.action is not Action.UPSCALE:
                raise ValidationError("custom_id", f"'{req.custom_id}' is not an upscale button")
            if req.task_id is not None and req.task_id != press.task_id:
                raise ValidationError("custom_id", "names a different task than task_id")
            parent_id, index = press.task_id, press.index
        elif req.task_id is not None and req.index is not None:
            parent_id, index = req.task_id, req.index
        else:
            raise ValidationError("task_id", "give task_id and index (1-4), or custom_id")
        if not 1 <= index <= 4:
            raise ValidationError("index", f"must be 1-4, got {index}")
        parent = self.get(principal, parent_id)
        if not parent.action.makes_grid:
            raise ValidationError("task_id", f"task {parent.id} is an {parent.action.value} task; only a grid can be upscaled")
        if parent.status is not TaskStatus.SUCCESS:
            raise ValidationError("task_id", f"task {parent.id} is {parent.status.value}; wait until it is SUCCESS")
        return self._enqueue(
            NewTask(
                tenant_id=principal.tenant_id,
                action=Action.UPSCALE,
                prompt=parent.prompt,
                final_prompt=parent.final_prompt,
                params={**parent.params, "index": index},
                engine=parent.engine,
                seed=parent.seed,
                quota=price_of(Action.UPSCALE),
                parent_task_id=parent.id,
                index=index,
                max_attempts=self._settings.max_attempts,
            )
        )

    def _engine(self) -> str:
        name = self._settings.engine
        if name not in self._engines:
            # Clients retry code 3 later unless the text mentions a task (seed 004), so no "task" here.
            raise EngineUnavailable(f"no {name} engine instance is available right now; retry later")
        return name

    def _enqueue(self, new: NewTask) -> Task:
        limit = (
            self._settings.interactive_queue_limit
            if new.lane is Lane.INTERACTIVE
            else self._settings.batch_queue_limit
        )
        task = self._store.insert(new, queue_limit=limit)
        self._on_enqueued()
        return task

