"""Accepting tasks: turn a validated request into a queued task row, or a precise refusal."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from pixelmill.auth.keys import Principal
from pixelmill.billing.prices import PriceTable
from pixelmill.exceptions import EngineUnavailable, TaskNotFound, ValidationError
from pixelmill.media.fetch import FetchRefused
from pixelmill.media.inputs import FILES_PATH, InputImages
from pixelmill.media.output import output_profiles
from pixelmill.notify.outbox import WebhookTarget
from pixelmill.prompts.grammar import Prompt
from pixelmill.prompts.params import MAX_SEED
from pixelmill.queue.listing import Page, TaskQuery
from pixelmill.queue.store import TaskStore
from pixelmill.settings import Settings
from pixelmill.submit.admission import Admission
from pixelmill.tasks.actions import Action, Lane
from pixelmill.tasks.cache import request_keys
from pixelmill.tasks.idempotency import Claim
from pixelmill.tasks.pricing import price_key
from pixelmill.tasks.record import NewTask, Task
from pixelmill.tasks.requests import DEFAULT_WEBHOOK_EVENTS, MAX_SIDE, Delivery, ImagineRequest, with_client_labels
from pixelmill.tasks.status import TaskStatus
from pixelmill.templates.store import TemplateStore
from pixelmill.templates.use import reader_of, render_request


class TaskService:
    """Reading tasks, and planning submits: an imagine (template, prompt, inputs, cache, price)
    becomes new tasks that ``admission`` accepts. Operations, batches and evaluations plan with
    the same helpers (engine, output profile, delivery) and are accepted the same way."""

    def __init__(
        self,
        store: TaskStore,
        settings: Settings,
        engines: Mapping[str, str],
        inputs: InputImages,
        prices: PriceTable,
        admission: Admission,
        storage_has: Callable[[str], bool],
        templates: TemplateStore | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        #: Engine name → model version of every engine this deployment runs.
        self._engines = engines
        self._inputs = inputs
        #: Webhook targets pass the same address rules as input images.
        self._check_target = inputs.fetcher.check_url
        self._prices = prices
        self.admission = admission
        #: Whether a stored object still exists: a cache hit must not point at deleted files.
        self._storage_has = storage_has
        self._templates = templates

    def get(self, principal: Principal, task_id: str) -> Task:
        # Another tenant's task answers exactly like an unknown one.
        task = self._store.get(task_id, tenant_id=principal.tenant_id)
        if task is None:
            raise TaskNotFound(task_id, expired=self._store.expired(task_id, principal.tenant_id))
        return task

    def watch(self, principal: Principal, task_id: str) -> None:
        """Someone watches the task (its event stream): the engine's previews are stored."""
        self._store.watch(task_id, principal.tenant_id)

    def star(self, principal: Principal, task_id: str, on: bool) -> None:
        """Star or unstar one of the caller's tasks (404 when it has none such)."""
        if not self._store.star(task_id, principal.tenant_id, on):
            raise TaskNotFound(task_id, expired=self._store.expired(task_id, principal.tenant_id))

    def get_many(self, principal: Principal, task_ids: Sequence[str]) -> list[Task]:
        """The caller's tasks among ``task_ids``; others' and unknown ones are left out alike."""
        return self._store.get_many(task_ids, principal.tenant_id)

    def recent(self, principal: Principal, limit: int) -> list[Task]:
        return self._store.recent(principal.tenant_id, limit)

    def page(self, principal: Principal, query: TaskQuery, *, limit: int, cursor: str | None = None) -> Page:
        """The caller's tasks matching ``query``, newest first, ``limit`` at a time."""
        return self._store.page(principal.tenant_id, query, limit=limit, cursor=cursor)

    def cancel(self, principal: Principal, task_id: str) -> Task:
        task = self._store.cancel(task_id, principal.tenant_id)
        if task is not None:
            return task
        current = self.get(principal, task_id)  # unknown → 404
        raise ValidationError("task_id", f"task {task_id} is already {current.status.value}; only unfinished work can be cancelled")

    # --- submitting ------------------------------------------------------------------------------

    def imagine(
        self,
        principal: Principal,
        req: ImagineRequest,
        own_bases: Sequence[str] = (),
        *,
        idempotency_key: str | None = None,
        allow_cache: bool = False,
    ) -> list[Task]:
        """Accept an imagine: one task, or one per run with ``--repeat``, queued all or none.

        ``own_bases`` are the base URLs this server is reached by: image URLs under them are read
        from storage instead of fetched. ``allow_cache`` (or ``cache: true`` in the body) lets a
        request without a seed be answered by an earlier result of the same request."""
        return self.admission.guarded_submit(
            principal, "imagine", req, idempotency_key,
            lambda claim: self._imagine(principal, req, own_bases, claim, allow_cache or bool(req.cache)),
        )

    def queue_position(self, task: Task) -> int | None:
        return self._store.queue_position(task)

    def _imagine(
        self, principal: Principal, req: ImagineRequest, own_bases: Sequence[str], claim: Claim | None, allow_cache: bool
    ) -> list[Task]:
        return self.admission.accept(self.plan_imagine(principal, req, own_bases, allow_cache=allow_cache), principal, claim)

    def plan_imagine(
        self,
        principal: Principal,
        req: ImagineRequest,
        own_bases: Sequence[str],
        *,
        allow_cache: bool,
        batch: tuple[str, int] | None = None,
        trusted: tuple[str, ...] = (),
    ) -> list[NewTask | Task]:
        """The tasks an imagine asks for: new ones, cache hits born finished, or running tasks
        to coalesce onto. ``batch`` (id, index) puts them in the batch lane as part of a batch
        job, which owns its tasks: nothing is coalesced onto other work."""
        req, template = self.apply_template(principal, req, trusted=trusted)
        prompt = req.to_prompt()
        assert req.prompt is not None  # to_prompt() refuses a request whose template was not rendered
        if prompt.zoom is not None:
            raise ValidationError("prompt", "--zoom belongs to a custom zoom's /modal call, not to imagine")
        delivery = self.delivery(principal, req, own_bases)
        if batch is not None:
            delivery.update(lane=Lane.BATCH, batch_id=batch[0], batch_index=batch[1])
        elif prompt.speed == "relax" and req.lane is None:
            delivery.update(lane=Lane.BATCH)  # relax work waits for spare capacity
        base = self._settings.image_size * (2 if prompt.hd else 1)
        width, height = req.pixel_size() or prompt.aspect.size(base)
        if max(width, height) > MAX_SIDE * 2:
            raise ValidationError("hd", f"{width}x{height} is more than engines render; lower PIXELMILL_IMAGE_SIZE or drop --hd")
        engine = self.engine_name(req.engine)
        profile = self.output_profile(principal, req)
        runs = prompt.repeat or 1
        # The network work comes last: every cheap check above has passed by now.
        prompt, inputs = self._take_inputs(prompt, req, own_bases, principal.tenant_id)
        key = self._prices.tiered(price_key(Action.IMAGINE, prompt.niji), prompt.speed)
        # Every task gets a concrete seed, so every result can be reproduced. Repeats of a given
        # seed step by 4: each grid's four images keep seeds of their own (see image_seeds).
        first = prompt.seed
        plan: list[NewTask | Task] = []
        for run in range(runs):
            seed = (first + 4 * run) % (MAX_SEED + 1) if first is not None else secrets.randbelow(MAX_SEED + 1)
            one = replace(prompt, seed=seed, repeat=None)
            cache_key, prompt_key = request_keys(
                Action.IMAGINE.value, one, width, height, engine, self._engines[engine], inputs, profile,
                template=template and {"name": template["name"], "version": template["version"], "content_hash": template["content_hash"]},
            )
            new = NewTask(
                tenant_id=principal.tenant_id,
                action=Action.IMAGINE,
                prompt=req.prompt,
                final_prompt=one.canonical(),
                params=with_client_labels({
                    **one.params(),
                    "engine_prompt": prompt.positive_text,
                    "engine_negative": prompt.negative_text,
                    "width": width,
                    "height": height,
                    "inputs": inputs,
                    "price_key": key,
                    "repeat": {"run": run + 1, "of": runs} if prompt.repeat else None,
                    "output_profile": profile,
                    "template": template,
                }, req),
                engine=engine,
                seed=seed,
                quota=self._prices.units(key),
                max_attempts=self._settings.max_attempts,
                api_key_id=principal.key_id,
                cache_key=cache_key,
                prompt_key=prompt_key,
                **delivery,
            )
            # A given seed names exact pixels: an earlier equal request is the same answer. No
            # seed: only when the caller allows it, and never for --repeat (it asks for variety).
            if first is not None:
                plan.append(self._reuse(new, cache_key=cache_key))
            elif allow_cache and runs == 1:
                plan.append(self._reuse(new, prompt_key=prompt_key))
            else:
                plan.append(new)
        return plan

    def apply_template(
        self, principal: Principal, req: ImagineRequest, *, trusted: tuple[str, ...] = ()
    ) -> tuple[ImagineRequest, dict[str, Any] | None]:
        """An imagine naming a template, rendered (its text moderated like any prompt), with
        what the task records of it; a free prompt as it is, where the key allows free prompts."""
        if req.template is None:
            if principal.require_template:
                raise ValidationError("prompt", "this API key submits templates only: give template and variables instead of prompt")
            return req, None
        if self._templates is None:
            raise ValidationError("template", "templates are not available on this server")
        rendered = render_request(self._templates, req, req.subject_id or principal.key_id, reader=reader_of(principal), trusted=trusted)
        # Checked, not counted here: guarded_submit counts every code 24 raised under it once.
        self.admission.moderator.check_request(principal.tenant_id, rendered.request)
        return rendered.request, rendered.info

    def delivery(self, principal: Principal, req: Delivery, own_bases: Sequence[str]) -> dict[str, Any]:
        """Lane, priority and webhook of a task-to-be, as ``NewTask`` fields."""
        url = req.webhook_url or principal.webhook_url
        if url is None and req.webhook_events is not None:
            raise ValidationError("webhook_events", "needs webhook_url (or a default webhook on the API key)")
        webhook = None
        if url is not None:
            if req.webhook_url is not None:  # a key's default was checked when it was set
                self.check_webhook_url(req.webhook_url, "webhook_url")
            events = req.webhook_events or (None if req.webhook_url else principal.webhook_events) or DEFAULT_WEBHOOK_EVENTS
            base = own_bases[0] if own_bases else (self._settings.public_url or "")
            webhook = WebhookTarget(url, tuple(dict.fromkeys(events)), base, req.webhook_format or "pixelmill").to_json()
        # Watched from the start: previews asked for, or a webhook that hears progress (its
        # events carry preview_url).
        watched = bool(req.previews) or bool(webhook and "progress" in webhook["events"])
        return {"lane": Lane(req.lane or Lane.INTERACTIVE.value), "priority": req.priority or 0, "webhook": webhook, "watched": watched}

    def check_webhook_url(self, url: str, field: str) -> None:
        try:
            self._check_target(url)
        except FetchRefused as exc:
            raise ValidationError(field, f"{url}: {exc.reason}") from None

    def _reuse(self, new: NewTask, **key: str) -> NewTask | Task:
        """A cache hit (a finished copy of an earlier SUCCESS), the running task to coalesce onto,
        or ``new`` unchanged."""
        found = self._store.find_reusable(new.tenant_id, **key)
        if found is None:
            return new
        if found.status is not TaskStatus.SUCCESS:
            # Identical work is queued or running: share it, unless this request's events go
            # elsewhere (it would never hear of them) or it belongs to a batch (which owns its tasks).
            shareable = found.webhook == new.webhook and new.batch_id is None and found.lane is new.lane
            return found if shareable else new
        if found.result is None or not all(self._storage_has(k) for k in (found.result.grid_key, *found.result.image_keys) if k):
            return new  # its files are gone (retention): generate again
        if found.result.screening:
            return new  # images held or blocked: reviews belong to one task, so this one is screened on its own
        return replace(
            new,
            final_prompt=found.final_prompt,
            seed=found.seed,
            params={**new.params, "seed": found.seed, "cache_hit": found.id},
            quota=new.quota if self._settings.cache_hit_charge == "full" else 0,
            cached=found.result,
        )

    def _take_inputs(
        self, prompt: Prompt, req: ImagineRequest, own_bases: Sequence[str], tenant_id: str
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
                self._inputs.resolve(url, f"{name}[{i}]" if from_body else "prompt", own_bases, screen_for=tenant_id).to_json()
                for i, url in enumerate(urls)
            ]
            absolute[name] = tuple(own_bases[0] + u if u.startswith(FILES_PATH) and own_bases else u for u in urls)
        return replace(prompt, image_urls=absolute["image_urls"], sref=absolute["sref"], cref=absolute["cref"]), inputs

    def output_profile(self, principal: Principal, req: Delivery) -> str:
        """The profile the task's images are written with (checked now, used by the worker): the
        request's, else the key's default, else the deployment's."""
        name = req.output_profile or principal.output_profile or self._settings.output_profile
        if name not in output_profiles(self._settings):
            raise ValidationError("output_profile", f"'{name}' is not one of {', '.join(output_profiles(self._settings))}")
        return name

    def engine_name(self, requested: str | None = None) -> str:
        """The engine a new task runs on: the one asked for, else the deployment's default."""
        if requested is not None and requested not in self._settings.engines:
            raise ValidationError("engine", f"'{requested}' is not one of this deployment's engines: {', '.join(self._settings.engines)}")
        return self.engine_for(requested or self._settings.engine)

    def engine_for(self, name: str) -> str:
        """``name`` when this deployment runs that engine (follow-ups run where their parent ran)."""
        if name not in self._engines:
            # Clients retry code 3 later unless the text mentions a task (seed 004), so no "task" here.
            raise EngineUnavailable(f"no {name} engine instance is available right now; retry later", properties={"engine": name})
        return name
