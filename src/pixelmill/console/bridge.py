"""The console's way to the API: ``/console/api/v1/...`` is ``/v1/...`` for a signed-in session.

The console's scripts call the same routes as every API client, so each rule (validation, quota,
tenancy, admin-only routes) stays in one place and API users get whatever the console gets. The
bridge swaps the way of signing in, and only that:

- the session cookie, never a bearer key (the browser holds no key);
- a change (anything but GET and HEAD) must come from the console's own page (Origin or Referer)
  and carry the session's CSRF token in ``X-CSRF-Token``: the cookie alone changes nothing;
- the request then runs as ``/v1/...`` with the session's principal in its scope, where
  ``get_principal`` takes it. Only this bridge can put it there: no header or cookie can, so
  ``/v1`` itself is never opened by the cookie (which the browser does not even send there).

Plain ASGI, like the request-id middleware: answers stream through (the task event stream).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from pixelmill.api.deps import CONSOLE_PRINCIPAL
from pixelmill.api.errors import EnvelopeResponse, envelope
from pixelmill.console.guards import CSRF_HEADER, HEADERS, SAFE_METHODS, same_origin, session_of

PREFIX = "/console/api"
#: Headers that must not reach the API: the cookie (no route needs it) and any key of the caller's.
_DROPPED = frozenset({b"cookie", b"authorization", b"mj-api-secret", b"x-ptoken"})


class ConsoleBridge:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        runtime = scope["app"].state.runtime
        if not path.startswith(PREFIX + "/v1/"):
            await _answer(404, 3, f"no console API route {path}", scope, receive, send)
            return
        session = await session_of(conn, runtime)
        if session is None:
            await _answer(401, 401, "not signed in to the console (or the session ended): sign in again", scope, receive, send)
            return
        if scope["method"] not in SAFE_METHODS and not (
            same_origin(conn, runtime) and session.csrf_ok(Headers(scope=scope).get(CSRF_HEADER))
        ):
            await _answer(403, 403, "this change did not come from pixelmill's own console page", scope, receive, send)
            return
        inner = dict(scope)
        inner["path"] = path[len(PREFIX):]
        inner["raw_path"] = inner["path"].encode()
        inner["headers"] = [(k, v) for k, v in scope["headers"] if k not in _DROPPED]
        inner[CONSOLE_PRINCIPAL] = session.principal
        await self.app(inner, receive, send)


async def _answer(status: int, code: int, text: str, scope: Scope, receive: Receive, send: Send) -> None:
    await EnvelopeResponse(envelope(code, text), status_code=status, headers=HEADERS)(scope, receive, send)
