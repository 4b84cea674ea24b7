"""Build the ASGI app from settings: routers, error envelope, and the runtime's lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
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


def include_flat(app: FastAPI, router: APIRouter, *, prefix: str = "", include_in_schema: bool = True) -> None:
    """``app.include_router(router, prefix=...)``, with the routes copied into the app's own table.

    FastAPI 0.16x keeps an included router as one nested entry and, on every request, walks each
    nested router it passes (twice: to match, then to handle), at about 14 µs per route passed on
    a 2-core machine: a request for a route late in the table paid ~2 ms of routing alone, and a
    404 paid it for all of them. A flat table is matched by one regex per route, as Starlette does.
    """
    for route in router.routes:
        if not isinstance(route, APIRoute):  # every router of ours holds path operations only
            raise TypeError(f"{route!r}: only API routes can be copied")
        app.router.add_api_route(
            prefix + route.path, route.endpoint,
            response_model=route.response_model, status_code=route.status_code, tags=route.tags,
            dependencies=route.dependencies, summary=route.summary, description=route.description,
            response_description=route.response_description, responses=route.responses, deprecated=route.deprecated,
            methods=route.methods, operation_id=route.operation_id,
            response_model_include=route.response_model_include, response_model_exclude=route.response_model_exclude,
            response_model_by_alias=route.response_model_by_alias,
            response_model_exclude_unset=route.response_model_exclude_unset,
            response_model_exclude_defaults=route.response_model_exclude_defaults,
            response_model_exclude_none=route.response_model_exclude_none,
            include_in_schema=route.include_in_schema and include_in_schema, response_class=route.response_class,
            name=route.name, callbacks=route.callbacks, openapi_extra=route.openapi_extra,
            generate_unique_id_function=route.generate_unique_id_function,
        )


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

    for router in (midjourney.router, openai_images.router, tasks.router, batches.router, admin.router, reviews.router,
                   templates.router, webhooks.router, upstream.router, uploads.router, files.router, health.router,
                   observe.router, console.router):
        include_flat(app, router)
    for prefix in mjproxy.PREFIXES:  # the speed-tier prefixes are the same routes again
        include_flat(app, mjproxy.router, prefix=prefix, include_in_schema=prefix == "/mj")
    # The console's own files, with the pages' content security policy (nothing from elsewhere).
    app.mount("/console/static", WithPolicy(StaticFiles(directory=console.HERE / "static")), name="console-static")
    return app
