"""Structured logs (structlog) for every logger of the process, pixelmill's and libraries' alike.

One JSON object per line for machines, or aligned colourful lines for people on a terminal
(``PIXELMILL_LOG_FORMAT``). Context travels in context variables: the HTTP middleware binds a
``request_id`` (the caller's ``X-Request-ID`` or a new one), the submit path stores it on the task,
and a worker binds ``task_id``, ``tenant``, ``action``, ``engine``, ``attempt`` and that
``request_id`` while it runs the task, so every line of a task's life can be found by either id.
"""

from __future__ import annotations

import logging
import sys
import uuid

import structlog

REQUEST_ID_HEADER = "X-Request-ID"


def configure_logging(fmt: str = "auto", level: str = "INFO") -> None:
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    handler = logging.StreamHandler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        # Lines from plain ``logging`` calls (ours and libraries') get the same context and shape.
        foreign_pre_chain=[*shared, structlog.processors.format_exc_info],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info, renderer],
    ))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    # Alembic narrates every start ("Context impl SQLiteImpl.") at INFO: only its warnings matter.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))


def new_request_id(given: str | None) -> str:
    """The caller's id when it is a sane token, else a fresh one."""
    if given and len(given) <= 128 and given.isprintable() and " " not in given:
        return given
    return uuid.uuid4().hex[:16]


def current_request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value) if value is not None else None
