"""Every error pixelmill raises on purpose, as one tree. Each carries its wire answer.

    PixelmillError                 HTTP 500, code 9   (internal, retryable by clients)
    ├── AuthenticationError        HTTP 401, code 401
    ├── Forbidden                  HTTP 403, code 403 (an admin route called with a non-admin key)
    ├── InsufficientQuota          HTTP 402, code 402 (nothing was queued or charged)
    ├── ValidationError            HTTP 400, code 4   (description names the field and rule)
    ├── TaskNotFound               HTTP 404, code 3   (description contains "task")
    ├── BatchNotFound              HTTP 404, code 3
    ├── EngineUnavailable          HTTP 503, code 3   (description never contains "task")
    ├── StreamsFull                HTTP 503, code 9   (Retry-After; the process's open streams)
    ├── BackendUnavailable         HTTP 503, code 9   (Retry-After; database or store unreachable)
    ├── TooManyRequests            HTTP 429 (Retry-After)
    │   ├── QueueFull              code 23
    │   └── RateLimited            code 429
    ├── BannedPrompt               HTTP 400, code 24  (nothing charged; the term in properties)
    ├── IdempotencyInProgress      HTTP 409, code 409 (Retry-After; the first request is still
    │                              being accepted)
    ├── IdempotencyMismatch        HTTP 422, code 4   (the key was used with another body)
    ├── EngineError                raised by engines while generating; never reaches HTTP
    │                              (retryable or not, see ``retryable``)
    └── SettingsError              a setting that cannot work; stops the process at start, in
                                   one line naming the variable, its value and the rule

The HTTP envelope is made from these attributes in one place: ``api/errors.py``.
"""

from __future__ import annotations

from typing import Any


class PixelmillError(Exception):
    http_status: int = 500
    code: int = 9
    #: Seconds a client should wait before trying again (sent as ``Retry-After``), when known.
    retry_after: int | None = None

    def __init__(self, description: str, *, properties: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.properties = properties or {}


class AuthenticationError(PixelmillError):
    http_status = 401
    code = 401


class Forbidden(PixelmillError):
    http_status = 403
    code = 403


class InsufficientQuota(PixelmillError):
    http_status = 402
    code = 402


class ValidationError(PixelmillError):
    http_status = 400
    code = 4

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}", properties={"field": field})
        self.field = field
        self.rule = rule

    def within(self, prefix: str) -> ValidationError:
        """The same error for a field nested under ``prefix`` (``requests[3]`` + ``prompt``)."""
        return ValidationError(f"{prefix}.{self.field}", self.rule)


class BannedPrompt(PixelmillError):
    """The prompt (or a rendered template) asks for something this service will not make."""

    http_status = 400
    code = 24


class TaskNotFound(PixelmillError):
    http_status = 404
    code = 3

    def __init__(self, task_id: str, expired: bool = False) -> None:
        # Clients decide "do not retry" by finding the word "task" in this text (seed 004).
        text = f"task {task_id} expired: finished tasks and their files are kept for a limited time" if expired else f"task {task_id} does not exist"
        super().__init__(text, properties={"task_id": task_id, "expired": expired})


class BatchNotFound(PixelmillError):
    http_status = 404
    code = 3

    def __init__(self, batch_id: str) -> None:
        super().__init__(f"batch {batch_id} does not exist", properties={"batch_id": batch_id})


class EngineUnavailable(PixelmillError):
    http_status = 503
    code = 3


class StreamsFull(PixelmillError):
    """Every long-poll and event-stream place of this process is taken."""

    http_status = 503
    retry_after = 1


class BackendUnavailable(PixelmillError):
    """The database or the store could not be reached: nothing is wrong with the request."""

    http_status = 503
    retry_after = 1


class TooManyRequests(PixelmillError):
    """Come back later: answered with a ``Retry-After`` header."""

    http_status = 429

    def __init__(self, description: str, retry_after: int) -> None:
        super().__init__(description, properties={"retry_after": retry_after})
        self.retry_after = retry_after


class QueueFull(TooManyRequests):
    code = 23


class RateLimited(TooManyRequests):
    code = 429


class IdempotencyInProgress(PixelmillError):
    http_status = 409
    code = 409
    retry_after = 1


class IdempotencyMismatch(PixelmillError):
    http_status = 422
    code = 4


class EngineError(PixelmillError):
    """An engine could not produce images. ``retryable`` says whether trying again may help."""

    def __init__(self, description: str, *, retryable: bool) -> None:
        super().__init__(description)
        self.retryable = retryable


class NotFound(PixelmillError):
    """An admin resource (a review, a template, an evaluation) that does not exist."""

    http_status = 404
    code = 3


class Conflict(PixelmillError):
    """The resource is not in a state that allows this (a review already decided, a published
    template version edited)."""

    http_status = 409
    code = 4


class SettingsError(PixelmillError):
    """A setting that cannot work, found while the process starts; never reaches HTTP.

    ``str()`` is the one line an operator reads: ``PIXELMILL_X=<value>: <rule>``."""

    def __init__(self, variable: str, value: str, rule: str) -> None:
        super().__init__(f"{variable}={value}: {rule}")
        self.variable = variable
        self.value = value
        self.rule = rule
