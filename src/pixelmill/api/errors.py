"""The JSON envelope for every error, made in this one place.

Every answer that is not a task object is ``{"code", "description", "properties", "data"}``:
clients of the upstream contract read ``code`` and ``description`` from any failure, 429 included.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from pixelmill.exceptions import BackendUnavailable, NotFound, PixelmillError, ValidationError
from pixelmill.storage.base import StorageUnavailable
from pixelmill.tasks.requests import describe_errors

log = logging.getLogger("pixelmill.api")


class EnvelopeResponse(JSONResponse):
    """JSON that renders whatever text an error quotes back: a lone surrogate from the request
    (JSON can carry one) becomes a ``\\udXXX`` escape instead of an encoding failure."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "backslashreplace")


def envelope(code: int, description: str, *, properties: dict[str, Any] | None = None, data: Any = None) -> dict[str, Any]:
    return {"code": code, "description": description, "properties": properties or {}, "data": data if data is not None else []}


def error_response(exc: PixelmillError) -> Response:
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if exc.http_status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return EnvelopeResponse(
        envelope(exc.code, exc.description, properties=exc.properties),
        status_code=exc.http_status,
        headers=headers,
    )


#: How a contract answers an error: the envelope above for pixelmill's own API; /mj and
#: /v1/images register theirs (``contract_errors``) for the paths they serve.
ErrorRenderer = Callable[[PixelmillError], Response]
_RENDERERS: list[tuple[tuple[str, ...], ErrorRenderer]] = []


def contract_errors(prefixes: tuple[str, ...], render: ErrorRenderer) -> None:
    """Answer every error under these path prefixes with ``render``: refusals, bad bodies,
    unknown routes, unreachable backends and internal errors alike."""
    _RENDERERS.append((prefixes, render))


def _renderer(request: Request) -> ErrorRenderer:
    path = request.url.path
    for prefixes, render in _RENDERERS:
        if any(path == p or path.startswith(p + "/") for p in prefixes):
            return render
    return error_response


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PixelmillError)
    async def _pixelmill(request: Request, exc: PixelmillError) -> Response:
        if exc.http_status >= 500:
            log.error("request failed: %s", exc.description)
        return _renderer(request)(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        field, msg = describe_errors(exc.errors())
        return _renderer(request)(ValidationError(field, msg))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        render = _renderer(request)
        if exc.status_code == 404:
            return render(NotFound(f"no such endpoint: {request.method} {request.url.path}"))
        if render is error_response:
            code, text = 9 if exc.status_code >= 500 else 4, str(exc.detail)
            return EnvelopeResponse(envelope(code, text), status_code=exc.status_code, headers=exc.headers)
        error = PixelmillError(f"method {request.method} is not allowed on {request.url.path}" if exc.status_code == 405 else str(exc.detail))
        error.http_status, error.code = exc.status_code, 4
        return render(error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        if _unreachable(exc):
            # The database restarting or the store out of reach: nothing is wrong with the
            # request, and nothing was half done (every write is one transaction). Come back.
            log.warning("request failed, a backend is unreachable: %s: %s", type(exc).__name__, str(exc)[:300])
            return _renderer(request)(BackendUnavailable("a backend is unreachable for a moment; retry shortly"))
        log.exception("unhandled error")
        return _renderer(request)(PixelmillError("internal error; retry with backoff"))


def _unreachable(exc: BaseException) -> bool:
    """The database could not be reached (connection refused or lost, shutting down) or the
    store could not (``StorageUnavailable``)."""
    if isinstance(exc, StorageUnavailable):
        return True
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    return isinstance(exc, SATimeoutError)  # no pooled connection came free in time
