"""The calling key's default webhook and its signing secret (``/v1/webhook``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from pixelmill.api.deps import PrincipalDep, RuntimeDep
from pixelmill.auth.keys import WebhookSettings
from pixelmill.tasks.requests import DEFAULT_WEBHOOK_EVENTS, WEBHOOK_EVENTS_MAX, RequestBody, Url, WebhookEvent

router = APIRouter(prefix="/v1/webhook", tags=["webhooks"])


class WebhookView(BaseModel):
    url: str | None = Field(description="Where tasks of this key that name no webhook_url send their events.")
    events: list[str] = Field(description="Events sent to the default URL.")
    secret: str = Field(description="Verify deliveries with it (Standard Webhooks; the SDK's verify_webhook).")


class WebhookUpdate(RequestBody):
    url: Url | None = Field(None, description="The default webhook URL; null removes it.")
    events: Annotated[list[WebhookEvent], Field(min_length=1, max_length=WEBHOOK_EVENTS_MAX)] | None = Field(
        None, description="start, progress, completed, reviewed, files (default: all but files)."
    )
    rotate_secret: bool = Field(False, description="Make a new signing secret; the old one stops at once.")


def _view(settings: WebhookSettings) -> WebhookView:
    return WebhookView(url=settings.url, events=list(settings.events or DEFAULT_WEBHOOK_EVENTS), secret=settings.secret)


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "code 4: the URL is not a public http(s) address, or a bad field"},
    401: {"description": "code 401: missing or invalid API key"},
}


@router.get("", response_model=WebhookView, responses=_ERRORS)
async def get_webhook(principal: PrincipalDep, runtime: RuntimeDep) -> WebhookView:
    """This key's default webhook and the secret its deliveries are signed with."""
    return _view(await run_in_threadpool(runtime.keys.webhook_settings, principal.key_id))


@router.put("", response_model=WebhookView, responses=_ERRORS)
def put_webhook(body: WebhookUpdate, principal: PrincipalDep, runtime: RuntimeDep) -> WebhookView:
    """Set or clear this key's default webhook; optionally rotate the signing secret."""
    if body.url is not None:
        runtime.service.check_webhook_url(body.url, "url")
    events = tuple(dict.fromkeys(body.events)) if body.events else None
    return _view(runtime.keys.set_webhook(principal.key_id, body.url, events, rotate_secret=body.rotate_secret))
