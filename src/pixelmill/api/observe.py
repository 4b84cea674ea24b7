"""Operations routes: Prometheus metrics, readiness, the health report, the operations summary."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from pixelmill.api.admin import AdminDep, admin
from pixelmill.api.deps import RuntimeDep, bearer

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request, runtime: RuntimeDep) -> Response:
    """Prometheus metrics (docs/metrics.md). Needs an admin key unless PIXELMILL_METRICS_PUBLIC."""
    if not runtime.settings.metrics_public:
        credentials: HTTPAuthorizationCredentials | None = await bearer(request)
        principal = await run_in_threadpool(runtime.keys.authenticate, credentials.credentials if credentials else None)
        admin(principal)
    body = await run_in_threadpool(generate_latest, runtime.metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Ready: the database answers, storage is writable, every engine can take work. 503 if not."""
    states = await run_in_threadpool(runtime.readiness)
    ready = all(v == "ok" for v in states.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": states}, status_code=200 if ready else 503)


@router.get("/v1/admin/health-report")
def health_report(
    _: AdminDep,
    runtime: RuntimeDep,
    window: Annotated[float, Query(gt=0, le=7 * 86400, description="Seconds to look back (default one hour).")] = 3600,
) -> dict[str, Any]:
    """Seed 004's four health figures with thresholds and verdicts, and the tasks waiting longest."""
    return runtime.health.build(window)


@router.get("/v1/admin/operations")
def operations(
    _: AdminDep,
    runtime: RuntimeDep,
    hours: Annotated[float, Query(gt=0, le=24 * 30, description="Period the charts cover (default 6 h), in 24 points.")] = 6,
) -> dict[str, Any]:
    """Readiness per part, waiting and running tasks per lane, the workers holding tasks, the
    latest failures, and success rate, latency and cost over ``hours``."""
    return {
        "readiness": runtime.readiness(),
        "workers_per_process": runtime.settings.workers,
        **runtime.operations_report.now(),
        "series": runtime.operations_report.series(hours),
    }
