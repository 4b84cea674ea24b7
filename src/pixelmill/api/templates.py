"""Versioned prompt templates (``/v1/templates``): versions, release tags and rollouts,
evaluation sets and evaluations with their contact sheets.

Any key may read templates and submit with them (``POST /v1/midjourney/generations/imagine``
with ``template`` + ``variables``); changes need an admin key and are written to the audit log
(``GET /v1/admin/audit?kind=template``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import Field

from pixelmill.api.admin import AdminDep
from pixelmill.api.deps import PrincipalDep, RuntimeDep, base_url
from pixelmill.exceptions import ValidationError
from pixelmill.runtime import Runtime
from pixelmill.tasks.requests import RequestBody, VariableValue
from pixelmill.templates.evaluate import sheet_html
from pixelmill.templates.spec import TemplateSpec

router = APIRouter(prefix="/v1/templates", tags=["templates"], responses={
    400: {"description": "code 4: bad parameters"},
    401: {"description": "code 401: missing or invalid API key"},
    403: {"description": "code 403: changes need an admin key"},
    404: {"description": "code 3: no such template, version, release or evaluation"},
    409: {"description": "code 4: not allowed in this state (a published version is immutable)"},
})

Name = Annotated[str, Field(min_length=1, max_length=64)]


class NewTemplate(TemplateSpec):
    name: Name
    description: str = Field("", max_length=2000)
    note: str = Field("", max_length=2000, description="Why this version: shown in its history.")
    author: str | None = Field(None, max_length=64, description="Who wrote it (default: the key that sends it).")


class NewVersion(TemplateSpec):
    note: str = Field("", max_length=2000)
    author: str | None = Field(None, max_length=64)


class ReleasePointer(RequestBody):
    version: int = Field(ge=1)


class Rollout(RequestBody):
    version: int = Field(ge=1, description="The candidate version.")
    percent: int = Field(ge=0, le=100, description="Share of subjects (API keys, or subject_id) that get the candidate.")


class EvaluationSet(RequestBody):
    items: list[dict[str, VariableValue]] = Field(min_length=1, max_length=200, description="One set of variable values per item.")


class NewEvaluation(RequestBody):
    set: str = Field(min_length=1, max_length=64, description="The evaluation set to run.")
    baseline: int = Field(ge=1)
    candidate: int = Field(ge=1)
    seed: int = Field(0, ge=0, le=4_294_967_295, description="Item i runs with seed + 4·i on both versions.")


def _spec(body: TemplateSpec) -> TemplateSpec:
    return TemplateSpec.model_validate(body.model_dump(include=set(TemplateSpec.model_fields)))


@router.get("")
def list_templates(runtime: RuntimeDep, _: PrincipalDep) -> list[dict[str, Any]]:
    return runtime.templates.names()


@router.post("")
def create_template(body: NewTemplate, runtime: RuntimeDep, principal: AdminDep) -> dict[str, Any]:
    """A new template with version 1 as a draft."""
    return runtime.templates.create(body.name, body.description, _spec(body), principal.key_id, body.note, body.author)


@router.get("/{name}")
def show_template(name: str, runtime: RuntimeDep, _: PrincipalDep) -> dict[str, Any]:
    """The template, its versions (newest first) and its release tags."""
    return runtime.templates.show(name)


@router.post("/{name}/versions")
def add_version(name: str, body: NewVersion, runtime: RuntimeDep, principal: AdminDep) -> dict[str, Any]:
    """A new draft version after the last one."""
    return runtime.templates.add_version(name, _spec(body), principal.key_id, body.note, body.author)


@router.get("/{name}/versions/{version}")
def get_version(name: str, version: int, runtime: RuntimeDep, _: PrincipalDep) -> dict[str, Any]:
    return runtime.templates.version(name, version)


@router.put("/{name}/versions/{version}")
def edit_version(name: str, version: int, body: NewVersion, runtime: RuntimeDep, principal: AdminDep) -> dict[str, Any]:
    """Change a draft. A published version is immutable: 409."""
    return runtime.templates.edit_draft(name, version, _spec(body), principal.key_id, body.note or None)


@router.post("/{name}/versions/{version}/publish")
def publish_version(name: str, version: int, runtime: RuntimeDep, principal: AdminDep) -> dict[str, Any]:
    return runtime.templates.publish(name, version, principal.key_id)


@router.get("/{name}/resolve")
def resolve(
    name: str, runtime: RuntimeDep, principal: PrincipalDep,
    release: Annotated[str, Query(max_length=32)] = "stable",
    subject_id: Annotated[str | None, Query(max_length=128)] = None,
) -> dict[str, Any]:
    """Which version ``release`` serves to a subject (default: the calling key): what a submit
    would get now, without submitting."""
    version, side = runtime.templates.release(name, release).choose(subject_id or principal.key_id)
    return {"template": name, "release": release, "version": version, "rollout": side}


# --- releases --------------------------------------------------------------------------------------

@router.put("/{name}/releases/{tag}")
def point_release(name: str, tag: str, body: ReleasePointer, runtime: RuntimeDep, principal: AdminDep) -> dict[str, Any]:
    """Point a release tag at a published version (creates the tag; ends a rollout on it)."""
    return runtime.templates.point(name, tag, body.version, principal.key_id).to_json()


@router.post("/{name}/releases/{tag}/rollout")
def rollout(name: str, tag: str, body: Rollout, runtime: RuntimeDep, principal: AdminDep) -> dict[str, Any]:
    """Send ``percent`` % of subjects to a candidate version, each subject always to the same side."""
    return runtime.templates.rollout(name, tag, body.version, body.percent, principal.key_id).to_json()


@router.post("/{name}/releases/{tag}/promote")
def promote(name: str, tag: str, runtime: RuntimeDep, principal: AdminDep) -> dict[str, Any]:
    """The candidate becomes the tag's version for everyone."""
    return runtime.templates.promote(name, tag, principal.key_id).to_json()


