"""The console's browser-side guards, in one place for its pages and its bridge to the API.

- The session cookie (``pm_console``) is HttpOnly, SameSite=Strict and scoped to ``/console``, and
  Secure under https: scripts cannot read it, other sites cannot send it, ``/v1`` never sees it.
- Every change is a POST (or PUT, DELETE) whose ``Origin`` (or, failing that, ``Referer``) is this
  server's own, carrying the session's CSRF token (sign-in, which has no session yet, excepted).
- Every page has a content security policy that allows only pixelmill's own origin.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixelmill.auth.sessions import Session

COOKIE = "pm_console"
#: The header the console's scripts send the session's CSRF token in (forms send a field ``csrf``).
CSRF_HEADER = "x-csrf-token"
#: Only pixelmill's own origin, for everything a page loads or sends.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self'; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
           "Cache-Control": "no-store"}


class WithPolicy:
    """The console's own files (scripts, styles) answered with the same policy as its pages."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = CSP
                headers["X-Content-Type-Options"] = "nosniff"
            await send(message)

        await self.app(scope, receive, marked)


def storage_origins(settings: Any) -> list[str]:
    """Where task pictures and videos load from when storage does not serve them through pixelmill
    (S3 ``public``: the bucket or CDN; ``presigned``: the S3 endpoint)."""
    if settings.storage != "s3" or settings.s3_url_mode == "pixelmill":
        return []
    if settings.s3_url_mode == "public":
        return [_origin(str(settings.s3_public_base_url))]
    return [_origin(settings.s3_endpoint_url)] if settings.s3_endpoint_url else ["https://*.amazonaws.com"]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def page_headers(settings: Any) -> dict[str, str]:
    """A page's headers: the content security policy also allows storage's own origin for
    pictures and videos, where storage hands out its own URLs."""
    extra = " ".join(storage_origins(settings))
    if not extra:
        return HEADERS
    csp = CSP.replace("img-src 'self'", f"img-src 'self' {extra}").replace("media-src 'self'", f"media-src 'self' {extra}")
    return {**HEADERS, "Content-Security-Policy": csp}
#: Methods that change nothing: they need the session, not the CSRF token.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def same_origin(conn: HTTPConnection, runtime: Any) -> bool:
    """A change comes from this server's own pages: its Origin (else its Referer) is ours, as
    the request reached us or as ``PIXELMILL_PUBLIC_URL`` names us (behind a proxy)."""
    sent = conn.headers.get("origin") or conn.headers.get("referer")
    if not sent or sent == "null":
        return False
    ours = {_site(str(conn.url))}
    if runtime.settings.public_url:
        ours.add(_site(str(runtime.settings.public_url)))
    return _site(sent) in ours


def _site(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port as browsers compare origins: any case, default ports filled in."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return ("", "", None)  # a port that is not one: matches nothing of ours
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


def secure(conn: HTTPConnection, runtime: Any) -> bool:
    """The cookie goes over https only, where the console is served over https (itself, or behind
    a proxy that ends TLS: ``PIXELMILL_PUBLIC_URL`` says so)."""
    return conn.url.scheme == "https" or str(runtime.settings.public_url or "").startswith("https://")


async def session_of(conn: HTTPConnection, runtime: Any) -> Session | None:
    """The live session the request's cookie names (its key not revoked), or None."""
    return await run_in_threadpool(runtime.sessions.get, conn.cookies.get(COOKIE))
