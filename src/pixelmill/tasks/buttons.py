"""Buttons: the follow-up operations a finished task offers, as Midjourney-style custom ids.

A custom id is ``MJ::JOB::<operation>::<index>::<task_id>``. The one rule for pressing one: a
button applies exactly when ``buttons_for(task)`` lists it, so every button a client sees works
and every other custom id is refused (code 4) before anything is charged.

- A grid (imagine, variation, reroll, zoom, pan, inpaint, blend): U1-U4, V1-V4 and reroll.
- A single picture (upscale): upscale subtle / creative (once), vary subtle / strong, vary region
  (inpaint), zoom out 2× / 1.5×, custom zoom, pan in four directions, animate low / high.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pixelmill.exceptions import ValidationError
from pixelmill.tasks.actions import Action
from pixelmill.tasks.record import Task
from pixelmill.tasks.status import TaskStatus

_PREFIX = "MJ::JOB::"


@dataclass(frozen=True)
class Operation:
    """What a button does: the action, and the request fields that make it this button."""

    name: str
    label: str
    action: Action
    fields: dict[str, Any] = field(default_factory=dict)
    #: The number in the custom id.
    number: int = 1


_GRID_OPS = [
    *(Operation("upsample", f"U{i}", Action.UPSCALE, {"index": i}, i) for i in range(1, 5)),
    *(Operation("variation", f"V{i}", Action.VARIATION, {"index": i}, i) for i in range(1, 5)),
    Operation("reroll", "🔄", Action.REROLL, number=0),
]
_UPSCALES = [
    Operation("upsample_subtle", "Upscale (Subtle)", Action.UPSCALE, {"mode": "subtle"}),
    Operation("upsample_creative", "Upscale (Creative)", Action.UPSCALE, {"mode": "creative"}),
]
_IMAGE_OPS = [
    Operation("low_variation", "Vary (Subtle)", Action.VARIATION, {"mode": "subtle"}),
    Operation("high_variation", "Vary (Strong)", Action.VARIATION, {"mode": "strong"}),
    Operation("inpaint", "Vary (Region)", Action.INPAINT),
    Operation("outpaint_2x", "Zoom Out 2x", Action.ZOOM, {"zoom": 2.0}),
    Operation("outpaint_1.5x", "Zoom Out 1.5x", Action.ZOOM, {"zoom": 1.5}),
    Operation("custom_zoom", "Custom Zoom", Action.ZOOM, {"custom": True}),
    *(Operation(f"pan_{d}", label, Action.PAN, {"direction": d}) for d, label in (("left", "⬅️"), ("right", "➡️"), ("up", "⬆️"), ("down", "⬇️"))),
    Operation("animate_low", "Animate (Low motion)", Action.VIDEO, {"motion": "low"}),
    Operation("animate_high", "Animate (High motion)", Action.VIDEO, {"motion": "high"}),
]


@dataclass(frozen=True)
class Button:
    custom_id: str
    label: str
    operation: Operation


def _button(op: Operation, task: Task) -> Button:
    return Button(f"{_PREFIX}{op.name}::{op.number}::{task.id}", op.label, op)


def buttons_for(task: Task) -> list[Button]:
    if task.status is not TaskStatus.SUCCESS or task.result is None:
        return []
    if task.action.makes_grid:
        # An image screened out of the grid (blocked, held for review) has no U/V button.
        return [_button(op, task) for op in _GRID_OPS if op.number == 0 or task.result.published(op.number)]
    if task.action is Action.UPSCALE and task.result.published(1):
        # A 2× upscale is not offered again: 4× the pixels of the grid is where engines stop.
        again = _UPSCALES if task.params.get("upscale_mode") is None else []
        return [_button(op, task) for op in [*again, *_IMAGE_OPS]]
    return []


@dataclass(frozen=True)
class ButtonPress:
    task_id: str
    custom_id: str


def parse_custom_id(custom_id: str, task_id: str | None = None) -> ButtonPress:
    """The task a custom id belongs to; whether it applies is ``find_button``'s to say."""
    parts = custom_id.split("::")
    if len(parts) != 5 or f"{parts[0]}::{parts[1]}::" != _PREFIX or not parts[4]:
        raise ValidationError("custom_id", f"'{custom_id}' is not a button id (MJ::JOB::<operation>::<n>::<task_id>)")
    if task_id is not None and task_id != parts[4]:
        raise ValidationError("custom_id", f"'{custom_id}' is a button of task {parts[4]}, not of {task_id}")
    return ButtonPress(task_id=parts[4], custom_id=custom_id)


def find_button(task: Task, custom_id: str) -> Button:
    for button in buttons_for(task):
        if button.custom_id == custom_id:
            return button
    if task.status is not TaskStatus.SUCCESS:
        raise ValidationError("custom_id", f"task {task.id} is {task.status.value}; its buttons work once it is SUCCESS")
    offered = ", ".join(b.label for b in buttons_for(task)) or "none"
    raise ValidationError("custom_id", f"'{custom_id}' does not apply to task {task.id} ({task.action.value}); its buttons: {offered}")