@router.post("/{name}/releases/{tag}/pause")
def pause(name: str, tag: str, runtime: RuntimeDep, principal: AdminDep) -> dict[str, Any]:
    """Everyone back on the tag's version, the rollout kept for resume."""
    return runtime.templates.pause(name, tag, principal.key_id).to_json()


@router.post("/{name}/releases/{tag}/resume")
def resume(name: str, tag: str, runtime: RuntimeDep, principal: AdminDep) -> dict[str, Any]:
    return runtime.templates.pause(name, tag, principal.key_id, paused=False).to_json()


@router.post("/{name}/releases/{tag}/rollback")
def rollback(name: str, tag: str, runtime: RuntimeDep, principal: AdminDep) -> dict[str, Any]:
    """Drop the running rollout, or (with none) return to the version before the last promotion.
    Takes effect for the very next request."""
    return runtime.templates.rollback(name, tag, principal.key_id).to_json()


# --- evaluation --------------------------------------------------------------------------------------

@router.put("/{name}/sets/{set_name}")
def put_set(name: str, set_name: str, body: EvaluationSet, runtime: RuntimeDep, principal: AdminDep) -> dict[str, Any]:
    return runtime.templates.put_set(name, set_name, body.items, principal.key_id)


@router.get("/{name}/sets/{set_name}")
def get_set(name: str, set_name: str, runtime: RuntimeDep, _: PrincipalDep) -> dict[str, Any]:
    return runtime.templates.get_set(name, set_name)


@router.post("/{name}/evaluations")
def start_evaluation(name: str, body: NewEvaluation, request: Request, runtime: RuntimeDep, principal: AdminDep) -> dict[str, Any]:
    """Generate the set on both versions (batch lane, fixed seeds, charged to this key)."""
    evaluation = runtime.evaluations.start(principal, name, body.set, body.baseline, body.candidate, body.seed)
    return _with_links(evaluation, request, runtime)


@router.get("/{name}/evaluations")
def list_evaluations(name: str, request: Request, runtime: RuntimeDep, _: PrincipalDep) -> list[dict[str, Any]]:
    return [_with_links(e, request, runtime) for e in runtime.evaluations.list_for(name)]


@router.get("/{name}/evaluations/{evaluation_id}")
async def get_evaluation(name: str, evaluation_id: str, request: Request, runtime: RuntimeDep, _: PrincipalDep) -> dict[str, Any]:
    """The evaluation: pairs with their scores and summary once every task has ended."""
    evaluation = await run_in_threadpool(runtime.evaluations.get, name, evaluation_id)
    return _with_links(evaluation, request, runtime)


@router.get("/{name}/evaluations/{evaluation_id}/sheet", response_class=HTMLResponse, responses={200: {"content": {"text/html": {}}}})
async def evaluation_sheet(name: str, evaluation_id: str, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    """The contact sheet page. No key needed: the evaluation id is unguessable, so the page can
    be shared by link, like a presigned URL."""
    if not evaluation_id.startswith("ev_"):
        raise ValidationError("evaluation_id", "not an evaluation id")
    evaluation = await run_in_threadpool(runtime.evaluations.get, name, evaluation_id)
    base = base_url(request, runtime)
    page = sheet_html(evaluation, lambda key: runtime.storage.url(key, base), str(request.url))
    return HTMLResponse(page, headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex"})


def _with_links(evaluation: dict[str, Any], request: Request, runtime: Runtime) -> dict[str, Any]:
    base = base_url(request, runtime)
    links = {"sheet": f"{base}/v1/templates/{evaluation['template']}/evaluations/{evaluation['id']}/sheet"}
    if evaluation["sheet_key"]:
        links["png"] = runtime.storage.url(evaluation["sheet_key"], base)
    return evaluation | {"links": links}
