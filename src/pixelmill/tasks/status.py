"""Task lifecycle. The single place that says which status may follow which.

``queue/store.py`` applies these rules: every status update is a conditional ``UPDATE ... WHERE
status IN (<allowed sources>)`` built from ``sources_of()``, so two racing writers cannot both win.
"""

from __future__ import annotations

from enum import Enum


class TaskEvent(str, Enum):
    """What happened to a task, as observers (webhooks) see it. The store names the event in the
    same transaction as the change."""

    #: A worker claimed it: IN_PROGRESS (again, after a retry).
    START = "start"
    #: Its progress (or preview) moved.
    PROGRESS = "progress"
    #: It reached SUCCESS, FAILURE or CANCEL.
    COMPLETED = "completed"
    #: A finished task changed after a person decided on an image held for review.
    REVIEWED = "reviewed"
    #: A finished task gained the files made after SUCCESS: its images' renditions and provenance
    #: records (queue/finishing.py).
    FILES = "files"


class TaskStatus(str, Enum):
    #: Accepted, waiting for its scheduled time (the backoff before a retry). Claimable once
    #: ``scheduled_at`` has passed. → IN_PROGRESS, CANCEL, FAILURE
    NOT_START = "NOT_START"
    #: Queued in its lane; a worker has not claimed it yet. → IN_PROGRESS, CANCEL, FAILURE
    SUBMITTED = "SUBMITTED"
    #: Waiting for a ``/modal`` call to supply the rest of its input. → SUBMITTED, CANCEL
    MODAL = "MODAL"
    #: Claimed by a worker holding a lease. → SUCCESS, FAILURE, NOT_START (retry after backoff),
    #: SUBMITTED (lease expired, worker lost), CANCEL (the worker's late result is fenced out)
    IN_PROGRESS = "IN_PROGRESS"
    #: Terminal: results are available. → FAILURE only when a review rejects every image it held
    #: (refunded): the one change of a finished task.
    SUCCESS = "SUCCESS"
    #: Terminal: ``fail_reason`` says why; the charge is refunded.
    FAILURE = "FAILURE"
    #: Terminal: cancelled by the caller or by expiry; the charge is refunded.
    CANCEL = "CANCEL"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({TaskStatus.SUCCESS, TaskStatus.FAILURE, TaskStatus.CANCEL})
QUEUED = frozenset({TaskStatus.NOT_START, TaskStatus.SUBMITTED})
#: Accepted and not final yet: what counts against a key's concurrent-task cap.
ACTIVE = QUEUED | {TaskStatus.IN_PROGRESS}

_NEXT: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.NOT_START: frozenset({TaskStatus.IN_PROGRESS, TaskStatus.CANCEL, TaskStatus.FAILURE}),
    TaskStatus.SUBMITTED: frozenset({TaskStatus.IN_PROGRESS, TaskStatus.CANCEL, TaskStatus.FAILURE}),
    TaskStatus.MODAL: frozenset({TaskStatus.SUBMITTED, TaskStatus.CANCEL}),
    TaskStatus.IN_PROGRESS: frozenset(
        {TaskStatus.SUCCESS, TaskStatus.FAILURE, TaskStatus.NOT_START, TaskStatus.SUBMITTED, TaskStatus.CANCEL}
    ),
    TaskStatus.SUCCESS: frozenset({TaskStatus.FAILURE}),
    TaskStatus.FAILURE: frozenset(),
    TaskStatus.CANCEL: frozenset(),
}


def can_transition(source: TaskStatus, target: TaskStatus) -> bool:
    return target in _NEXT[source]


def sources_of(target: TaskStatus) -> frozenset[TaskStatus]:
    """Every status from which ``target`` may be reached."""
    return frozenset(s for s in TaskStatus if can_transition(s, target))
