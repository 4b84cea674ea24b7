"""Running a claimed task: the engine call and post-processing for each action.

An executor turns a task into a ``TaskResult`` (storage keys) or raises ``EngineError``. It does
not touch the task's status: the worker records the outcome.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from pixelmill.engines.base import MAX_SEED, Engine, GenerationRequest, ProgressCallback
from pixelmill.exceptions import EngineError
from pixelmill.media.encode import encode_png, encode_preview
from pixelmill.media.grid import compose_grid
from pixelmill.queue.store import TaskStore
from pixelmill.storage.base import Storage
from pixelmill.tasks.actions import Action
from pixelmill.tasks.record import Task, TaskResult


def image_seeds(seed: int, count: int = 4) -> tuple[int, ...]:
    """One seed per image of a grid, so each image can be reproduced on its own."""
    return tuple((seed + i) % (MAX_SEED + 1) for i in range(count))


class Executor:
    def __init__(self, engines: Mapping[str, Engine], storage: Storage, store: TaskStore) -> None:
        self._engines = engines
        self._storage = storage
        self._store = store
        # PNG encoding of a grid costs more than generating it on a CPU; Pillow releases the GIL
        # while encoding, so the five files of an imagine encode side by side.
        self._encoders = ThreadPoolExecutor(max_workers=5, thread_name_prefix="pixelmill-encode")

    def close(self) -> None:
        self._encoders.shutdown(wait=True)

    def _store_png(self, image: Image.Image) -> str:
        return self._storage.put(encode_png(image), "png").key

    def store_preview(self, image: Image.Image) -> str:
        """Store a low-resolution preview of work in progress; returns its storage key."""
        return self._storage.put(encode_preview(image), "jpg").key

    def _load(self, key: str) -> Image.Image:
        """An input image from storage (it was checked when the task was accepted)."""
        with Image.open(io.BytesIO(self._storage.get(key))) as im:
            return im.convert("RGB")

    def run(self, task: Task, progress: ProgressCallback) -> TaskResult:
        if task.action is Action.IMAGINE:
            return self._imagine(task, progress)
        if task.action is Action.UPSCALE:
            return self._upscale(task)
        raise EngineError(f"action {task.action.value} is not supported", retryable=False)

    def _imagine(self, task: Task, progress: ProgressCallback) -> TaskResult:
        engine = self._engines.get(task.engine)
        if engine is None:
            raise EngineError(f"engine {task.engine} is not loaded on this worker", retryable=True)
        assert task.seed is not None
        request = GenerationRequest(
            prompt=task.params["engine_prompt"],
            negative_prompt=task.params["engine_negative"],
            width=task.params["width"],
            height=task.params["height"],
            seeds=image_seeds(task.seed),
            image_prompts=tuple(self._load(i["key"]) for i in task.params["inputs"]["image_urls"]),
            image_weight=task.params["iw"] if task.params["iw"] is not None else 1.0,
        )
        # Generation is most of the work: map it onto 0-90 %, storing takes the rest.
        result = engine.generate(request, lambda f, preview=None: progress(0.9 * f, preview))
        if len(result.images) != 4:
            raise EngineError(f"engine returned {len(result.images)} images, expected 4", retryable=True)
        grid, *keys = self._encoders.map(self._store_png, [compose_grid(result.images), *result.images])
        return TaskResult(grid_key=grid, image_keys=tuple(keys), width=request.width, height=request.height)

    def _upscale(self, task: Task) -> TaskResult:
        # The chosen image is already stored under its content key: the "upscale" of a plain pick
        # is that same object, composed locally with no engine call.
        parent = self._store.get(task.parent_task_id or "")
        if parent is None or parent.result is None or task.index is None:
            raise EngineError(f"parent task {task.parent_task_id} has no images", retryable=False)
        key = parent.result.image_keys[task.index - 1]
        return TaskResult(image_keys=(key,), width=parent.result.width, height=parent.result.height)

