"""Request-scoped dependencies: the runtime and the calling principal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from anyio import CapacityLimiter, to_thread
from anyio.lowlevel import RunVar
from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from pixelmill.auth.keys import Principal
from pixelmill.runtime import Runtime

T = TypeVar("T")
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


@dataclass(frozen=True)
class Caller:
    """Who the request says it is, not yet checked: a console session's principal (the bridge
    put it there) or a key. ``principal`` checks it against the database, so it runs in a
    worker thread. The commonest routes do that in the same hop as their own work (``run``):
    each hop to a thread and back costs FastAPI about 0.25 ms of CPU, and a sync dependency, a
    sync endpoint and its response each take one."""

    runtime: Runtime
    console: Principal | None
    key: str | None

    def checked(self) -> Caller:
        """This caller, or 401 at once when it names no key at all (no database needed)."""
        if self.console is None and self.key is None:
            self.principal()
        return self

    def principal(self) -> Principal:
        return self.console if self.console is not None else self.runtime.keys.authenticate(self.key)

    async def run(self, work: Callable[[Principal], T]) -> T:
        """``work(principal)`` in a worker thread, authenticated there first."""
        return await run_in_threadpool(lambda: work(self.principal()))

    async def read(self, work: Callable[[Principal], T]) -> T:
        """``run`` for a poll of one task, which only reads the database: on SQLite on at most
        ``READERS`` threads at once. Sixteen polls in sixteen threads cost each other more than
        they gain: they take turns on the GIL at every database call (measured on 2 cores: 5.7
        ms of CPU per poll with up to 40 threads, 3.7 ms with one), and a read of a local file
        never waits long. On PostgreSQL a read waits on the network: the usual threads."""
        if self.runtime.db.dialect.name != "sqlite":
            return await self.run(work)
        return await to_thread.run_sync(lambda: work(self.principal()), limiter=_readers())


#: Threads that serve polls at once (``Caller.read``), per process.
READERS = 2
_reader_limit: RunVar[CapacityLimiter] = RunVar("pixelmill_readers")


def _readers() -> CapacityLimiter:
    # Per event loop, as anyio keeps its own default limiter: a limiter belongs to its loop.
    try:
        return _reader_limit.get()
    except LookupError:
        _reader_limit.set(limiter := CapacityLimiter(READERS))
        return limiter


async def get_caller(
    request: Request,
    runtime: Annotated[Runtime, Depends(get_runtime)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    return Caller(runtime, request.scope.get(CONSOLE_PRINCIPAL), credentials.credentials if credentials else None).checked()


def get_principal(caller: Annotated[Caller, Depends(get_caller)]) -> Principal:
    return caller.principal()


def base_url(request: Request, runtime: Runtime) -> str:
    """Where clients reach us: the configured public URL, else the address they used."""
    return (runtime.settings.public_url or str(request.base_url)).rstrip("/")


def own_bases(request: Request, runtime: Runtime) -> list[str]:
    """Every base URL that names this server: image URLs under them are our own files."""
    return list(dict.fromkeys([base_url(request, runtime), str(request.base_url).rstrip("/")]))


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
CallerDep = Annotated[Caller, Depends(get_caller)]
IdempotencyKey = Annotated[
    str | None,
    # Its length and characters are checked in one place: tasks/idempotency.py.
    Header(alias="Idempotency-Key", description="Retry-safe submits: the same key and body answer the same task (kept 24 h)."),
]
