"""Accepting tasks: turn a validated request into a queued task row, or a precise refusal."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from pixelmill.auth.keys import Principal
from pixelmill.exceptions import EngineUnavailable, TaskNotFound, ValidationError
from pixelmill.engines.base import MAX_SEED
from pixelmill.media.inputs import FILES_PATH, InputImages
from pixelmill.prompts.grammar import Prompt
from pixelmill.settings import Settings
from pixelmill.tasks.actions import Action, Lane
from pixelmill.tasks.buttons import parse_custom_id
from pixelmill.tasks.pricing import price_key, price_of
from pixelmill.tasks.record import NewTask, Task
from pixelmill.tasks.requests import MAX_SIDE, ImagineRequest, UpscaleRequest
from pixelmill.tasks.status import TaskStatus
from pixelmill.queue.store import TaskStore


class TaskService:
    def __init__(
        self,
        store: TaskStore,
        settings: Settings,
        engine_names: frozenset[str],
        inputs: InputImages,
        on_enqueued: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._engines = engine_names
        self._inputs = inputs
        #: Wakes in-process workers at once, instead of at their next poll.
        self._on_enqueued = on_enqueued

    def get(self, principal: Principal, task_id: str) -> Task:
        # Another tenant's task answers exactly like an unknown one.
        task = self._store.get(task_id, tenant_id=principal.tenant_id)
        if task is None:
            raise TaskNotFound(task_id)
        return task

    def imagine(self, principal: Principal, req: ImagineRequest, own_bases: Sequence[str] = ()) -> list[Task]:
        """Accept an imagine: one task, or one per run with ``--repeat``, queued all or none.

        ``own_bases`` are the base URLs this server is reached by: image URLs under them are read
        from storage instead of fetched."""
        prompt = req.to_prompt()
        base = self._settings.image_size * (2 if prompt.hd else 1)
        width, height = req.pixel_size() or prompt.aspect.size(base)
        if max(width, height) > MAX_SIDE * 2:
            raise ValidationError("hd", f"{width}x{height} is more than engines render; lower PIXELMILL_IMAGE_SIZE or drop --hd")
        engine = self._engine()
        # The network work comes last: every cheap check above has passed by now.
        prompt, inputs = self._take_inputs(prompt, req, own_bases)
        key = price_key(Action.IMAGINE, prompt.niji)
        runs = prompt.repeat or 1
        # Every task gets a concrete seed, so every result can be reproduced. Repeats of a given
        # seed step by 4: each grid's four images keep seeds of their own (see image_seeds).
        first = prompt.seed
        news = []
        for run in range(runs):
            seed = (first + 4 * run) % (MAX_SEED + 1) if first is not None else secrets.randbelow(MAX_SEED + 1)
            one = replace(prompt, seed=seed, repeat=None)
            news.append(
                NewTask(
                    tenant_id=principal.tenant_id,
                    action=Action.IMAGINE,
                    prompt=req.prompt,
                    final_prompt=one.canonical(),
                    params={
                        **one.params(),
                        "engine_prompt": prompt.positive_text,
                        "engine_negative": prompt.negative_text,
                        "width": width,
                        "height": height,
                        "inputs": inputs,
                        "price_key": key,
                        "repeat": {"run": run + 1, "of": runs} if prompt.repeat else None,
                    },
                    engine=engine,
                    seed=seed,
                    quota=price_of(key),
                    max_attempts=self._settings.max_attempts,
                )
            )
        return self._enqueue(news)

    def _take_inputs(
        self, prompt: Prompt, req: ImagineRequest, own_bases: Sequence[str]
    ) -> tuple[Prompt, dict[str, list[dict[str, Any]]]]:
        """Fetch (or find in storage) every input image; a refusal names the field it came from.
        Returns the prompt with relative ``/files/`` URLs spelled out, so ``final_prompt`` stands
        on its own, and what was stored for each image field."""
        inputs: dict[str, list[dict[str, Any]]] = {}
        absolute: dict[str, tuple[str, ...]] = {}
        for name in ("image_urls", "sref", "cref"):
            urls: tuple[str, ...] = getattr(prompt, name)
            from_body = getattr(req, name) is not None
            inputs[name] = [
                self._inputs.resolve(url, f"{name}[{i}]" if from_body else "prompt", own_bases).to_json()
                for i, url in enumerate(urls)
            ]
            absolute[name] = tuple(own_bases[0] + u if u.startswith(FILES_PATH) and own_bases else u for u in urls)
        return replace(prompt, **absolute), inputs

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
        key = price_key(Action.UPSCALE)
        [task] = self._enqueue(
            [NewTask(
                tenant_id=principal.tenant_id,
                action=Action.UPSCALE,
                prompt=parent.prompt,
                final_prompt=parent.final_prompt,
                params={**parent.params, "index": index, "price_key": key},
                engine=parent.engine,
                seed=parent.seed,
                quota=price_of(key),
                parent_task_id=parent.id,
                index=index,
                max_attempts=self._settings.max_attempts,
            )]
        )
        return task

    def _engine(self) -> str:
        name = self._settings.engine
        if name not in self._engines:
            # Clients retry code 3 later unless the text mentions a task (seed 004), so no "task" here.
            raise EngineUnavailable(f"no {name} engine instance is available right now; retry later")
        return name

    def _enqueue(self, news: Sequence[NewTask]) -> list[Task]:
        lane = news[0].lane
        limit = (
            self._settings.interactive_queue_limit
            if lane is Lane.INTERACTIVE
            else self._settings.batch_queue_limit
        )
        tasks = self._store.insert_all(news, queue_limit=limit)
        self._on_enqueued()
        return tasks

