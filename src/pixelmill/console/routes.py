"""The console's routes: sign-in, sign-out and the pages, with the browser-side guards.

- The session cookie (``pm_console``) is HttpOnly, SameSite=Strict and scoped to ``/console``, and
  Secure under https: scripts cannot read it, other sites cannot send it, ``/v1`` never sees it.
- Every change (sign-in included) is a POST whose ``Origin`` (or, failing that, ``Referer``) is
  this server's own; sign-out and later changes also carry the session's CSRF token.
- Every page has a content security policy that allows only pixelmill's own origin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from pixelmill.api.deps import RuntimeDep
from pixelmill.auth.sessions import Session
from pixelmill.exceptions import AuthenticationError

HERE = Path(__file__).parent
COOKIE = "pm_console"
#: Only pixelmill's own origin, for everything a page loads or sends.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
           "Cache-Control": "no-store"}

router = APIRouter(prefix="/console", include_in_schema=False)
templates = Jinja2Templates(directory=HERE / "templates")


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status, headers=HEADERS)


def _same_origin(request: Request, runtime: Any) -> bool:
    """A change comes from this server's own pages: its Origin (else its Referer) is ours, as
    the request reached us or as ``PIXELMILL_PUBLIC_URL`` names us (behind a proxy)."""
    sent = request.headers.get("origin") or request.headers.get("referer")
    if not sent or sent == "null":
        return False
    origin = urlsplit(sent)
    ours = {(request.url.scheme, request.url.netloc)}
    if runtime.settings.public_url:
        public = urlsplit(str(runtime.settings.public_url))
        ours.add((public.scheme, public.netloc))
    return (origin.scheme, origin.netloc) in ours


def _refused() -> Response:
    return Response("this change did not come from pixelmill's own page", status_code=403, media_type="text/plain", headers=HEADERS)


def _secure(request: Request, runtime: Any) -> bool:
    """The cookie goes over https only, where the console is served over https (itself, or behind
    a proxy that ends TLS: ``PIXELMILL_PUBLIC_URL`` says so)."""
    return request.url.scheme == "https" or str(runtime.settings.public_url or "").startswith("https://")


async def _session(request: Request, runtime: Any) -> Session | None:
    return await run_in_threadpool(runtime.sessions.get, request.cookies.get(COOKIE))


@router.get("")
async def home(request: Request, runtime: RuntimeDep) -> Response:
    session = await _session(request, runtime)
    if session is None:
        return RedirectResponse("/console/login", status_code=303, headers=HEADERS)
    return _page(request, "home.html", principal=session.principal, csrf=session.csrf)


@router.get("/login")
async def login_page(request: Request, runtime: RuntimeDep) -> Response:
    if await _session(request, runtime) is not None:
        return RedirectResponse("/console", status_code=303, headers=HEADERS)
    return _page(request, "login.html")


@router.post("/login")
async def login(request: Request, runtime: RuntimeDep, api_key: Annotated[str, Form(max_length=512)] = "") -> Response:
    if not _same_origin(request, runtime):
        return _refused()
    try:
        token = await run_in_threadpool(runtime.sessions.open, api_key.strip())
    except AuthenticationError:
        return _page(request, "login.html", status=401, error="That key is not a live API key of this server.")
    done = RedirectResponse("/console", status_code=303, headers=HEADERS)
    done.set_cookie(COOKIE, token, path="/console", httponly=True, samesite="strict", secure=_secure(request, runtime))
    return done


@router.post("/logout")
async def logout(request: Request, runtime: RuntimeDep, csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
    session = await _session(request, runtime)
    if not _same_origin(request, runtime) or session is None or not session.csrf_ok(csrf):
        return _refused()
    await run_in_threadpool(runtime.sessions.close, request.cookies.get(COOKIE))
    done = RedirectResponse("/console/login", status_code=303, headers=HEADERS)
    done.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict", secure=_secure(request, runtime))
    return done
