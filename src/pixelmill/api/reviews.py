"""The review queue and the audit log (``/v1/admin/reviews``, ``/v1/admin/audit``; admin keys).

A reviewer lists what waits, looks at the held image, and approves (the image is published into
its task, which sends the task's ``reviewed`` webhook) or rejects it. Every decision is in the
audit log with the key that made it."""

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


class Decision(RequestBody):
    note: str | None = Field(None, max_length=1000, description="Why, for the audit log.")


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
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Oldest first."""
    return runtime.reviews.list(state, tenant, limit)


@router.get("/v1/admin/reviews/{review_id}", response_model=ReviewView)
def get_review(review_id: str, runtime: RuntimeDep, _: AdminDep) -> dict[str, Any]:
    return runtime.reviews.get(review_id)


@router.get("/v1/admin/reviews/{review_id}/image", response_class=Response)
def review_image(review_id: str, runtime: RuntimeDep, _: AdminDep) -> Response:
    """The held image (PNG) while the review is pending. Never cached."""
    return Response(runtime.reviews.image(review_id), media_type="image/png", headers={"Cache-Control": "no-store"})


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
