"""Versioned prompt templates (``/v1/templates``): versions, release tags and rollouts,
evaluation sets and evaluations with their contact sheets.

A template belongs to a tenant, or is shared with every tenant by an admin. A key reads and
submits with its tenant's templates and the shared ones (``POST /v1/midjourney/generations/imagine``
with ``template`` + ``variables``); another tenant's are answered 404. Changes need an admin key
and are written to the audit log (``GET /v1/admin/audit?kind=template``). A contact sheet opens
without a key only by the signed, expiring link the evaluation gives."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import Field

from pixelmill.api.admin import AdminDep
from pixelmill.api.deps import PrincipalDep, RuntimeDep, base_url
from pixelmill.exceptions import Forbidden, ValidationError
from pixelmill.runtime import Runtime
from pixelmill.submit.evaluations import sheet_html
from pixelmill.tasks.requests import RequestBody, VariableValue
from pixelmill.templates.spec import TemplateSpec
from pixelmill.templates.use import reader_of

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
    tenant: str | None = Field(None, max_length=64, description="The tenant whose keys may use it (default: the admin key's).")
    shared: bool = Field(False, description="Every tenant's keys may use it (a deployment-wide template).")


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


def _readable(name: str, principal: PrincipalDep, runtime: RuntimeDep) -> str:
    """The template in the path, if the caller's tenant may read it (its own, or shared; an admin
    key any): another tenant's template is answered 404 like a missing one."""
    runtime.templates.check_readable(name, reader_of(principal))
    return name


#: A template name from the path that the caller may read.
Readable = Annotated[str, Depends(_readable)]
#: How long a contact-sheet link handed out by the API opens the page without a key.
SHEET_LINK_SECONDS = 7 * 86_400


def _spec(body: TemplateSpec) -> TemplateSpec:
    return TemplateSpec.model_validate(body.model_dump(include=set(TemplateSpec.model_fields)))


@router.get("")
def list_templates(runtime: RuntimeDep, principal: PrincipalDep) -> list[dict[str, Any]]:
    """The templates this key may use: its tenant's and the shared ones (an admin key: all)."""
    return runtime.templates.names(reader_of(principal))


@router.post("")
def create_template(body: NewTemplate, runtime: RuntimeDep, principal: AdminDep) -> dict[str, Any]:
    """A new template with version 1 as a draft, owned by ``tenant`` (default: the admin key's
    tenant), or shared with every tenant (``shared: true``)."""
    if body.shared and body.tenant is not None:
        raise ValidationError("shared", "a shared template belongs to no tenant; send tenant or shared, not both")
    owner = None if body.shared else (body.tenant or principal.tenant_id)
    return runtime.templates.create(body.name, body.description, _spec(body), principal.key_id, body.note, body.author,
                                    tenant_id=owner)


@router.get("/{name}")
def show_template(name: Readable, runtime: RuntimeDep) -> dict[str, Any]:
    """The template, its versions (newest first) and its release tags."""
    return runtime.templates.show(name)


@router.post("/{name}/versions")
def add_version(name: str, body: NewVersion, runtime: RuntimeDep, principal: AdminDep) -> dict[str, Any]:
    """A new draft version after the last one."""
    return runtime.templates.add_version(name, _spec(body), principal.key_id, body.note, body.author)


@router.get("/{name}/versions/{version}")
def get_version(name: Readable, version: int, runtime: RuntimeDep) -> dict[str, Any]:
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
    name: Readable, runtime: RuntimeDep, principal: PrincipalDep,
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
def get_set(name: Readable, set_name: str, runtime: RuntimeDep) -> dict[str, Any]:
    return runtime.templates.get_set(name, set_name)


@router.post("/{name}/evaluations")
def start_evaluation(name: str, body: NewEvaluation, request: Request, runtime: RuntimeDep, principal: AdminDep) -> dict[str, Any]:
    """Generate the set on both versions (batch lane, fixed seeds, charged to this key)."""
    evaluation = runtime.evaluations.start(principal, name, body.set, body.baseline, body.candidate, body.seed)
    return _with_links(evaluation, request, runtime)


@router.get("/{name}/evaluations")
def list_evaluations(name: Readable, request: Request, runtime: RuntimeDep) -> list[dict[str, Any]]:
    return [_with_links(e, request, runtime) for e in runtime.evaluations.list_for(name)]


@router.get("/{name}/evaluations/{evaluation_id}")
async def get_evaluation(name: Readable, evaluation_id: str, request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    """The evaluation: pairs with their scores and summary once every task has ended."""
    evaluation = await run_in_threadpool(runtime.evaluations.get, name, evaluation_id)
    return _with_links(evaluation, request, runtime)


@router.get("/{name}/evaluations/{evaluation_id}/sheet", response_class=HTMLResponse, responses={200: {"content": {"text/html": {}}}})
async def evaluation_sheet(
    name: str, evaluation_id: str, request: Request, runtime: RuntimeDep,
    expires: Annotated[int, Query(description="When the link stops working (Unix seconds).")] = 0,
    sig: Annotated[str, Query(max_length=64, description="The link's signature.")] = "",
) -> HTMLResponse:
    """The contact sheet page, without a key, by the signed link the evaluation's ``links.sheet``
    gives (valid 7 days); it shows the evaluation as stored and does no work."""
    if not runtime.links.valid(_sheet_path(name, evaluation_id), expires, sig, time.time()):
        raise Forbidden("this link is not valid or has expired; get a new one: GET the evaluation with your API key")
    evaluation = await run_in_threadpool(runtime.evaluations.peek, name, evaluation_id)
    base = base_url(request, runtime)
    page = sheet_html(evaluation, lambda key: runtime.storage.url(key, base), str(request.url))
    return HTMLResponse(page, headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex"})


def _sheet_path(name: str, evaluation_id: str) -> str:
    return f"/v1/templates/{name}/evaluations/{evaluation_id}/sheet"


def _with_links(evaluation: dict[str, Any], request: Request, runtime: Runtime) -> dict[str, Any]:
    base = base_url(request, runtime)
    path = _sheet_path(evaluation["template"], evaluation["id"])
    expires = int(time.time()) + SHEET_LINK_SECONDS
    links = {"sheet": f"{base}{path}?expires={expires}&sig={runtime.links.sign(path, expires)}"}
    if evaluation["sheet_key"]:
        links["png"] = runtime.storage.url(evaluation["sheet_key"], base)
    return evaluation | {"links": links}
