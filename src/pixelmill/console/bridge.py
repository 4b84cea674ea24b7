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

from urllib.parse import urlsplit, urlunsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixelmill.api.deps import CONSOLE_ALIVE, CONSOLE_PRINCIPAL
from pixelmill.api.errors import EnvelopeResponse, envelope
from pixelmill.console.guards import COOKIE, CSRF_HEADER, HEADERS, SAFE_METHODS, same_origin, session_of

PREFIX = "/console/api"
#: Headers that must not reach the API: the cookie (no route needs it) and any key of the caller's.
_DROPPED = frozenset({b"cookie", b"authorization", b"mj-api-secret", b"x-ptoken"})


class ConsoleBridge:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = _route_path(scope) if scope["type"] == "http" else ""
        if not path.startswith(PREFIX + "/"):
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
        inner["path"] = scope.get("root_path", "") + path[len(PREFIX):]
        raw = scope.get("raw_path") or b""
        at = raw.find(PREFIX.encode() + b"/v1/")
        # The path as the client encoded it (%2F, %3F kept), without the console's prefix.
        inner["raw_path"] = raw[:at] + raw[at + len(PREFIX):] if at >= 0 else inner["path"].encode()
        inner["headers"] = [(k, v) for k, v in scope["headers"] if k not in _DROPPED]
        inner[CONSOLE_PRINCIPAL] = session.principal
        token = conn.cookies.get(COOKIE)
        # An event stream asks this now and then: it ends when the session does (sign-out, revoked key).
        inner[CONSOLE_ALIVE] = lambda: runtime.sessions.get(token) is not None

        async def bridged(message: Message) -> None:
            # A redirect the API makes (a trailing slash) stays inside the bridge.
            if message["type"] == "http.response.start" and 300 <= message["status"] < 400:
                headers = MutableHeaders(scope=message)
                if "location" in headers:
                    to = urlsplit(headers["location"])
                    if to.path.startswith("/v1/"):
                        headers["location"] = urlunsplit(("", "", PREFIX + to.path, to.query, to.fragment))
            await send(message)

        await self.app(inner, receive, bridged)


def _route_path(scope: Scope) -> str:
    """The path below the app's root path (uvicorn --root-path), as the routes see it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


async def _answer(status: int, code: int, text: str, scope: Scope, receive: Receive, send: Send) -> None:
    await EnvelopeResponse(envelope(code, text), status_code=status, headers=HEADERS)(scope, receive, send)
