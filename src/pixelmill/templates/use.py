"""Turning an imagine that names a template into the imagine it stands for: pick the version
(pinned, or the release tag's, with its rollout), check the caller's parameters against the
version's locks and allowed overrides, render the variables, apply the locked parameters.

The task records what was used (``params.template``): name, version, release, which side of a
rollout, content hash and the variables; provenance metadata and the cache key carry it too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from pixelmill.auth.keys import Principal
from pixelmill.exceptions import NotFound, ValidationError
from pixelmill.tasks.requests import TEMPLATE_FIELDS, ImagineRequest
from pixelmill.templates.spec import PARAMETERS
from pixelmill.templates.store import DEFAULT_RELEASE, Reader, TemplateStore


@dataclass(frozen=True)
class Rendered:
    request: ImagineRequest
    #: What the task records as ``params.template``.
    info: dict[str, Any]


def reader_of(principal: Principal) -> Reader:
    """Whose templates a caller may read and use: an admin key any, another key its tenant's and
    the shared ones."""
    return None if principal.is_admin else principal.tenant_id


def render_request(
    store: TemplateStore, req: ImagineRequest, subject: str, *, reader: Reader, trusted: tuple[str, ...] = ()
) -> Rendered:
    """``req`` with its template applied, if ``reader`` may use it (a tenant: its own templates
    and shared ones; None: any). ``trusted`` parameters skip the override check: an evaluation
    fixes the seed of every task it makes."""
    assert req.template is not None
    name = req.template
    if not store.exists(name, reader):
        raise ValidationError("template", f"no template {name}")
    try:
        if req.template_version is not None:
            version, release, side = req.template_version, None, "pinned"
        else:
            release = req.release or DEFAULT_RELEASE
            version, side = store.release(name, release).choose(subject)
        spec = store.spec(name, version)
    except NotFound as exc:
        raise ValidationError("template_version" if req.template_version is not None else "release", exc.description) from None
    given = {n: getattr(req, n) for n in PARAMETERS if getattr(req, n) is not None}
    for field in given:
        if field in spec.locked:
            raise ValidationError(field, f"locked by template {name} v{version} to {spec.locked[field]!r}; a template's brand rules cannot be overridden")
        if field not in spec.overrides and field not in trusted:
            allowed = ", ".join(spec.overrides) or "none"
            raise ValidationError(field, f"not an override template {name} v{version} allows (allowed: {allowed})")
    prompt = spec.render(req.variables)
    fields = req.model_dump(exclude_none=True, exclude=set(TEMPLATE_FIELDS)) | spec.locked | {"prompt": prompt}
    if spec.negative_prompt is not None and "negative_prompt" not in fields:
        fields["negative_prompt"] = spec.negative_prompt
    info = {
        "name": name, "version": version, "release": release, "rollout": side, "content_hash": spec.content_hash(),
        "variables": dict(req.variables or {}),
    }
    try:
        return Rendered(ImagineRequest.model_validate(fields), info)
    except PydanticValidationError as exc:  # the template's fault, not the caller's: say whose
        raise ValidationError("template", f"template {name} v{version} renders an invalid request: {exc}") from None
