"""Running a claimed task: the engine call and post-processing for each action.

An executor turns a task into an ``Outcome`` (storage keys, and text for describe / shorten) or
raises ``EngineError``. It does not touch the task's status: the worker records the outcome.

Every picture operation is one engine request: variation and remix are image-to-image from the
picked picture; zoom and pan paint a mask on a bigger canvas (``media/canvas.py``); inpaint
paints the caller's mask; blend starts from the mean of its pictures; creative upscale re-renders
detail on a 2× enlargement. Wherever a mask says "keep", the source pixels are put back exactly
after the engine ran, whatever the engine did there.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from pixelmill.engines.base import Engine, GenerationRequest, ProgressCallback, UpstreamStep, VideoRequest
from pixelmill.exceptions import EngineError
from pixelmill.media.canvas import composite, paint_mask, pan_canvas, zoom_canvas
from pixelmill.media.encode import encode_preview
from pixelmill.media.grid import compose_grid
from pixelmill.media.output import BUILTIN, RENDITIONS, CapMissed, Encoded, Profile, Provenance, encode, read_provenance
from pixelmill.media.video import first_frame
from pixelmill.observe.stages import in_this_context, stage
from pixelmill.prompts.params import MAX_SEED
from pixelmill.prompts.shorten import shorten
from pixelmill.queue.store import TaskStore
from pixelmill.queue.upstream import TaskUpstream, UpstreamTasks
from pixelmill.safety.review import ReviewQueue
from pixelmill.safety.screening import Screening, Verdict, kept_back
from pixelmill.storage.base import Storage
from pixelmill.tasks.actions import Action
from pixelmill.tasks.record import Task, TaskResult
from pixelmill.tasks.view import screening_text

#: Share of progress the engine's work stands for; storing the files takes the rest.
ENGINE_SHARE = 0.9
#: Creative upscale re-renders detail at this strength on the 2× enlargement.
CREATIVE_UPSCALE_STRENGTH = 0.3
#: Blend starts from the mean of its pictures and moves this far from it.
BLEND_STRENGTH = 0.55


def image_seeds(seed: int, count: int = 4) -> tuple[int, ...]:
    """One seed per image of a grid, so each image can be reproduced on its own."""
    return tuple((seed + i) % (MAX_SEED + 1) for i in range(count))


def _now() -> str:
    """When a file was made, as its provenance records it."""
    return datetime.fromtimestamp(time.time(), tz=UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Published:
    """What ``Executor.publish`` stored: keys by image index, "" where screening kept an image
    back. Renditions and provenance records come after SUCCESS (``Executor.finish``)."""

    grid_key: str | None
    image_keys: tuple[str, ...]
    screening: tuple[dict[str, Any], ...]
    model: str
    created: str

    def result(self, width: int, height: int, meta: dict[str, Any] | None = None) -> TaskResult:
        return TaskResult(grid_key=self.grid_key, image_keys=self.image_keys, width=width, height=height, meta=meta or {},
                          screening=self.screening, model=self.model, created=self.created)


@dataclass(frozen=True)
class Outcome:
    result: TaskResult
    #: The text of a describe or shorten task.
    description: str = ""


class Executor:
    def __init__(
        self,
        engines: Mapping[str, Engine],
        storage: Storage,
        store: TaskStore,
        public_url: str | None = None,
        profiles: Mapping[str, Profile] = BUILTIN,
        renditions: Sequence[str] = tuple(RENDITIONS),
        screening: Screening | None = None,
        reviews: ReviewQueue | None = None,
        upstream: UpstreamTasks | None = None,
    ) -> None:
        self._engines = engines
        #: Where tasks run by an upstream keep their upstream task (engines that run operations).
        self._upstream = upstream
        #: Without a detector every verdict is pass (Screening.screen).
        self._screening = screening or Screening(None)
        self._reviews = reviews
        self._profiles = profiles
        self._renditions = tuple(renditions)
        #: Where an upstream engine can fetch pixelmill's files (masks, blend inputs).
        self._public_url = public_url.rstrip("/") if public_url else None
        self._storage = storage
        self._store = store
        # PNG encoding of a grid costs more than generating it on a CPU; Pillow releases the GIL
        # while encoding, so the five files of an imagine encode side by side.
        self._encoders = ThreadPoolExecutor(max_workers=5, thread_name_prefix="pixelmill-encode")

    def close(self) -> None:
        self._encoders.shutdown(wait=True)

    def publish(
        self, task: Task, images: Sequence[Image.Image], model: str, grid: bool = True, files: Sequence[bytes | None] = (),
    ) -> Published:
        """Screen the task's images and store those that pass under its output profile, with
        their provenance embedded; the grid too, with a blank tile where an image did not pass.
        Nothing else: renditions and provenance records beside the images are made after SUCCESS
        (``finish``). An image for review is held privately (``safety/review.py``); when every
        image is blocked the task fails (and is refunded).

        The files are encoded while screening runs, the grid as if every image passed (almost
        always so); nothing is stored before its verdict, and a grid with a blank tile is encoded
        again. On a GPU host screening and encoding use different parts of the machine; on a CPU
        they share the cores, and the overlap still hides most of the encoding. ``files``: by
        image, the file it was decoded from unchanged (``GenerationResult.files``)."""
        profile = self._profile(task)
        created = _now()
        sources = list(files) + [None] * (len(images) - len(files))
        encodings = [
            self._encoders.submit(in_this_context(self._encode), image, profile, self._provenance(task, index, model, created), source)
            for index, (image, source) in enumerate(zip(images, sources, strict=False), 1)
        ]
        full_grid = self._encoders.submit(in_this_context(self._encode), compose_grid(list(images)), profile) if grid else None
        try:
            with stage("screening"):
                verdicts = self._screening.screen(task.tenant_id, images)
            screening = kept_back(verdicts)
            if all(v.decision == "block" for v in verdicts):
                raise EngineError(f"blocked by output screening: {screening_text(screening)}", retryable=False)
        except BaseException:
            for job in (*encodings, full_grid):
                if job is not None:
                    job.cancel()  # those not started yet; the others are dropped unstored
            raise
        try:
            with stage("postprocess"):
                return self._publish(task, images, model, created, verdicts, screening, encodings, full_grid)
        except BaseException:
            for job in (*encodings, full_grid):
                if job is not None:
                    job.cancel()  # an attempt that failed here stores nothing more (retention takes what it did)
            raise

    def _publish(
        self, task: Task, images: Sequence[Image.Image], model: str, created: str, verdicts: Sequence[Verdict],
        screening: list[dict[str, Any]], encodings: Sequence[Future[Encoded]], full_grid: Future[Encoded] | None,
    ) -> Published:
        passed = [v.decision == "pass" for v in verdicts]
        stored = {
            i: self._encoders.submit(in_this_context(self._stored), job) for i, job in enumerate(encodings) if passed[i]
        }
        for job, ok in zip(encodings, passed, strict=True):
            if not ok:
                job.cancel()
        for entry in screening:
            if entry["decision"] == "review":
                if self._reviews is None:
                    raise EngineError("screening sent an image to review, but this worker has no review queue", retryable=False)
                index = entry["index"]
                entry["review_id"] = self._reviews.hold(task, index, images[index - 1], model, verdicts[index - 1].reasons)
        grid_key = None
        if full_grid is not None:
            if all(passed):
                grid_key = self._stored(full_grid)
            else:
                full_grid.cancel()
                tiles = [im if ok else Image.new("RGB", im.size, (128, 128, 128)) for im, ok in zip(images, passed, strict=True)]
                grid_key = self._file(compose_grid(tiles), self._profile(task))
        done = {i: job.result() for i, job in stored.items()}
        return Published(
            grid_key=grid_key, image_keys=tuple(done.get(i, "") for i in range(len(images))), screening=tuple(screening),
            model=model, created=created,
        )

    def publish_one(self, task: Task, index: int, image: Image.Image, model: str) -> str:
        """Store image ``index`` (1-based) of ``task`` under its output profile, with its
        provenance embedded (a review's approval); returns its key."""
        return self._file(image, self._profile(task), self._provenance(task, index, model, _now()))

    def finish(self, task: Task) -> dict[int, tuple[str, dict[str, str]]]:
        """Make what ``task``'s images still lack (``TaskResult.unfinished``): their renditions,
        from the stored image, and as JSON the provenance record embedded in it.
        Returns, by image index, the image's key and its files (queue/finishing.py adds them)."""
        result = task.result
        if result is None:
            return {}
        made: dict[int, tuple[str, dict[str, str]]] = {}
        for index in result.unfinished():
            key = result.image_keys[index - 1]
            data = self._storage.get(key)
            with Image.open(io.BytesIO(data)) as im:
                image = im.convert("RGB")
            # The record the file carries (a pick's file is its grid's image, with its grid's
            # record); rebuilt only for a profile that strips it.
            record = read_provenance(data) or self._provenance(task, index, result.model or task.engine, result.created or _now()).record()
            files = {name: self._file(image, RENDITIONS[name]) for name in self._renditions}
            files["metadata"] = self._put(json.dumps(record, ensure_ascii=False, sort_keys=True).encode(), "json")
            made[index] = (key, files)
        return made

    def _provenance(self, task: Task, index: int, model: str, created: str) -> Provenance:
        """The record of image ``index`` (1-based), embedded in it and stored beside it."""
        return Provenance(
            task_id=task.id, prompt=task.prompt, final_prompt=task.final_prompt, engine=task.engine, model=model,
            seed=image_seeds(task.seed or 0, index)[index - 1], created=created, template=task.params.get("template"),
            params={k: task.params.get(k) for k in ("width", "height", "output_profile", "price_key") if k in task.params}
            | {"action": task.action.value, "index": index, "parent_task_id": task.parent_task_id},
        )

    def _profile(self, task: Task) -> Profile:
        return self._profiles.get(task.params.get("output_profile") or "original", BUILTIN["original"])

    def _file(self, image: Image.Image, profile: Profile, record: Provenance | None = None) -> str:
        """Encode under ``profile`` and store."""
        encoded = self._encode(image, profile, record)
        return self._put(encoded.data, encoded.ext)

    @staticmethod
    def _encode(image: Image.Image, profile: Profile, record: Provenance | None = None, source: bytes | None = None) -> Encoded:
        """One file under ``profile``; a cap no file can meet is a final, clear failure."""
        try:
            return encode(image, profile, record, source)
        except CapMissed as exc:
            raise EngineError(str(exc), retryable=False) from exc

    def _stored(self, job: Future[Encoded]) -> str:
        encoded = job.result()
        return self._put(encoded.data, encoded.ext)

    def _put(self, data: bytes, ext: str) -> str:
        with stage("storage", part_of_outer=True):
            return self._storage.put(data, ext).key

    def store_preview(self, task: Task, image: Image.Image) -> str | None:
        """Store a low-resolution preview of work in progress; returns its storage key. With
        screening on, a preview is screened like an output (anything but pass: not stored), so
        nothing is shown early that the final screening would keep back."""
        if self._screening.screen(task.tenant_id, [image], purpose="preview")[0].decision != "pass":
            return None
        return self._storage.put(encode_preview(image), "jpg").key

    def _load(self, key: str) -> Image.Image:
        """An input image from storage (it was checked when the task was accepted)."""
        with Image.open(io.BytesIO(self._storage.get(key))) as im:
            im.load()
            return im if im.mode in ("RGBA", "LA", "P") else im.convert("RGB")

    def _rgb(self, key: str) -> Image.Image:
        return self._load(key).convert("RGB")

    def _engine(self, task: Task) -> Engine:
        engine = self._engines.get(task.engine)
        if engine is None:
            raise EngineError(f"engine {task.engine} is not loaded on this worker", retryable=True)
        return engine

    def run(self, task: Task, progress: ProgressCallback) -> Outcome:
        # A reroll does again whatever made its parent's grid.
        action = Action(task.params["rerun"]) if task.action is Action.REROLL else task.action
        if action is Action.UPSCALE:
            return Outcome(self._upscale(task, progress))
        if action is Action.DESCRIBE:
            with stage("engine"):
                suggestions = self._engine(task).describe(self._rgb(task.params["source"]["key"]))
            return Outcome(TaskResult(), "\n\n".join(f"{i}\ufe0f\u20e3 {s}" for i, s in enumerate(suggestions, 1)))
        if action is Action.SHORTEN:
            return Outcome(TaskResult(), self._shorten(task))
        if action is Action.VIDEO:
            return Outcome(self._video(task, progress))
        if action.makes_grid:
            return Outcome(self._grid(task, action, progress))
        raise EngineError(f"action {task.action.value} is not supported", retryable=False)

    # --- grids -----------------------------------------------------------------------------------

    def _grid(self, task: Task, action: Action, progress: ProgressCallback) -> TaskResult:
        assert task.seed is not None
        p = task.params
        base: dict[str, Any] = {
            "prompt": p.get("engine_prompt", ""),
            "negative_prompt": p.get("engine_negative", ""),
            "width": p["width"],
            "height": p["height"],
            "seeds": image_seeds(task.seed),
        }
        keep: tuple[Image.Image, Image.Image] | None = None  # (original, mask): pixels to put back
        if action is Action.IMAGINE:
            inputs = p["inputs"]["image_urls"]
            base.update(image_prompts=tuple(self._rgb(i["key"]) for i in inputs),
                        image_weight=p["iw"] if p.get("iw") is not None else 1.0)
        elif action is Action.VARIATION:
            base.update(init_image=self._rgb(p["source"]["key"]), strength=p["strength"])
        elif action in (Action.ZOOM, Action.PAN, Action.INPAINT):
            source = self._rgb(p["source"]["key"])
            if action is Action.ZOOM:
                canvas, mask = zoom_canvas(source, p["zoom"])
            elif action is Action.PAN:
                canvas, mask = pan_canvas(source, p["direction"])
            else:
                canvas, mask = source, paint_mask(self._load(p["mask"]["key"]), source.size)
            base.update(init_image=canvas, mask=mask, strength=1.0)
            keep = (canvas, mask)
        elif action is Action.BLEND:
            pictures = [self._rgb(i["key"]) for i in p["inputs"]["image_urls"]]
            size = (p["width"], p["height"])
            mean = np.mean([np.asarray(ImageOps.fit(im, size), dtype=np.float32) for im in pictures], axis=0)
            base.update(init_image=Image.fromarray(mean.astype(np.uint8), "RGB"), strength=BLEND_STRENGTH,
                        image_prompts=tuple(pictures), image_weight=2.0)
        engine = self._engine(task)
        if engine.runs_operations:
            base.update(step=self._step(task, action), source_prompt=task.final_prompt, upstream=self._upstream_record(task))
        elif engine.records_upstream:
            base.update(source_prompt=task.final_prompt, upstream=self._upstream_record(task))
        request = GenerationRequest(**base)
        with stage("engine"):
            result = engine.generate(request, lambda f, preview=None: progress(ENGINE_SHARE * f, preview))
        if len(result.images) != 4:
            raise EngineError(f"engine returned {len(result.images)} images, expected 4", retryable=True)
        images = list(result.images)
        files = result.files
        if keep is not None:
            images = [composite(keep[0], im, keep[1]) for im in images]
            files = ()  # other pixels now
        return self.publish(task, images, result.model, files=files).result(request.width, request.height, result.meta)

    # --- single pictures -------------------------------------------------------------------------

    def _upscale(self, task: Task, progress: ProgressCallback) -> TaskResult:
        p = task.params
        source = p.get("source")
        if source is None:  # a task accepted before sources were recorded: its parent's image
            parent = self._store.get(task.parent_task_id or "")
            if parent is None or parent.result is None or task.index is None:
                raise EngineError(f"parent task {task.parent_task_id} has no images", retryable=False)
            source = {"key": parent.result.image_keys[task.index - 1], "width": parent.result.width, "height": parent.result.height}
        mode = p.get("upscale_mode")
        engine = self._engine(task)
        if engine.runs_operations:  # upstream too, so that follow-ups of this picture have a parent there
            assert task.seed is not None
            request = GenerationRequest(
                prompt=p.get("engine_prompt", ""), width=p.get("width", source["width"]), height=p.get("height", source["height"]),
                seeds=(task.seed,), step=self._step(task, Action.UPSCALE), upstream=self._upstream_record(task),
            )
            with stage("engine"):
                done = engine.generate(request, lambda f, preview=None: progress(ENGINE_SHARE * f, preview))
            return self.publish(task, done.images[:1], done.model, grid=False, files=done.files[:1]).result(
                request.width, request.height, done.meta)
        if mode is None:
            # The chosen image is already stored under its content key: the plain pick is that
            # same object (and its renditions, once its parent has them), with no engine call.
            parent = self._store.get(task.parent_task_id or "")
            made = parent.result if parent and parent.result else TaskResult()
            kept = made.renditions
            renditions = (kept[task.index - 1],) if task.index and len(kept) >= task.index else ()
            return TaskResult(image_keys=(source["key"],), width=source["width"], height=source["height"], renditions=renditions,
                              model=made.model, created=made.created)
        size = (p["width"], p["height"])
        enlarged = self._rgb(source["key"]).resize(size, Image.Resampling.LANCZOS)
        if mode == "subtle":
            image = enlarged.filter(ImageFilter.UnsharpMask(radius=2, percent=60, threshold=2))
        else:
            assert task.seed is not None
            request = GenerationRequest(
                prompt=p.get("engine_prompt", ""), negative_prompt=p.get("engine_negative", ""), width=size[0], height=size[1],
                seeds=(task.seed,), init_image=enlarged, strength=CREATIVE_UPSCALE_STRENGTH,
                upstream=self._upstream_record(task) if engine.records_upstream else None,
            )
            with stage("engine"):
                image = engine.generate(request, lambda f, preview=None: progress(ENGINE_SHARE * f, preview)).images[0]
        return self.publish(task, [image], engine.model, grid=False).result(size[0], size[1])

    def _shorten(self, task: Task) -> str:
        short = shorten(task.final_prompt)
        lines = [f"{i}\ufe0f\u20e3 {c}" for i, c in enumerate(short.candidates, 1)]
        if short.low_weight:
            lines.append("Words that carried little weight: " + ", ".join(short.low_weight))
        return "\n\n".join(lines)

    def _video(self, task: Task, progress: ProgressCallback) -> TaskResult:
        assert task.seed is not None
        p = task.params
        request = VideoRequest(
            image=self._rgb(p["source"]["key"]),
            end_image=self._rgb(p["end"]["key"]) if p.get("end") else None,
            width=p["width"], height=p["height"], seeds=image_seeds(task.seed, p["batch_size"]),
            frames=p["frames"], fps=p["fps"], motion=p["motion"], prompt=p.get("engine_prompt", ""),
        )
        engine = self._engine(task)
        if engine.runs_operations:
            request = replace(request, step=self._step(task, Action.VIDEO), upstream=self._upstream_record(task))
        with stage("engine"):
            made = engine.animate(request, lambda f, preview=None: progress(ENGINE_SHARE * f, preview))
        clips = made.clips
        if len(clips) != len(request.seeds):
            raise EngineError(f"engine returned {len(clips)} clips, expected {len(request.seeds)}", retryable=True)
        frames = [first_frame(clip) for clip in clips]
        # A clip is screened on its first frame; clips are not held for review: anything but
        # pass keeps a clip out.
        with stage("screening"):
            verdicts = self._screening.screen(task.tenant_id, frames)
        screening = [e | {"decision": "block"} for e in kept_back(verdicts)]
        if len(screening) == len(clips):
            raise EngineError(f"blocked by output screening: {screening_text(screening)}", retryable=False)
        kept = [i for i, v in enumerate(verdicts) if v.decision == "pass"]
        with stage("postprocess"):
            videos = [self._put(clips[i], "mp4") for i in kept]
            posters = list(self._encoders.map(in_this_context(lambda i: self._file(frames[i], BUILTIN["original"])), kept))
        return TaskResult(image_keys=tuple(posters), video_keys=tuple(videos), width=request.width, height=request.height,
                          meta=made.meta, screening=tuple(screening))

    # --- operations run upstream -----------------------------------------------------------------

    def _file_url(self, image: dict[str, Any]) -> str:
        """A URL the upstream can fetch for an input: the caller's own URL when it was an
        outside one, else this deployment's public file URL."""
        url = str(image.get("url", ""))
        if url.startswith(("http://", "https://")) and "/files/" not in url:
            return url
        if self._public_url is None:
            raise EngineError("set PIXELMILL_PUBLIC_URL so the upstream can fetch pixelmill's files", retryable=False)
        return f"{self._public_url}/files/{image['key']}"

    def _upstream_record(self, task: Task) -> TaskUpstream:
        if self._upstream is None:
            raise EngineError(f"engine {task.engine} runs operations upstream, and this worker keeps no upstream records", retryable=False)
        return self._upstream.record(task.id, task.engine, task.attempt)

    def _step(self, task: Task, action: Action) -> UpstreamStep:
        """The same operation in the upstream's wire form, on the parent's upstream task (and
        so on the account of the engine's pool that holds it), at the task's speed tier."""
        step, parent = self._operation(task, action)
        account = parent.result.meta.get("upstream_account", "default") if parent and parent.result else None
        return replace(step, account=account, speed=task.params.get("speed"))

    def _operation(self, task: Task, action: Action) -> tuple[UpstreamStep, Task | None]:
        p = task.params
        if action is Action.IMAGINE:
            return UpstreamStep("imagine", {"prompt": task.final_prompt}), None
        if action is Action.BLEND:
            fields: dict[str, Any] = {"image_urls": [self._file_url(i) for i in p["inputs"]["image_urls"]], "dimensions": p["dimensions"]}
            return UpstreamStep("blend", fields), None
        if action is Action.VIDEO and task.parent_task_id is None:
            fields = {"image_url": self._file_url(p["source"]), "batch_size": p["batch_size"], "video_type": p["video_type"], "motion": p["motion"]}
            return UpstreamStep("video", fields | ({"end_url": self._file_url(p["end"])} if p.get("end") else {})), None
        parent = self._store.get(task.parent_task_id or "")
        upstream_id = parent.result.meta.get("upstream_task_id") if parent and parent.result else None
        if parent is None or upstream_id is None:
            raise EngineError(f"parent task {task.parent_task_id} has no upstream task to continue", retryable=False)
        at: dict[str, Any] = {"task_id": upstream_id}
        if parent.action.makes_grid and task.index is not None:
            at["index"] = task.index
        if action is Action.REROLL:
            return UpstreamStep("reroll", {"task_id": upstream_id}), parent
        if action is Action.UPSCALE:
            return UpstreamStep("upscale", at | ({"mode": p["upscale_mode"]} if p.get("upscale_mode") else {})), parent
        if action is Action.VARIATION:
            return UpstreamStep("variation", at | {"mode": p["mode"]} | ({"prompt": task.prompt} if p.get("remix") else {})), parent
        if action is Action.ZOOM:
            return UpstreamStep("zoom", at | {"zoom": p["zoom"]}), parent
        if action is Action.PAN:
            return UpstreamStep("pan", at | {"direction": p["direction"]}), parent
        if action is Action.INPAINT:
            return UpstreamStep("inpaint", at | {"modal": {"prompt": task.prompt, "mask_url": self._file_url(p["mask"])}}), parent
        if action is Action.VIDEO:
            fields = {"task_id": upstream_id, "batch_size": p["batch_size"], "video_type": p["video_type"], "motion": p["motion"]}
            if parent.action.makes_grid and task.index is not None:
                fields["index"] = task.index  # video counts from 0, as its task does
            return UpstreamStep("video", fields), parent
        raise EngineError(f"{action.value} has no upstream form", retryable=False)
