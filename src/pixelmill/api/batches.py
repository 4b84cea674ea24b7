"""Batch jobs (``/v1/batches``): many imagine tasks in the batch lane, tracked as one."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel

from pixelmill.api.deps import IdempotencyKey, PrincipalDep, RuntimeDep, base_url, own_bases
from pixelmill.submit.batches import manifest_csv
from pixelmill.tasks.requests import BatchRequest

router = APIRouter(prefix="/v1/batches", tags=["batches"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "code 4: bad parameters (the description names the field, e.g. requests[3].prompt)"},
    401: {"description": "code 401: missing or invalid API key"},
    404: {"description": "code 3: the batch does not exist"},
    429: {"description": "code 23: batch queue full, or code 429: rate limited (Retry-After)"},
}


class BatchAccepted(BaseModel):
    batch_id: str
    total: int


class BatchAnswer(BaseModel):
    code: int
    description: str
    properties: dict[str, Any]
    data: list[BatchAccepted]


class BatchView(BaseModel):
    batch_id: str
    status: str
    total: int
    done: int
    counts: dict[str, int]
    created_at: int
    cancelled_at: int | None
    metadata: dict[str, str]


@router.post("", response_model=BatchAnswer, responses=_ERRORS)
def create_batch(
    body: BatchRequest, request: Request, principal: PrincipalDep, runtime: RuntimeDep, idempotency_key: IdempotencyKey = None
) -> BatchAnswer:
    """Queue many imagine tasks in the batch lane, all or none: ``requests`` (imagine bodies), or
    ``prompt_template`` + ``variables``. Counts as one submission against the rate cap."""
    batch_id = runtime.batches.create(principal, body, own_bases(request, runtime), idempotency_key=idempotency_key)
    status = runtime.batches.status(principal, batch_id)
    return BatchAnswer(code=1, description="submitted", properties={}, data=[BatchAccepted(batch_id=batch_id, total=status.total)])


@router.get("", response_model=list[BatchView], responses=_ERRORS)
def list_batches(principal: PrincipalDep, runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[BatchView]:
    """The caller's tenant's latest batches, newest first, with their counts."""
    return [BatchView(**b.to_json()) for b in runtime.batches.recent(principal, limit)]


@router.get("/{batch_id}", response_model=BatchView, responses=_ERRORS)
def get_batch(batch_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> BatchView:
    """Status (running, completed, cancelled) and task counts by status."""
    return BatchView(**runtime.batches.status(principal, batch_id).to_json())


@router.get("/{batch_id}/manifest", responses={200: {"content": {"application/json": {}, "text/csv": {}}}, **_ERRORS})
def get_manifest(
    batch_id: str,
    request: Request,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    format: Annotated[Literal["json", "csv"], Query(description="json (default) or csv")] = "json",
) -> Response:
    """Every task of the batch in order, with its outputs and metadata (prompt, seed, variables,
    size, engine, status, fail_reason). Complete once the batch status is completed."""
    rows = runtime.batches.manifest(principal, batch_id, base_url(request, runtime))
    if format == "csv":
        return PlainTextResponse(manifest_csv(rows), media_type="text/csv; charset=utf-8")
    status = runtime.batches.status(principal, batch_id).to_json()
    return JSONResponse({"batch": status, "tasks": rows})


@router.post("/{batch_id}/cancel", response_model=BatchView, responses=_ERRORS)
def cancel_batch(batch_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> BatchView:
    """Cancel every unfinished task of the batch (refunded); finished ones keep their results."""
    return BatchView(**runtime.batches.cancel(principal, batch_id).to_json())
