"""Request-scoped dependencies: the runtime and the calling principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pixelmill.auth.keys import Principal
from pixelmill.runtime import Runtime

bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <api key>")
#: Where the console's bridge (console/bridge.py) leaves a signed-in session's principal. Only
#: that middleware writes this scope key: nothing a client sends can.
CONSOLE_PRINCIPAL = "pixelmill.console_principal"
#: And a check that its session still stands (a long stream asks it now and then).
CONSOLE_ALIVE = "pixelmill.console_alive"


async def get_runtime(request: Request) -> Runtime:
    # async: it only reads the app's state, and FastAPI runs a plain ``def`` dependency in a
    # worker thread: a hop there and back, on every request, for nothing.
    runtime: Runtime = request.app.state.runtime  # set by create_app; Starlette's State holds Any
    return runtime


def get_principal(
    request: Request,
    runtime: Annotated[Runtime, Depends(get_runtime)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    console: Principal | None = request.scope.get(CONSOLE_PRINCIPAL)
    if console is not None:
        return console
    return runtime.keys.authenticate(credentials.credentials if credentials else None)


def base_url(request: Request, runtime: Runtime) -> str:
    """Where clients reach us: the configured public URL, else the address they used."""
    return (runtime.settings.public_url or str(request.base_url)).rstrip("/")


def own_bases(request: Request, runtime: Runtime) -> list[str]:
    """Every base URL that names this server: image URLs under them are our own files."""
    return list(dict.fromkeys([base_url(request, runtime), str(request.base_url).rstrip("/")]))


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
IdempotencyKey = Annotated[
    str | None,
    # Its length and characters are checked in one place: tasks/idempotency.py.
    Header(alias="Idempotency-Key", description="Retry-safe submits: the same key and body answer the same task (kept 24 h)."),
]
