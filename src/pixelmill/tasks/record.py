"""The task record: one frozen value read from one database row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pixelmill.tasks.actions import Action, Lane
from pixelmill.tasks.status import TaskStatus


@dataclass(frozen=True)
class TaskResult:
    """Storage keys of what a successful task produced (URLs are made at the edge)."""

    grid_key: str | None = None
    image_keys: tuple[str, ...] = ()
    width: int | None = None
    height: int | None = None
    #: MP4 clips of a video task (``image_keys`` then hold one poster per clip).
    video_keys: tuple[str, ...] = ()
    #: What the engine kept with the result (engine=remote: upstream task id and charge).
    meta: dict[str, Any] = field(default_factory=dict)
    #: Per image: its other files by name (web, thumb: smaller renditions; metadata: provenance JSON),
    #: made after SUCCESS (queue/finishing.py); {} until then.
    renditions: tuple[dict[str, str], ...] = ()
    #: Images screening did not simply pass, by index: {index, decision (block, review, approved,
    #: rejected), reasons, review_id}. Their ``image_keys`` / ``renditions`` entries are empty
    #: until a review approves them.
    screening: tuple[dict[str, Any], ...] = ()
    #: The model that made the images and when they were stored: their provenance records it.
    model: str | None = None
    created: str | None = None

    def published(self, index: int) -> bool:
        """Whether image ``index`` (1-based) is stored and shown."""
        return 0 < index <= len(self.image_keys) and bool(self.image_keys[index - 1])

    def unfinished(self) -> tuple[int, ...]:
        """Images (1-based) stored without their renditions and provenance record yet. A clip's
        poster has none."""
        if self.video_keys:
            return ()
        made = self.renditions
        return tuple(i for i, key in enumerate(self.image_keys, 1) if key and not (i <= len(made) and made[i - 1]))

    def to_json(self) -> dict[str, Any]:
        return {
            "grid_key": self.grid_key,
            "image_keys": list(self.image_keys),
            "width": self.width,
            "height": self.height,
            "video_keys": list(self.video_keys),
            "meta": self.meta,
            "renditions": list(self.renditions),
            "screening": list(self.screening),
            "model": self.model,
            "created": self.created,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> TaskResult | None:
        if not data:
            return None
        return cls(
            grid_key=data.get("grid_key"),
            image_keys=tuple(data.get("image_keys") or ()),
            width=data.get("width"),
            height=data.get("height"),
            video_keys=tuple(data.get("video_keys") or ()),
            meta=data.get("meta") or {},
            renditions=tuple(data.get("renditions") or ()),
            screening=tuple(data.get("screening") or ()),
            model=data.get("model"),
            created=data.get("created"),
        )


@dataclass(frozen=True)
class NewTask:
    """What the submit path hands to the store; the store fills in ids, times and queue state."""

    tenant_id: str
    action: Action
    prompt: str
    final_prompt: str
    params: dict[str, Any]
    engine: str
    seed: int | None
    quota: int
    lane: Lane = Lane.INTERACTIVE
    priority: int = 0
    parent_task_id: str | None = None
    index: int | None = None
    max_attempts: int = 3
    api_key_id: str | None = None
    cache_key: str | None = None
    prompt_key: str | None = None
    #: A cache hit: the task is born SUCCESS with this result, and never queued.
    cached: TaskResult | None = None
    #: Born MODAL: it waits for a ``/modal`` call (inpaint, custom zoom) before it is queued.
    modal: bool = False
    #: Where its events are delivered (``notify.webhooks.WebhookTarget.to_json``); None = nowhere.
    webhook: dict[str, Any] | None = None
    batch_id: str | None = None
    batch_index: int | None = None
    #: What accepting it took (``{"accept": ms}``); the worker adds the rest.
    stages: dict[str, float] | None = None
    #: The caller will watch it (asked for previews): previews are stored from the start.
    watched: bool = False


@dataclass(frozen=True)
class Task:
    id: str
    tenant_id: str
    action: Action
    status: TaskStatus
    progress: int
    prompt: str
    final_prompt: str
    description: str
    params: dict[str, Any]
    engine: str
    seed: int | None
    quota: int
    parent_task_id: str | None
    index: int | None
    result: TaskResult | None
    fail_reason: str | None
    submit_time: int
    start_time: int | None
    finish_time: int | None
    lane: Lane
    priority: int
    attempt: int
    max_attempts: int
    scheduled_at: int
    lease_owner: str | None
    lease_expires_at: int | None
    errors: tuple[dict[str, Any], ...] = field(default=())
    finalized_at: int | None = None
    api_key_id: str | None = None
    fair_seq: int = 0
    batch_id: str | None = None
    batch_index: int | None = None
    webhook: dict[str, Any] | None = None
    preview_key: str | None = None
    #: Milliseconds per stage so far (accept once accepted; the rest once it succeeded).
    stages: dict[str, float] = field(default_factory=dict)
    #: Someone watches it: the engine's previews are stored (observe nobody, pay nothing).
    watched: bool = False
    #: Its tenant starred it (the console's gallery).
    starred: bool = False

    @classmethod
    def from_row(cls, row: Any) -> Task:
        m = row._mapping
        return cls(
            id=m["id"],
            tenant_id=m["tenant_id"],
            action=Action(m["action"]),
            status=TaskStatus(m["status"]),
            progress=m["progress"],
            prompt=m["prompt"],
            final_prompt=m["final_prompt"],
            description=m["description"],
            params=m["params"] or {},
            engine=m["engine"],
            seed=m["seed"],
            quota=m["quota"],
            parent_task_id=m["parent_task_id"],
            index=m["image_index"],
            result=TaskResult.from_json(m["result"]),
            fail_reason=m["fail_reason"],
            submit_time=m["submit_time"],
            start_time=m["start_time"],
            finish_time=m["finish_time"],
            lane=Lane(m["lane"]),
            priority=m["priority"],
            attempt=m["attempt"],
            max_attempts=m["max_attempts"],
            scheduled_at=m["scheduled_at"],
            lease_owner=m["lease_owner"],
            lease_expires_at=m["lease_expires_at"],
            errors=tuple(m["errors"] or ()),
            finalized_at=m["finalized_at"],
            api_key_id=m["api_key_id"],
            fair_seq=m["fair_seq"],
            batch_id=m["batch_id"],
            batch_index=m["batch_index"],
            webhook=m["webhook"],
            preview_key=m["preview_key"],
            stages=dict(m["stages"] or {}) if "stages" in m else {},
            watched=bool(m["watched"]) if "watched" in m else False,
            starred=m["starred_at"] is not None if "starred_at" in m else False,
        )
