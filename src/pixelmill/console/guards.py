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
from starlette.requests import HTTPConnection

from pixelmill.auth.sessions import Session

COOKIE = "pm_console"
#: The header the console's scripts send the session's CSRF token in (forms send a field ``csrf``).
CSRF_HEADER = "x-csrf-token"
#: Only pixelmill's own origin, for everything a page loads or sends.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
           "Cache-Control": "no-store"}
#: Methods that change nothing: they need the session, not the CSRF token.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def same_origin(conn: HTTPConnection, runtime: Any) -> bool:
    """A change comes from this server's own pages: its Origin (else its Referer) is ours, as
    the request reached us or as ``PIXELMILL_PUBLIC_URL`` names us (behind a proxy)."""
    sent = conn.headers.get("origin") or conn.headers.get("referer")
    if not sent or sent == "null":
        return False
    origin = urlsplit(sent)
    ours = {(conn.url.scheme, conn.url.netloc)}
    if runtime.settings.public_url:
        public = urlsplit(str(runtime.settings.public_url))
        ours.add((public.scheme, public.netloc))
    return (origin.scheme, origin.netloc) in ours


def secure(conn: HTTPConnection, runtime: Any) -> bool:
    """The cookie goes over https only, where the console is served over https (itself, or behind
    a proxy that ends TLS: ``PIXELMILL_PUBLIC_URL`` says so)."""
    return conn.url.scheme == "https" or str(runtime.settings.public_url or "").startswith("https://")


async def session_of(conn: HTTPConnection, runtime: Any) -> Session | None:
    """The live session the request's cookie names (its key not revoked), or None."""
    return await run_in_threadpool(runtime.sessions.get, conn.cookies.get(COOKIE))
