"""Operator routes (``/v1/admin/...``, admin keys only) and a key's own usage (``/v1/usage``)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from pixelmill.api.deps import PrincipalDep, RuntimeDep
from pixelmill.auth.keys import Principal
from pixelmill.billing.ledger import DAY_MS
from pixelmill.exceptions import Forbidden, NotFound, ValidationError
from pixelmill.media.output import output_profiles
from pixelmill.runtime import Runtime
from pixelmill.tasks.requests import RequestBody

router = APIRouter(tags=["admin"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "code 4: bad parameters"},
    401: {"description": "code 401: missing or invalid API key"},
    403: {"description": "code 403: an admin key is needed"},
}


def admin(principal: PrincipalDep) -> Principal:
    if not principal.is_admin:
        raise Forbidden("this route needs an admin API key")
    return principal


AdminDep = Annotated[Principal, Depends(admin)]
Since = Annotated[int | None, Query(ge=0, description="Start, Unix epoch ms (default: 30 days ago).")]
Until = Annotated[int | None, Query(ge=0, description="End (exclusive), Unix epoch ms (default: now).")]


class PriceUpdate(RequestBody):
    units: int = Field(ge=0, le=1_000_000, description="Quota units one task (or one video clip) of this key costs.")


class BalanceUpdate(RequestBody):
    balance: int | None = Field(ge=0, description="Units left; null makes the key unlimited.")


class Credit(RequestBody):
    units: int = Field(description="Units to add (negative to take away).")
    note: str = Field("", max_length=500)


class BalanceView(BaseModel):
    key_id: str
    balance: int | None = Field(description="Units left; null = unlimited.")


class UsageLine(BaseModel):
    key_id: str
    price_key: str | None
    tasks: int
    charged: int
    refunded: int
    net: int


class EngineCostLine(BaseModel):
    engine: str
    tasks: int
    run_seconds: float
    estimated_cost: float


class DayLine(BaseModel):
    day: int = Field(description="Start of the day (24 h from since), Unix epoch ms.")
    charged: int
    refunded: int
    net: int


class UsageReport(BaseModel):
    since: int
    until: int
    usage: list[UsageLine]
    days: list[DayLine] = Field(description="Units per day of the period that had any, oldest first.")
    engines: list[EngineCostLine]


class OwnUsageReport(UsageReport):
    balance: int | None = Field(description="This key's units left now; null = unlimited.")


def _period(since: int | None, until: int | None) -> tuple[int, int]:
    end = until if until is not None else int(time.time() * 1000)
    start = since if since is not None else end - 30 * DAY_MS
    if start >= end:
        raise ValidationError("since", "must be before until")
    return start, end


def _report(runtime: Runtime, since: int | None, until: int | None, *, key_id: str | None, tenant_id: str | None) -> UsageReport:
    start, end = _period(since, until)
    usage = runtime.ledger.usage(start, end, key_id=key_id, tenant_id=tenant_id)
    costs = runtime.ledger.engine_costs(start, end, runtime.settings.engine_cost_per_second, tenant_id=tenant_id)
    return UsageReport(
        since=start, until=end,
        usage=[UsageLine(key_id=u.key_id, price_key=u.price_key, tasks=u.tasks, charged=u.charged, refunded=u.refunded, net=u.net) for u in usage],
        days=[DayLine(day=d, charged=c, refunded=r, net=c - r) for d, c, r in runtime.ledger.by_day(start, end, key_id=key_id, tenant_id=tenant_id)],
        engines=[EngineCostLine(**c.__dict__) for c in costs],
    )


@router.get("/v1/usage", response_model=OwnUsageReport, responses=_ERRORS)
def own_usage(principal: PrincipalDep, runtime: RuntimeDep, since: Since = None, until: Until = None) -> OwnUsageReport:
    """This key's balance, its charged and refunded units per price key and per day over a period,
    and the engine time its tenant's tasks used."""
    report = _report(runtime, since, until, key_id=principal.key_id, tenant_id=principal.tenant_id)
    return OwnUsageReport(**report.model_dump(), balance=runtime.ledger.balance(principal.key_id))


@router.get("/v1/admin/usage", response_model=UsageReport, responses=_ERRORS)
def usage(_: AdminDep, runtime: RuntimeDep, since: Since = None, until: Until = None, key_id: str | None = None) -> UsageReport:
    """Usage per key and price key, and estimated engine cost per engine, over a period."""
    return _report(runtime, since, until, key_id=key_id, tenant_id=None)


class NewKey(RequestBody):
    tenant: str = Field("default", max_length=64, description="The tenant it belongs to (created when new).")
    name: str = Field("", max_length=200, description="A label, e.g. who uses it.")
    admin: bool = Field(False, description="An admin key (every tenant, the admin routes).")


class CreatedKey(BaseModel):
    key_id: str
    tenant_id: str
    is_admin: bool
    key: str = Field(description="The key itself: shown this once, never stored.")


class KeyLine(BaseModel):
    id: str
    tenant_id: str
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    name: str
    is_admin: bool
    created_at: int
    revoked_at: int | None
    balance: int | None = Field(description="Units left; null = unlimited.")
    output_profile: str | None
    require_template: bool
    rate_per_minute: int | None
    max_concurrent: int | None


