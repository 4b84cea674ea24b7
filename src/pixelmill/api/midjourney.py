"""The Midjourney-style task contract of seed 004 (``/v1/midjourney/...``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from pixelmill.api.deps import PrincipalDep, RuntimeDep, base_url, own_bases
from pixelmill.api.views import TaskView, task_view
from pixelmill.tasks.record import Task
from pixelmill.tasks.requests import ImagineRequest, UpscaleRequest

router = APIRouter(prefix="/v1/midjourney", tags=["midjourney"])


class SubmittedTask(BaseModel):
    task_id: str


class SubmitAnswer(BaseModel):
    code: int
    description: str
    properties: dict[str, Any]
    data: list[SubmittedTask]


def _submitted(*tasks: Task) -> SubmitAnswer:
    # One entry per task: several when the prompt asks for --repeat.
    return SubmitAnswer(code=1, description="submitted", properties={}, data=[SubmittedTask(task_id=t.id) for t in tasks])


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "code 4: bad parameters (the description names the field)"},
    401: {"description": "code 401: missing or invalid API key"},
    404: {"description": "code 3: the task does not exist"},
    429: {"description": "code 23: queue full, or code 429: rate limited (Retry-After)"},
    503: {"description": "code 3: no engine instance available; retry later"},
}


@router.post("/generations/imagine", response_model=SubmitAnswer, responses=_ERRORS)
def imagine(body: ImagineRequest, request: Request, principal: PrincipalDep, runtime: RuntimeDep) -> SubmitAnswer:
    """Generate a 2×2 grid of four images from a prompt (one task per run with ``--repeat``)."""
    return _submitted(*runtime.service.imagine(principal, body, own_bases(request, runtime)))


@router.post("/generations", response_model=SubmitAnswer, responses=_ERRORS, include_in_schema=False)
def imagine_bare(body: ImagineRequest, request: Request, principal: PrincipalDep, runtime: RuntimeDep) -> SubmitAnswer:
    return imagine(body, request, principal, runtime)


@router.post("/generations/upscale", response_model=SubmitAnswer, responses=_ERRORS)
def upscale(body: UpscaleRequest, principal: PrincipalDep, runtime: RuntimeDep) -> SubmitAnswer:
    """Pick one image (1-4) of a finished grid, by ``task_id`` + ``index`` or a button ``custom_id``."""
    return _submitted(runtime.service.upscale(principal, body))


@router.get("/{task_id}", response_model=TaskView, responses=_ERRORS)
def get_task(task_id: str, request: Request, principal: PrincipalDep, runtime: RuntimeDep) -> TaskView:
    """The task object: status, progress, and once SUCCESS its image URLs and buttons."""
    return task_view(runtime.service.get(principal, task_id), base_url(request, runtime))
