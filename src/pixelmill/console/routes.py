"""The console's pages, sign-in and sign-out. Pages are HTML shells: their scripts read and
change everything through the API (console/bridge.py), so a page shows what the API says.
The guards (cookie, origin, CSRF, content security policy) are in console/guards.py.

- ``/console``: Create (imagine bar, live task cards, the mask editor and zoom dialog).
- ``/console/tasks/{id}``: a task's detail and lightbox.
- ``/console/gallery``: every picture, filtered, starred, downloaded as a zip, deleted, compared.
- ``/console/templates``: versions, diffs, releases and rollouts, the "which version" tester.
- ``/console/batches``: batches from a template (or a prompt with slots) and a CSV, live counts.
- ``/console/usage``: the key's balance and its charges per day and per price.
- ``/console/review``, ``/console/ops``, ``/console/keys``: admin only (a tenant's key gets a 403 page).
"""

from __future__ import annotations

import pathlib
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from pixelmill.api.deps import RuntimeDep
from pixelmill.console.guards import COOKIE, HEADERS, page_headers, same_origin, secure, session_of
from pixelmill.exceptions import AuthenticationError

HERE = pathlib.Path(__file__).parent

router = APIRouter(prefix="/console", include_in_schema=False)
templates = Jinja2Templates(directory=HERE / "templates")


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    headers = page_headers(request.app.state.runtime.settings)
    return templates.TemplateResponse(request, name, context, status_code=status, headers=headers)


def _refused() -> Response:
    return Response("this change did not come from pixelmill's own page", status_code=403, media_type="text/plain", headers=HEADERS)


async def _shell(request: Request, runtime: Any, name: str, *, admin: bool = False, **context: Any) -> Response:
    """Page ``name`` (its template and script) for the signed-in session, else to sign-in; an
    admin page for an admin key only."""
    session = await session_of(request, runtime)
    if session is None:
        return RedirectResponse("/console/login", status_code=303, headers=HEADERS)
    page = {"principal": session.principal, "csrf": session.csrf, "modal_seconds": runtime.settings.modal_timeout_seconds}
    if admin and not session.principal.is_admin:
        return _page(request, "forbidden.html", status=403, page_name="forbidden", **page)
    return _page(request, f"{name}.html", page_name=name, **page, **context)


@router.get("")
async def create(request: Request, runtime: RuntimeDep) -> Response:
    return await _shell(request, runtime, "create")


@router.get("/tasks/{task_id}")
async def task_detail(task_id: Annotated[str, Path(max_length=64)], request: Request, runtime: RuntimeDep) -> Response:
    # The page's script asks the API for the task: an unknown id, or another tenant's, is its 404.
    return await _shell(request, runtime, "task", task_id=task_id)


#: The signed-in pages besides Create and a task's detail, each its template and script: whether
#: it needs an admin key.
PAGES = {"gallery": False, "templates": False, "batches": False, "usage": False, "review": True, "ops": True, "keys": True}


def _add_page(name: str, admin: bool) -> None:
    async def page(request: Request, runtime: RuntimeDep) -> Response:
        return await _shell(request, runtime, name, admin=admin)

    router.add_api_route(f"/{name}", page, methods=["GET"], name=f"console-{name}")


for _name, _admin in PAGES.items():
    _add_page(_name, _admin)


@router.get("/login")
async def login_page(request: Request, runtime: RuntimeDep) -> Response:
    if await session_of(request, runtime) is not None:
        return RedirectResponse("/console", status_code=303, headers=HEADERS)
    return _page(request, "login.html")


@router.post("/login")
async def login(request: Request, runtime: RuntimeDep, api_key: Annotated[str, Form(max_length=512)] = "") -> Response:
    if not same_origin(request, runtime):
        return _refused()
    try:
        token = await run_in_threadpool(runtime.sessions.open, api_key.strip())
    except AuthenticationError:
        return _page(request, "login.html", status=401, error="That key is not a live API key of this server.")
    done = RedirectResponse("/console", status_code=303, headers=HEADERS)
    done.set_cookie(COOKIE, token, path="/console", httponly=True, samesite="strict", secure=secure(request, runtime))
    return done


@router.post("/logout")
async def logout(request: Request, runtime: RuntimeDep, csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
    session = await session_of(request, runtime)
    if not same_origin(request, runtime) or session is None or not session.csrf_ok(csrf):
        return _refused()
    await run_in_threadpool(runtime.sessions.close, request.cookies.get(COOKIE))
    done = RedirectResponse("/console/login", status_code=303, headers=HEADERS)
    done.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict", secure=secure(request, runtime))
    return done
