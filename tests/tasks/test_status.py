from __future__ import annotations

import itertools

from pixelmill.tasks.status import TERMINAL, TaskStatus, can_transition, sources_of


def test_terminal_statuses_go_nowhere_but_a_rejected_success() -> None:
    for status in TERMINAL:
        assert status.is_terminal
        allowed = {target for target in TaskStatus if can_transition(status, target)}
        assert allowed == ({TaskStatus.FAILURE} if status is TaskStatus.SUCCESS else set())


def test_the_documented_happy_path_and_recoveries() -> None:
    path = [TaskStatus.SUBMITTED, TaskStatus.IN_PROGRESS, TaskStatus.SUCCESS]
    for a, b in itertools.pairwise(path):
        assert can_transition(a, b)
    assert can_transition(TaskStatus.IN_PROGRESS, TaskStatus.NOT_START)  # retry after backoff
    assert can_transition(TaskStatus.IN_PROGRESS, TaskStatus.SUBMITTED)  # lease expired
    assert can_transition(TaskStatus.MODAL, TaskStatus.CANCEL)


def test_skipping_the_worker_is_forbidden() -> None:
    assert not can_transition(TaskStatus.SUBMITTED, TaskStatus.SUCCESS)
    assert not can_transition(TaskStatus.NOT_START, TaskStatus.SUCCESS)


def test_sources_of_success_is_only_a_running_task() -> None:
    assert sources_of(TaskStatus.SUCCESS) == {TaskStatus.IN_PROGRESS}
    assert sources_of(TaskStatus.IN_PROGRESS) == {TaskStatus.NOT_START, TaskStatus.SUBMITTED}
