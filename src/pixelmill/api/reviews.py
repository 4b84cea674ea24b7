"""The review queue and the audit log (``/v1/admin/reviews``, ``/v1/admin/audit``; admin keys).

A reviewer lists what waits (by tenant, reason and age), sees a blurred grey thumbnail until
choosing to look at the held image, claims it so that no other reviewer decides it meanwhile, and
approves (the image is published into its task, which sends the task's ``reviewed`` webhook) or
rejects it, one at a time or many at once. Every decision is in the audit log with the key that
made it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from pixelmill.api.admin import _ERRORS, AdminDep
from pixelmill.api.deps import RuntimeDep, base_url
from pixelmill.runtime import Runtime
from pixelmill.tasks.record import Task
from pixelmill.tasks.requests import RequestBody
from pixelmill.tasks.view import TaskView, task_view

router = APIRouter(tags=["reviews"], responses=_ERRORS)


class ReviewView(BaseModel):
    id: str = Field(description="<task id>-<image index>.")
    task_id: str
    tenant_id: str
    index: int = Field(description="Which image of the task (1-4).")
    state: Literal["pending", "approved", "rejected"]
    reasons: list[dict[str, Any]] = Field(description="What screening found: [{label, score, box}].")
    model: str
    created_at: int
    decided_at: int | None
    decided_by: str | None
    note: str | None
    claimed_by: str | None = Field(description="The key of the reviewer whose claim holds it (none once decided).")
    claimed_until: int | None = Field(description="When that claim runs out, Unix epoch ms.")


class Decision(RequestBody):
    note: str | None = Field(None, max_length=1000, description="Why, for the audit log.")


class BulkDecision(RequestBody):
    ids: list[str] = Field(min_length=1, max_length=500)
    decision: Literal["approve", "reject"]
    note: str | None = Field(None, max_length=1000, description="Why, for the audit log.")


class BulkOutcome(BaseModel):
    id: str
    state: Literal["approved", "rejected"] | None = Field(description="What it is now; null when it could not be decided.")
    error: str | None = Field(description="Why not (decided already, claimed by another reviewer, unknown).")


class Decided(BaseModel):
    review: ReviewView
    task: TaskView


class AuditEntry(BaseModel):
    id: int
    at: int
    actor: str
    kind: str
    subject: str
    action: str
    detail: dict[str, Any]


@router.get("/v1/admin/reviews", response_model=list[ReviewView])
def list_reviews(
    runtime: RuntimeDep, _: AdminDep,
    state: Literal["pending", "approved", "rejected"] = "pending",
    tenant: Annotated[str | None, Query(max_length=64)] = None,
    reason: Annotated[str | None, Query(max_length=64, description="Only holds whose findings name this label.")] = None,
    older_than: Annotated[float | None, Query(ge=0, description="Only holds waiting at least this many seconds.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Oldest first."""
    return runtime.reviews.list(state, tenant, limit, reason=reason, older_than_ms=None if older_than is None else int(older_than * 1000))


@router.get("/v1/admin/reviews/{review_id}", response_model=ReviewView)
def get_review(review_id: str, runtime: RuntimeDep, _: AdminDep) -> dict[str, Any]:
    return runtime.reviews.get(review_id)


@router.get("/v1/admin/reviews/{review_id}/image", response_class=Response)
def review_image(review_id: str, runtime: RuntimeDep, _: AdminDep) -> Response:
    """The held image (PNG) while the review is pending. Never cached."""
    return Response(runtime.reviews.image(review_id), media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/v1/admin/reviews/{review_id}/thumbnail", response_class=Response)
def review_thumbnail(review_id: str, runtime: RuntimeDep, _: AdminDep) -> Response:
    """The held image small, blurred and grey (WebP), for a queue that shows nothing until a
    reviewer chooses to look (``/image``). It never changes and shows nothing, so the reviewer's
    browser keeps it for an hour (privately): a queue redrawn every few seconds asks once."""
    return Response(runtime.reviews.thumbnail(review_id), media_type="image/webp", headers={"Cache-Control": "private, max-age=3600"})


@router.post("/v1/admin/reviews/{review_id}/claim", response_model=ReviewView)
def claim_review(review_id: str, runtime: RuntimeDep, principal: AdminDep) -> dict[str, Any]:
    """Hold the review for 5 minutes (claim again to extend): no other reviewer decides it
    meanwhile (409 if another's claim runs, or it is decided)."""
    return runtime.reviews.claim(review_id, principal.key_id)


@router.delete("/v1/admin/reviews/{review_id}/claim", status_code=204, response_class=Response)
def release_review(review_id: str, runtime: RuntimeDep, principal: AdminDep) -> Response:
    """Give back your claim."""
    runtime.reviews.release(review_id, principal.key_id)
    return Response(status_code=204)


@router.post("/v1/admin/reviews/decide", response_model=list[BulkOutcome])
async def decide_many(body: BulkDecision, runtime: RuntimeDep, principal: AdminDep) -> list[dict[str, Any]]:
    """Approve or reject many at once; each says what became of it, and one that cannot be
    decided does not stop the others."""
    return list(await run_in_threadpool(
        runtime.reviews.decide_many, body.ids, body.decision, principal.key_id, runtime.executor.publish_one, body.note,
    ))


@router.post("/v1/admin/reviews/{review_id}/approve", response_model=Decided)
async def approve(review_id: str, body: Decision, request: Request, runtime: RuntimeDep, principal: AdminDep) -> Decided:
    """Publish the image into its task (409 if already decided)."""
    task = await run_in_threadpool(runtime.reviews.approve, review_id, principal.key_id, runtime.executor.publish_one, body.note)
    return _decided(review_id, task, request, runtime)


@router.post("/v1/admin/reviews/{review_id}/reject", response_model=Decided)
def reject(review_id: str, body: Decision, request: Request, runtime: RuntimeDep, principal: AdminDep) -> Decided:
    """Drop the held image for good (409 if already decided). When it was the task's last hope,
    the task fails and is refunded."""
    task = runtime.reviews.reject(review_id, principal.key_id, body.note)
    return _decided(review_id, task, request, runtime)


def _decided(review_id: str, task: Task, request: Request, runtime: Runtime) -> Decided:
    view = task_view(task, base_url(request, runtime), url_for=runtime.storage.url)
    return Decided(review=ReviewView(**runtime.reviews.get(review_id)), task=view)


@router.get("/v1/admin/audit", response_model=list[AuditEntry])
def audit(
    runtime: RuntimeDep, _: AdminDep,
    kind: Annotated[str | None, Query(max_length=16, description="review, template or account")] = None,
    subject: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Newest first."""
    return runtime.audit.list(kind, subject, limit)
