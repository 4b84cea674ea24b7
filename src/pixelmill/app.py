"""Build the ASGI app from settings: routers, error envelope, and the runtime's lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixelmill import __version__
from pixelmill.api import (
    admin,
    batches,
    files,
    health,
    midjourney,
    mjproxy,
    observe,
    openai_images,
    reviews,
    tasks,
    templates,
    uploads,
    upstream,
    webhooks,
)
from pixelmill.api.errors import install_error_handlers
from pixelmill.console import routes as console
from pixelmill.console.bridge import ConsoleBridge
from pixelmill.console.guards import WithPolicy
from pixelmill.observe.logs import REQUEST_ID_HEADER, new_request_id
from pixelmill.observe.stages import request_clock
from pixelmill.runtime import Runtime, build_runtime
from pixelmill.settings import Settings, load_settings


class RequestIdMiddleware:
    """Every log line of a request, and of the tasks it creates, carries its id, which the answer
    names too. Plain ASGI rather than ``@app.middleware``: Starlette's BaseHTTPMiddleware hides
    the client's disconnect from the app, and a long-poll or a waiting image request whose client
    left would then hold its stream place until its wait ran out."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = new_request_id(Headers(scope=scope).get(REQUEST_ID_HEADER))

        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=rid), request_clock():
            await self.app(scope, receive, named)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """``runtime`` may be passed in (tests, ``serve`` that already opened it); else it is built
    from ``settings`` when the app starts."""
    settings = settings or (runtime.settings if runtime else load_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime
        if rt is None:  # `serve` builds its runtime (and bootstraps the key) before printing
            rt = build_runtime(settings)
            rt.keys.ensure_bootstrap(settings.api_key)
        rt.warm_up()
        rt.listen()
        if settings.workers:
            rt.start_workers(settings.workers)
        app.state.runtime = rt
        try:
            yield
        finally:
            rt.close()

    app = FastAPI(
        title="pixelmill",
        version=__version__,
        description="A Midjourney-style task API in front of image models.",
        lifespan=lifespan,
    )
    install_error_handlers(app)

    app.add_middleware(ConsoleBridge)  # inside the request id's: its refusals carry an id too
    app.add_middleware(RequestIdMiddleware)

    app.include_router(midjourney.router)
    for prefix in mjproxy.PREFIXES:  # the speed-tier prefixes are the same routes again
        app.include_router(mjproxy.router, prefix=prefix, include_in_schema=prefix == "/mj")
    app.include_router(openai_images.router)
    app.include_router(tasks.router)
    app.include_router(batches.router)
    app.include_router(admin.router)
    app.include_router(reviews.router)
    app.include_router(templates.router)
    app.include_router(webhooks.router)
    app.include_router(upstream.router)
    app.include_router(uploads.router)
    app.include_router(files.router)
    app.include_router(health.router)
    app.include_router(observe.router)
    app.include_router(console.router)
    # The console's own files, with the pages' content security policy (nothing from elsewhere).
    app.mount("/console/static", WithPolicy(StaticFiles(directory=console.HERE / "static")), name="console-static")
    return app
