"""Accepting every operation after imagine: upscale, variation (remix), reroll, zoom, pan,
inpaint and the ``/modal`` call that continues it, describe, blend, shorten, video, and button
presses. Each turns a validated request into one task row (the executor does the work later).

The rules shared by all of them live here once:
- a follow-up starts from a picture of a finished task: ``task_id`` + ``index`` (1-4 on a grid;
  nothing or 1 on a single picture), or a button's ``custom_id``, which must be one of the
  task's buttons (``tasks/buttons.py``);
- it runs on the engine that made its parent, records ``parent_task_id``, and gets a seed of its
  own; its price key follows the action (and the parent's speed tier);
- inpaint and custom zoom are born MODAL (answer code 21) and are queued by ``/modal``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pixelmill.auth.keys import Principal
from pixelmill.billing.prices import PriceTable
from pixelmill.exceptions import EngineUnavailable, ValidationError
from pixelmill.media.canvas import pan_size
from pixelmill.media.inputs import InputImages
from pixelmill.prompts.aspect import AspectRatio
from pixelmill.prompts.grammar import Prompt, parse_prompt
from pixelmill.prompts.params import MAX_SEED
from pixelmill.queue.store import TaskStore
from pixelmill.settings import Settings
from pixelmill.submit.service import TaskService
from pixelmill.tasks.actions import Action
from pixelmill.tasks.buttons import find_button, parse_custom_id
from pixelmill.tasks.idempotency import Claim
from pixelmill.tasks.pricing import price_key
from pixelmill.tasks.record import NewTask, Task
from pixelmill.tasks.requests import (
    MAX_SIDE,
    OPERATION_BODIES,
    ActionRequest,
    BlendRequest,
    Delivery,
    DescribeRequest,
    InpaintRequest,
    ModalRequest,
    PanRequest,
    RerollRequest,
    ShortenRequest,
    UpscaleRequest,
    VariationRequest,
    VideoRequest,
    ZoomRequest,
    validated,
    with_client_labels,
)
from pixelmill.tasks.status import TaskStatus

#: How far a variation moves from its picture (the engine's img2img strength).
VARIATION_STRENGTH = {"subtle": 0.35, "strong": 0.7}
BLEND_RATIOS = {"PORTRAIT": AspectRatio(2, 3), "SQUARE": AspectRatio(1, 1), "LANDSCAPE": AspectRatio(3, 2)}
#: Short side of a clip, per video type.
VIDEO_SHORT_SIDE = {"480": 480, "720": 720}

def _new_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


def _reseeded(final_prompt: str, seed: int) -> str:
    """The parent's canonical prompt with this task's seed ("" for tasks without a prompt)."""
    if not final_prompt:
        return ""
    return replace(parse_prompt(final_prompt), seed=seed).canonical()


def video_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """The clip size for a picture: its aspect ratio with the given short side, both sides even
    multiples of 16 (what H.264 encoders prefer)."""
    if width >= height:
        return max(16, round(short_side * width / height / 16) * 16), short_side
    return short_side, max(16, round(short_side * height / width / 16) * 16)


class Operations:
    def __init__(
        self,
        service: TaskService,
        store: TaskStore,
        prices: PriceTable,
        inputs: InputImages,
        settings: Settings,
    ) -> None:
        self._service = service
        self._store = store
        self._prices = prices
        self._inputs = inputs
        self._settings = settings

    # --- entry points (one per route) ------------------------------------------------------------

    def submit(
        self, principal: Principal, action: Action, req: Delivery, own_bases: Sequence[str] = (), *, idempotency_key: str | None = None
    ) -> Task:
        """Accept one operation under its Idempotency-Key. A ``custom_id`` in the body is a
        button press and must be a button of this same operation."""
        def run(claim: Claim | None) -> list[Task]:
            request = req
            custom_id = getattr(req, "custom_id", None)
            if custom_id is not None:
                request = self._pressed(principal, custom_id, None, req, expect=action)
            return [self._plan_and_accept(principal, action, request, own_bases, claim)]

        return self._service.admission.guarded_submit(principal, action.value.lower(), req, idempotency_key, run)[0]

    def press(self, principal: Principal, req: ActionRequest, own_bases: Sequence[str] = (), *, idempotency_key: str | None = None) -> Task:
        """The generic action endpoint: whatever operation the button stands for."""
        def run(claim: Claim | None) -> list[Task]:
            action, request = self._press(principal, req.custom_id, req.task_id, req)
            return [self._plan_and_accept(principal, action, request, own_bases, claim)]

        return self._service.admission.guarded_submit(principal, "action", req, idempotency_key, run)[0]

    def modal(self, principal: Principal, req: ModalRequest, own_bases: Sequence[str] = ()) -> Task:
        """Supply what a MODAL task waits for and queue it: inpaint needs prompt + mask_url, a
        custom zoom a zoom factor (``zoom`` or ``--zoom`` in the prompt)."""
        task = self._service.get(principal, req.task_id)
        self._service.admission.moderate(principal, req)
        if task.status is not TaskStatus.MODAL:
            raise ValidationError("task_id", f"task {task.id} is {task.status.value}; /modal only continues a task waiting in MODAL")
        params = dict(task.params)
        prompt_text = task.prompt
        final_prompt = task.final_prompt
        if req.prompt is not None:
            prompt = parse_prompt(req.prompt)
            prompt_text, final_prompt = req.prompt, replace(prompt, seed=task.seed, zoom=None).canonical()
            params.update(engine_prompt=prompt.positive_text, engine_negative=prompt.negative_text)
        if task.action is Action.INPAINT:
            if req.mask_url is None or req.prompt is None:
                raise ValidationError("mask_url" if req.mask_url is None else "prompt", "inpaint needs prompt and mask_url (white = repaint)")
            if req.zoom is not None:
                raise ValidationError("zoom", "only a custom zoom takes a zoom factor")
            params["mask"] = self._inputs.resolve(req.mask_url, "mask_url", own_bases).to_json()
        else:  # custom zoom
            if req.mask_url is not None:
                raise ValidationError("mask_url", "only an inpaint takes a mask")
            zoom = req.zoom if req.zoom is not None else (parse_prompt(req.prompt).zoom if req.prompt else None)
            if zoom is None:
                raise ValidationError("zoom", "a custom zoom needs a zoom factor 1-2 (zoom, or --zoom in prompt)")
            params["zoom"] = zoom
        queued = self._store.submit_modal(
            task.id, principal.tenant_id, prompt=prompt_text, final_prompt=final_prompt, params=params,
            limits=lambda lane: self._service.admission.lane_limits(principal, lane),
        )
        if queued is None:  # expired or cancelled between the read and the update
            current = self._service.get(principal, task.id)
            raise ValidationError("task_id", f"task {task.id} is {current.status.value}; /modal only continues a task waiting in MODAL")
        return queued

    # --- buttons -----------------------------------------------------------------------------------

    def _press(self, principal: Principal, custom_id: str, task_id: str | None, delivery: Delivery) -> tuple[Action, Delivery]:
        press = parse_custom_id(custom_id, task_id)
        parent = self._service.get(principal, press.task_id)
        op = find_button(parent, custom_id).operation
        shared = delivery.model_dump(include=set(Delivery.model_fields), exclude_none=True)
        fields = {**shared, **op.fields, "task_id": parent.id}
        if op.action is Action.VIDEO:
            fields["index"] = 0  # the single picture of an upscale (video counts from 0)
        request = validated(OPERATION_BODIES[op.action.value.lower()], fields)
        assert isinstance(request, Delivery)  # every action a button presses takes a Delivery body (only /modal's does not)
        return op.action, request

    def _pressed(self, principal: Principal, custom_id: str, task_id: str | None, req: Delivery, *, expect: Action) -> Delivery:
        action, request = self._press(principal, custom_id, task_id, req)
        if action is not expect:
            raise ValidationError("custom_id", f"'{custom_id}' is a {action.value.lower()} button; send it to /{action.value.lower()} or /action")
        return request

    # --- planning --------------------------------------------------------------------------------

    def _plan_and_accept(self, principal: Principal, action: Action, req: Delivery, own_bases: Sequence[str], claim: Claim | None) -> Task:
        plan = getattr(self, f"_plan_{action.value.lower()}")
        new: NewTask = plan(principal, req, own_bases)
        return self._service.admission.accept([new], principal, claim)[0]

    def _source(self, principal: Principal, task_id: str | None, index: int | None, doing: str) -> tuple[Task, dict[str, Any], int]:
        """The parent task and the stored picture an operation starts from, with its index."""
        if task_id is None:
            raise ValidationError("task_id", f"give the task whose picture to {doing} (task_id), or a custom_id")
        parent = self._service.get(principal, task_id)
        if parent.status is not TaskStatus.SUCCESS:
            raise ValidationError("task_id", f"task {parent.id} is {parent.status.value}; wait until it is SUCCESS")
        result = parent.result
        if not parent.action.makes_image or result is None or not result.image_keys:
            raise ValidationError("task_id", f"task {parent.id} is a {parent.action.value} task; it has no picture to {doing}")
        if parent.action.makes_grid:
            if index is None:
                raise ValidationError("index", f"task {parent.id} is a grid: say which image (1-4)")
            if index > len(result.image_keys):
                raise ValidationError("index", f"task {parent.id} has {len(result.image_keys)} images; there is no image {index}")
        elif index not in (None, 1):
            raise ValidationError("index", f"task {parent.id} has one picture; leave index out (or 1)")
        index = index or 1
        if not result.published(index):
            raise ValidationError("index" if parent.action.makes_grid else "task_id",
                                  f"image {index} of task {parent.id} was kept back by output screening; pick a published image")
        source = {"key": result.image_keys[index - 1], "width": result.width, "height": result.height}
        return parent, source, index

    def _engine_of(self, parent: Task | None, requested: str | None) -> str:
        if parent is None:
            return self._service.engine_name(requested)
        if requested is not None and requested != parent.engine:
            raise ValidationError("engine", f"a follow-up runs on its parent's engine ({parent.engine}), not on {requested}")
        try:
            return self._service.engine_for(parent.engine)
        except EngineUnavailable as exc:
            # Only this parent's work is stuck, not the deployment: callers may tell the two apart.
            raise EngineUnavailable(exc.description, properties={**exc.properties, "follow_up": True}) from None

    def _task(
        self,
        principal: Principal,
        req: Delivery,
        own_bases: Sequence[str],
        action: Action,
        parent: Task | None,
        params: dict[str, Any],
        *,
        index: int | None = None,
        variant: str | None = None,
        units: int = 1,
        prompt: str | None = None,
        final_prompt: str | None = None,
        seed: int | None = None,
        modal: bool = False,
    ) -> NewTask:
        seed = _new_seed() if seed is None else seed
        speed = parent.params.get("speed") if parent else None
        key = self._prices.tiered(price_key(action, variant=variant), speed)
        inherited: dict[str, Any] = {
            k: parent.params[k] for k in ("engine_prompt", "engine_negative", "speed") if parent and k in parent.params
        }
        return NewTask(
            tenant_id=principal.tenant_id,
            action=action,
            prompt=parent.prompt if prompt is None and parent else (prompt or ""),
            final_prompt=final_prompt if final_prompt is not None else _reseeded(parent.final_prompt if parent else "", seed),
            params=with_client_labels({**inherited, **params, "price_key": key, "output_profile": self._service.output_profile(principal, req)}, req),
            engine=self._engine_of(parent, req.engine),
            seed=seed,
            quota=self._prices.units(key, units),
            parent_task_id=parent.id if parent else None,
            index=index,
            max_attempts=self._settings.max_attempts,
            api_key_id=principal.key_id,
            modal=modal,
            **self._service.delivery(principal, req, own_bases),
        )

    def _plan_upscale(self, principal: Principal, req: UpscaleRequest, own_bases: Sequence[str]) -> NewTask:
        parent, source, index = self._source(principal, req.task_id, req.index, "upscale")
        if req.mode is None and not parent.action.makes_grid:
            raise ValidationError("task_id", f"task {parent.id} is a single picture already; upscale it with mode subtle or creative")
        if req.mode is not None and parent.params.get("upscale_mode") is not None:
            raise ValidationError("mode", f"task {parent.id} is already a {parent.params['upscale_mode']} upscale")
        factor = 2 if req.mode else 1
        width, height = source["width"] * factor, source["height"] * factor
        if req.mode and max(width, height) > MAX_SIDE:
            raise ValidationError("mode", f"a 2× upscale of {source['width']}x{source['height']} is larger than {MAX_SIDE} px")
        params = {"source": source, "upscale_mode": req.mode, "width": width, "height": height}
        return self._task(principal, req, own_bases, Action.UPSCALE, parent, params, index=index, variant=req.mode,
                          seed=parent.seed if req.mode is None else None)

    def _picture(
        self, principal: Principal, req: VariationRequest | InpaintRequest, own_bases: Sequence[str], doing: str
    ) -> tuple[Task | None, dict[str, Any], int | None]:
        """The picture an operation starts from: a finished task's (task_id + index), or any image
        (``image_url``, fetched and screened like every input)."""
        if req.image_url is None:
            return self._source(principal, req.task_id, req.index, doing)
        if req.task_id is not None or req.index is not None:
            raise ValidationError("image_url", "give image_url, or task_id + index, not both")
        source = self._inputs.resolve(req.image_url, "image_url", own_bases, screen_for=principal.tenant_id).to_json()
        return None, source, None

    def _plan_variation(self, principal: Principal, req: VariationRequest, own_bases: Sequence[str]) -> NewTask:
        parent, source, index = self._picture(principal, req, own_bases, "vary")
        mode = req.mode or "strong"
        params: dict[str, Any] = {"source": source, "mode": mode, "strength": VARIATION_STRENGTH[mode],
                                  "width": source["width"], "height": source["height"]}
        prompt = final = None
        seed = _new_seed()
        if req.prompt is not None:  # remix: the new prompt steers the variation
            remix = parse_prompt(req.prompt)
            params.update(engine_prompt=remix.positive_text, engine_negative=remix.negative_text, remix=True)
            prompt, final = req.prompt, replace(remix, seed=seed).canonical()
        return self._task(principal, req, own_bases, Action.VARIATION, parent, params, index=index, prompt=prompt, final_prompt=final, seed=seed)

    def _plan_reroll(self, principal: Principal, req: RerollRequest, own_bases: Sequence[str]) -> NewTask:
        if req.task_id is None:
            raise ValidationError("task_id", "give the task to run again (task_id), or a custom_id")
        parent = self._service.get(principal, req.task_id)
        if parent.status is not TaskStatus.SUCCESS or not parent.action.makes_grid:
            raise ValidationError("task_id", f"task {parent.id} ({parent.action.value}, {parent.status.value}) is not a finished grid to reroll")
        # The same job again with a new seed: whatever made the parent's grid makes this one.
        rerun = parent.params.get("rerun", parent.action.value)
        params = {**parent.params, "rerun": rerun}
        params.pop("cache_hit", None)
        return self._task(principal, req, own_bases, Action.REROLL, parent, params)

    def _plan_zoom(self, principal: Principal, req: ZoomRequest, own_bases: Sequence[str]) -> NewTask:
        if (req.zoom is None) == (not req.custom):
            raise ValidationError("zoom", "give zoom (1-2), or custom: true to supply it through /modal")
        parent, source, index = self._source(principal, req.task_id, req.index, "zoom out of")
        params: dict[str, Any] = {"source": source, "zoom": req.zoom, "width": source["width"], "height": source["height"]}
        return self._task(principal, req, own_bases, Action.ZOOM, parent, {**params, **self._steer(req.prompt)},
                          index=index, modal=bool(req.custom))

    def _plan_pan(self, principal: Principal, req: PanRequest, own_bases: Sequence[str]) -> NewTask:
        parent, source, index = self._source(principal, req.task_id, req.index, "pan")
        width, height = pan_size(source["width"], source["height"], req.direction)
        if max(width, height) > MAX_SIDE:
            raise ValidationError("direction", f"panning {req.direction} would make the picture {width}x{height}; the limit is {MAX_SIDE} px")
        params = {"source": source, "direction": req.direction, "width": width, "height": height}
        return self._task(principal, req, own_bases, Action.PAN, parent, {**params, **self._steer(req.prompt)}, index=index)

    def _plan_inpaint(self, principal: Principal, req: InpaintRequest, own_bases: Sequence[str]) -> NewTask:
        """Without a mask the task waits in MODAL for /modal (Midjourney's Vary (Region)); with
        mask_url and prompt it is queued at once, which any picture (image_url) needs."""
        if req.mask_url is None and req.image_url is not None:
            raise ValidationError("mask_url", "repainting image_url needs mask_url and prompt (white = repaint)")
        if (req.mask_url is None) != (req.prompt is None):
            raise ValidationError("prompt" if req.prompt is None else "mask_url", "give mask_url and prompt together, or neither (then /modal brings them)")
        parent, source, index = self._picture(principal, req, own_bases, "vary a region of")
        params: dict[str, Any] = {"source": source, "width": source["width"], "height": source["height"]}
        if req.mask_url is None:
            return self._task(principal, req, own_bases, Action.INPAINT, parent, params, index=index, modal=True)
        assert req.prompt is not None
        params["mask"] = self._inputs.resolve(req.mask_url, "mask_url", own_bases).to_json()
        painted = parse_prompt(req.prompt)
        seed = _new_seed()
        params.update(engine_prompt=painted.positive_text, engine_negative=painted.negative_text)
        return self._task(principal, req, own_bases, Action.INPAINT, parent, params, index=index,
                          prompt=req.prompt, final_prompt=replace(painted, seed=seed).canonical(), seed=seed)

    def _plan_video(self, principal: Principal, req: VideoRequest, own_bases: Sequence[str]) -> NewTask:
        parent: Task | None = None
        index: int | None = None
        if req.task_id is not None:
            if req.image_url is not None:
                raise ValidationError("image_url", "give image_url or task_id + index, not both")
            parent, source, index = self._source(principal, req.task_id, None if req.index is None else req.index + 1, "animate")
        elif req.image_url is not None:
            source = self._inputs.resolve(req.image_url, "image_url", own_bases, screen_for=principal.tenant_id).to_json()
        else:
            raise ValidationError("image_url", "give the first frame: image_url, or task_id + index (0-3)")
        start_end = "start_end" in req.video_type
        if start_end != (req.end_url is not None):
            raise ValidationError("end_url", f"{req.video_type} {'needs' if start_end else 'takes no'} end_url")
        end = self._inputs.resolve(req.end_url, "end_url", own_bases, screen_for=principal.tenant_id).to_json() if req.end_url else None
        quality = req.video_type.rsplit("_", 1)[1]
        width, height = video_size(source["width"], source["height"], VIDEO_SHORT_SIDE[quality])
        params = {
            "source": source, "end": end, "batch_size": req.batch_size, "video_type": req.video_type, "motion": req.motion,
            "width": width, "height": height, "fps": self._settings.video_fps,
            "frames": max(1, round(self._settings.video_seconds * self._settings.video_fps)),
            **self._steer(req.prompt),
        }
        return self._task(principal, req, own_bases, Action.VIDEO, parent, params, index=None if index is None else index - 1,
                          variant="720p" if quality == "720" else None, units=req.batch_size,
                          prompt=req.prompt if parent is None else None)

    def _plan_describe(self, principal: Principal, req: DescribeRequest, own_bases: Sequence[str]) -> NewTask:
        parent: Task | None = None
        index = None
        if (req.image_url is None) == (req.task_id is None):
            raise ValidationError("image_url", "give image_url, or task_id (+ index on a grid)")
        if req.task_id is not None:
            parent, source, index = self._source(principal, req.task_id, req.index, "describe")
        else:
            assert req.image_url is not None
            source = self._inputs.resolve(req.image_url, "image_url", own_bases, screen_for=principal.tenant_id).to_json()
        # Seed 004: a describe's text is in description; its prompt field stays empty.
        return self._task(principal, req, own_bases, Action.DESCRIBE, parent, {"source": source}, index=index, prompt="", final_prompt="")

    def _plan_blend(self, principal: Principal, req: BlendRequest, own_bases: Sequence[str]) -> NewTask:
        images = [self._inputs.resolve(url, f"image_urls[{i}]", own_bases, screen_for=principal.tenant_id).to_json()
                  for i, url in enumerate(req.image_urls)]
        width, height = BLEND_RATIOS[req.dimensions].size(self._settings.image_size)
        params = {"inputs": {"image_urls": images}, "dimensions": req.dimensions, "width": width, "height": height,
                  "engine_prompt": "", "engine_negative": "", **self._steer(req.prompt)}
        seed = req.seed if req.seed is not None else _new_seed()
        final = replace(parse_prompt(req.prompt), seed=seed).canonical() if req.prompt else ""
        return self._task(principal, req, own_bases, Action.BLEND, None, params, prompt=req.prompt or "", final_prompt=final, seed=seed)

    def _plan_shorten(self, principal: Principal, req: ShortenRequest, own_bases: Sequence[str]) -> NewTask:
        prompt = parse_prompt(req.prompt)  # a prompt that does not parse is refused now, not in the worker
        return self._task(principal, req, own_bases, Action.SHORTEN, None, {}, prompt=req.prompt, final_prompt=prompt.canonical())

    @staticmethod
    def _steer(prompt: str | None) -> dict[str, Any]:
        """Engine prompt fields from an optional prompt that steers an operation."""
        if prompt is None:
            return {}
        parsed: Prompt = parse_prompt(prompt)
        return {"engine_prompt": parsed.positive_text, "engine_negative": parsed.negative_text}

