from __future__ import annotations

import pytest

from pixelmill.exceptions import InvalidTransition
from pixelmill.tasks.status import TERMINAL, TaskStatus, can_transition, check_transition, sources_of


def test_terminal_statuses_go_nowhere() -> None:
    for status in TERMINAL:
        assert status.is_terminal
        assert not any(can_transition(status, target) for target in TaskStatus)


def test_the_documented_happy_path_and_recoveries() -> None:
    path = [TaskStatus.SUBMITTED, TaskStatus.IN_PROGRESS, TaskStatus.SUCCESS]
    for a, b in zip(path, path[1:], strict=False):
        check_transition(a, b)
    check_transition(TaskStatus.IN_PROGRESS, TaskStatus.NOT_START)  # retry after backoff
    check_transition(TaskStatus.IN_PROGRESS, TaskStatus.SUBMITTED)  # lease expired
    check_transition(TaskStatus.MODAL, TaskStatus.CANCEL)


def test_forbidden_transition_raises() -> None:
    with pytest.raises(InvalidTransition, match="SUBMITTED to SUCCESS"):
        check_transition(TaskStatus.SUBMITTED, TaskStatus.SUCCESS)


def test_sources_of_success_is_only_a_running_task() -> None:
    assert sources_of(TaskStatus.SUCCESS) == {TaskStatus.IN_PROGRESS}
    assert sources_of(TaskStatus.IN_PROGRESS) == {TaskStatus.NOT_START, TaskStatus.SUBMITTED}