@router.get("/v1/admin/keys", response_model=list[KeyLine], responses=_ERRORS)
def list_keys(_: AdminDep, runtime: RuntimeDep) -> list[dict[str, Any]]:
    """Every key, newest first, with its balance, output profile, template policy and limits (never the key)."""
    return runtime.keys.overview()


@router.post("/v1/admin/keys", response_model=CreatedKey, responses=_ERRORS)
def create_key(body: NewKey, principal: AdminDep, runtime: RuntimeDep) -> CreatedKey:
    """A new key; the answer is the only time the key itself is shown. Audited."""
    def audited(conn: Any, key: Any) -> None:
        runtime.audit.record(conn, principal.key_id, "key", key.id, "created", {"tenant": key.tenant_id, "admin": key.is_admin, "name": key.name})

    key, plaintext = runtime.keys.create(tenant_id=body.tenant, name=body.name, is_admin=body.admin, within=audited)
    return CreatedKey(key_id=key.id, tenant_id=key.tenant_id, is_admin=key.is_admin, key=plaintext)


@router.post("/v1/admin/keys/{key_id}/revoke", status_code=204, response_class=Response, responses={**_ERRORS, 404: {"description": "code 3: no live key with this id"}})
def revoke_key(key_id: str, principal: AdminDep, runtime: RuntimeDep) -> Response:
    """Revoke a key: it stops working at once, console sessions included. Audited."""
    if not runtime.keys.revoke(key_id, within=lambda conn: runtime.audit.record(conn, principal.key_id, "key", key_id, "revoked", {})):
        raise NotFound(f"no live key with id {key_id}")
    return Response(status_code=204)


@router.get("/v1/admin/prices", response_model=dict[str, int], responses=_ERRORS)
def get_prices(_: AdminDep, runtime: RuntimeDep) -> dict[str, int]:
    """The price table: units per price key."""
    return runtime.prices.all()


@router.put("/v1/admin/prices/{price_key}", response_model=dict[str, int], responses=_ERRORS)
def put_price(price_key: str, body: PriceUpdate, _: AdminDep, runtime: RuntimeDep) -> dict[str, int]:
    """Set one price; every process charges it within about a second."""
    runtime.prices.set(price_key, body.units)
    return runtime.prices.all()


@router.get("/v1/admin/keys/{key_id}/balance", response_model=BalanceView, responses=_ERRORS)
def get_balance(key_id: str, _: AdminDep, runtime: RuntimeDep) -> BalanceView:
    runtime.keys.get(key_id)  # unknown key: code 4
    return BalanceView(key_id=key_id, balance=runtime.ledger.balance(key_id))


@router.put("/v1/admin/keys/{key_id}/balance", response_model=BalanceView, responses=_ERRORS)
def put_balance(key_id: str, body: BalanceUpdate, _: AdminDep, runtime: RuntimeDep) -> BalanceView:
    """Give a key exactly this many units (recorded in the ledger as a credit), or make it unlimited."""
    return BalanceView(key_id=key_id, balance=runtime.ledger.set_balance(key_id, body.balance))


@router.post("/v1/admin/keys/{key_id}/credit", response_model=BalanceView, responses=_ERRORS)
def credit(key_id: str, body: Credit, _: AdminDep, runtime: RuntimeDep) -> BalanceView:
    """Add units to a limited key."""
    return BalanceView(key_id=key_id, balance=runtime.ledger.credit(key_id, body.units, body.note))


class RetentionUpdate(RequestBody):
    seconds: int | None = Field(description="Keep this tenant's finished tasks and files this long; null: the deployment's default.",
                                ge=60, le=10 * 365 * 86400)


@router.put("/v1/admin/tenants/{tenant_id}/retention", response_model=dict[str, Any], responses=_ERRORS)
def put_retention(tenant_id: str, body: RetentionUpdate, _: AdminDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Set how long a tenant's finished tasks and their files are kept (the sweep removes them after)."""
    if not runtime.retention.set_tenant(tenant_id, body.seconds):
        raise ValidationError("tenant_id", f"no tenant {tenant_id}")
    return {"tenant_id": tenant_id, "retention_seconds": body.seconds}


class OutputProfileUpdate(RequestBody):
    profile: str | None = Field(description="The key's default output profile; null: the deployment's.", max_length=64)


@router.put("/v1/admin/keys/{key_id}/output-profile", response_model=dict[str, Any], responses=_ERRORS)
def put_output_profile(key_id: str, body: OutputProfileUpdate, _: AdminDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Set the output profile a key's tasks use when they name none."""
    known = output_profiles(runtime.settings)
    if body.profile is not None and body.profile not in known:
        raise ValidationError("profile", f"'{body.profile}' is not one of {', '.join(known)}")
    if not runtime.keys.set_output_profile(key_id, body.profile):
        raise ValidationError("key_id", f"no key {key_id}")
    return {"key_id": key_id, "output_profile": body.profile}


class TemplatePolicy(RequestBody):
    require_template: bool = Field(description="true: the key's imagines must name a template (free prompts are refused).")


@router.put("/v1/admin/keys/{key_id}/template-policy", response_model=dict[str, Any], responses=_ERRORS)
def put_template_policy(key_id: str, body: TemplatePolicy, _: AdminDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Require templates for a key (brand-safe apps), or allow free prompts again."""
    if not runtime.keys.set_require_template(key_id, body.require_template):
        raise ValidationError("key_id", f"no key {key_id}")
    return {"key_id": key_id, "require_template": body.require_template}
