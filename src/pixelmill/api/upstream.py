"""Remote upstreams: their callbacks, and the accounts of their pools.

Callbacks: an upstream that takes webhooks (another pixelmill) calls here when a task it runs
for us ends (``callbacks`` on a remote engine, ``queue/upstream.py``). The URL names the task and
carries a token only this deployment can make; no API key. The body is not read: the call only
makes the task's poll due now, and the poller asks the upstream itself. So a forged or replayed
call changes nothing but the time of one poll.

Accounts (admin keys): every account of every remote engine with what it is doing now (upstream
tasks running and queued on it, submits in the current windows), how it has done (success rate,
mean latency) and whether it takes tasks, with the reason when not. An admin disables or enables
one; both go to the audit log (kind ``account``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from pixelmill.api.admin import AdminDep
from pixelmill.api.deps import RuntimeDep
from pixelmill.engines.remote import RemoteEngine
from pixelmill.exceptions import NotFound
from pixelmill.runtime import Runtime

router = APIRouter(tags=["upstream"])


class AccountView(BaseModel):
    engine: str
    name: str
    base_url: str
    enabled: bool
    disabled_reason: str | None = Field(description="Why it takes no tasks (null while it does).")
    disabled_by: str | None = Field(description="health (a probe re-enables it), account (a ban, a refused key) or admin (only an admin "
                                                "enables those two).")
    disabled_at: int | None = Field(description="Unix epoch ms.")
    in_flight: int = Field(description="Upstream tasks on the account now: running plus queued.")
    running: int
    queued: int = Field(description="Beyond max_in_flight: waiting in the upstream's own queue.")
    max_in_flight: int | None
    queue_size: int
    weight: float
    speeds: list[str] | None
    submit_per_minute: int | None
    submits_this_minute: int
    daily_limit: int | None
    submits_today: int
    submits: int = Field(description="Submits the account accepted, all time.")
    refused: int = Field(description="Submits it refused (busy, failing, unreachable), all time.")
    failures_in_a_row: int
    succeeded: int = Field(description="Its upstream tasks that ended with a result.")
    failed: int = Field(description="Its upstream tasks that ended without one.")
    success_rate: float | None
    mean_latency_ms: float | None = Field(description="Accepted to ended, over its succeeded upstream tasks.")


class AccountSwitch(BaseModel):
    reason: str = Field("", max_length=500, description="Why, for the account's row and the audit log.")


def _remote(runtime: Runtime, engine: str) -> RemoteEngine:
    found = runtime.engines.get(engine)
    unwrapped = found.unwrapped() if found is not None else None
    if not isinstance(unwrapped, RemoteEngine):
        raise NotFound(f"no remote engine {engine!r}")
    return unwrapped


def _views(runtime: Runtime, name: str, engine: RemoteEngine) -> list[AccountView]:
    views = []
    for state in runtime.upstream.accounts.states(name, list(engine.accounts)):
        config = engine.accounts[state.name].account
        running = state.in_flight if config.max_in_flight is None else min(state.in_flight, config.max_in_flight)
        views.append(AccountView(
            engine=name, name=state.name, base_url=config.base_url, enabled=state.enabled, disabled_reason=state.disabled_reason,
            disabled_by=state.disabled_by, disabled_at=state.disabled_at, in_flight=state.in_flight, running=running,
            queued=state.in_flight - running, max_in_flight=config.max_in_flight, queue_size=config.queue_size, weight=config.weight,
            speeds=list(config.speeds) if config.speeds is not None else None, submit_per_minute=config.submit_per_minute,
            submits_this_minute=state.window_count, daily_limit=config.daily_limit, submits_today=state.day_count,
            submits=state.submits, refused=state.refused, failures_in_a_row=state.failures, succeeded=state.succeeded,
            failed=state.failed, success_rate=state.success_rate, mean_latency_ms=state.mean_latency_ms,
        ))
    return views


@router.get("/v1/admin/accounts", response_model=list[AccountView])
def accounts(_: AdminDep, runtime: RuntimeDep, engine: Annotated[str | None, Query(max_length=64)] = None) -> list[AccountView]:
    """The accounts of every remote engine (or of ``engine``), in configuration order."""
    names = [engine] if engine is not None else list(runtime.engines)
    views: list[AccountView] = []
    for name in names:
        found = runtime.engines.get(name)
        if engine is not None or (found is not None and isinstance(found.unwrapped(), RemoteEngine)):
            views += _views(runtime, name, _remote(runtime, name))
    return views


@router.post("/v1/admin/accounts/{engine}/{account}/disable", response_model=AccountView)
def disable(engine: str, account: str, principal: AdminDep, runtime: RuntimeDep,
            body: Annotated[AccountSwitch | None, Body()] = None) -> AccountView:
    """The account takes no new tasks until an admin enables it (its running tasks finish)."""
    return _switch(runtime, principal.key_id, engine, account, enabled=False, reason=body.reason if body else "")


@router.post("/v1/admin/accounts/{engine}/{account}/enable", response_model=AccountView)
def enable(engine: str, account: str, principal: AdminDep, runtime: RuntimeDep,
           body: Annotated[AccountSwitch | None, Body()] = None) -> AccountView:
    """The account takes tasks again (whoever or whatever disabled it)."""
    return _switch(runtime, principal.key_id, engine, account, enabled=True, reason=body.reason if body else "")


def _switch(runtime: Runtime, actor: str, engine: str, account: str, *, enabled: bool, reason: str) -> AccountView:
    remote = _remote(runtime, engine)
    if account not in remote.accounts:
        raise NotFound(f"engine {engine!r} has no account {account!r}")
    detail: dict[str, Any] = {"reason": reason} if reason else {}
    runtime.upstream.accounts.set_enabled(
        engine, account, enabled, reason,
        within=lambda conn: runtime.audit.record(conn, actor, "account", f"{engine}/{account}", "enabled" if enabled else "disabled", detail),
    )
    return next(v for v in _views(runtime, engine, remote) if v.name == account)


@router.post("/v1/upstream/callbacks/{task_id}", status_code=204, response_class=Response,
             responses={404: {"description": "code 3: no such callback (an unknown task, or a token that is not its own)"}})
async def callback(task_id: str, runtime: RuntimeDep, token: str = Query("", max_length=64)) -> Response:
    """An upstream says the task's upstream task changed; pixelmill asks the upstream at once."""
    if not await run_in_threadpool(runtime.upstream.called_back, task_id, token):
        raise NotFound(f"no callback for task {task_id}")
    return Response(status_code=204)
