"""Buttons: the follow-up operations a finished task offers, as Midjourney-style custom ids.

A custom id is ``MJ::JOB::<operation>::<index>::<task_id>``. Only operations pixelmill can
actually run are listed, so every button a client sees works.
"""

from __future__ import annotations

from dataclasses import dataclass

from pixelmill.exceptions import ValidationError
from pixelmill.tasks.actions import Action
from pixelmill.tasks.record import Task
from pixelmill.tasks.status import TaskStatus

_PREFIX = "MJ::JOB::"
_OPERATION_ACTIONS = {"upsample": Action.UPSCALE}


@dataclass(frozen=True)
class Button:
    custom_id: str
    label: str


@dataclass(frozen=True)
class ButtonPress:
    action: Action
    index: int
    task_id: str


def buttons_for(task: Task) -> list[Button]:
    if task.status is not TaskStatus.SUCCESS or not task.action.makes_grid:
        return []
    return [Button(f"{_PREFIX}upsample::{i}::{task.id}", f"U{i}") for i in range(1, 5)]


def parse_custom_id(custom_id: str) -> ButtonPress:
    parts = custom_id.split("::")
    if len(parts) != 5 or f"{parts[0]}::{parts[1]}::" != _PREFIX:
        raise ValidationError("custom_id", f"'{custom_id}' is not a button id (MJ::JOB::<op>::<n>::<task_id>)")
    _, _, operation, index, task_id = parts
    action = _OPERATION_ACTIONS.get(operation)
    if action is None:
        raise ValidationError("custom_id", f"operation '{operation}' is not supported")
    if not index.isdigit():
        raise ValidationError("custom_id", f"index '{index}' is not a number")
    return ButtonPress(action=action, index=int(index), task_id=task_id)
