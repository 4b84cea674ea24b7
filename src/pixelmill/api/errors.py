"""The JSON envelope for every error, made in this one place.

Every answer that is not a task object is ``{"code", "description", "properties", "data"}``:
clients of the upstream contract read ``code`` and ``description`` from any failure, 429 included.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from pixelmill.exceptions import PixelmillError
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


def error_response(exc: PixelmillError) -> JSONResponse:
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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PixelmillError)
    async def _pixelmill(_: Request, exc: PixelmillError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("request failed: %s", exc.description)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        field, msg = describe_errors(exc.errors())
        return EnvelopeResponse(
            envelope(4, f"{field}: {msg}", properties={"field": field}), status_code=400
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            code, text = 3, f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            code, text = 4, f"method {request.method} is not allowed on {request.url.path}"
        else:
            code, text = 9 if exc.status_code >= 500 else 4, str(exc.detail)
        return EnvelopeResponse(envelope(code, text), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        if _unreachable(exc):
            # The database restarting or the store out of reach: nothing is wrong with the
            # request, and nothing was half done (every write is one transaction). Come back.
            log.warning("request failed, a backend is unreachable: %s: %s", type(exc).__name__, str(exc)[:300])
            return EnvelopeResponse(envelope(9, "a backend is unreachable for a moment; retry shortly"), status_code=503,
                                    headers={"Retry-After": "1"})
        log.exception("unhandled error")
        return EnvelopeResponse(envelope(9, "internal error; retry with backoff"), status_code=500)


def _unreachable(exc: BaseException) -> bool:
    """The database could not be reached (connection refused or lost, shutting down) or the
    store could not (``StorageUnavailable``)."""
    if isinstance(exc, StorageUnavailable):
        return True
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    return isinstance(exc, SATimeoutError)  # no pooled connection came free in time
