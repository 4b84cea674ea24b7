"""A small synchronous client for the pixelmill task API."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import httpx

from pixelmill.exceptions import ValidationError
from pixelmill.notify.signing import verify
from pixelmill.tasks.requests import OPERATION_BODIES, BatchRequest, ImagineRequest, RequestBody, validated

TERMINAL = ("SUCCESS", "FAILURE", "CANCEL")


class APIError(Exception):
    """The service refused a request; ``code`` is the envelope's code (4, 3, 23, 401, ...)."""

    def __init__(self, status_code: int, code: int, description: str) -> None:
        super().__init__(f"[{status_code} / code {code}] {description}")
        self.status_code = status_code
        self.code = code
        self.description = description


class TaskFailed(Exception):
    def __init__(self, task: dict[str, Any]) -> None:
        super().__init__(f"task {task['task_id']} ended {task['status']}: {task.get('fail_reason')}")
        self.task = task


class NeedsModal(Exception):
    """The task waits in MODAL: call ``Client.modal`` (inpaint: prompt + mask_url; custom zoom:
    zoom) within 30 minutes, or it is cancelled and refunded."""

    def __init__(self, task: dict[str, Any]) -> None:
        super().__init__(f"task {task['task_id']} ({task['action']}) waits for a /modal call")
        self.task = task


def verify_webhook(body: bytes | str, headers: Any, secret: str, *, tolerance_seconds: float = 300) -> dict[str, Any]:
    """Check a pixelmill webhook delivery (Standard Webhooks) and return its payload:
    ``{"type": "task.completed", "sequence": n, "data": <task object>, ...}``.

    ``body`` is the raw request body exactly as received; ``headers`` any mapping of the request's
    headers; ``secret`` the key's ``whsec_...`` (``Client.webhook()["secret"]``). Raises
    ``WebhookVerificationError`` when the signature or timestamp does not hold. Deliveries of one
    task arrive in ``sequence`` order; a retry repeats its ``webhook-id``, so drop ids already seen."""
    return verify(body, dict(headers.items()), secret, tolerance_seconds=tolerance_seconds)



def check_body(model: type[RequestBody], fields: dict[str, Any]) -> dict[str, Any]:
    """The request body as the server will see it, or the server's own code-4 answer, raised."""
    try:
        request = validated(model, fields)
        if isinstance(request, ImagineRequest) and request.template is None:  # a template is rendered by the server
            request.to_prompt()
    except ValidationError as exc:
        raise APIError(400, exc.code, exc.description) from None
    return request.model_dump(mode="json", exclude_none=True)


class Client:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def submit(self, action: str, body: dict[str, Any]) -> str:
        """Submit ``body`` to ``/v1/midjourney/generations/<action>``; returns the task id."""
        return self.submit_all(action, body)[0]

    def submit_all(self, action: str, body: dict[str, Any]) -> list[str]:
        """Like ``submit``, returning every task id (one per run of ``--repeat``)."""
        data = self._json(self._http.post(f"/v1/midjourney/generations/{action}", json=body))
        return [str(item["task_id"]) for item in data["data"]]

    def imagine(self, prompt: str, **fields: Any) -> str:
        """Submit an imagine; ``fields`` are the body fields (``aspect_ratio="16:9"``, ``seed=7``,
        ``niji=True`` ...). They are checked here by the same model the server uses, so a bad
        value raises ``APIError`` (code 4) with the server's words, before any request."""
        return self.imagine_all(prompt, **fields)[0]

    def imagine_all(self, prompt: str, **fields: Any) -> list[str]:
        """``imagine`` returning every task id: several when the prompt has ``--repeat``."""
        return self.submit_all("imagine", check_body(ImagineRequest, {"prompt": prompt, **fields}))

    def imagine_template(self, template: str, variables: dict[str, Any] | None = None, **fields: Any) -> str:
        """Submit an imagine from a published template (``release=``, ``template_version=``,
        ``subject_id=`` and the overrides it allows go in ``fields``); returns the task id."""
        body = check_body(ImagineRequest, {"template": template, "variables": variables or {}, **fields})
        return self.submit_all("imagine", body)[0]

    # Every follow-up is checked locally by the server's own request model, like imagine.

    def _operation(self, name: str, fields: dict[str, Any]) -> str:
        return self.submit(name, check_body(OPERATION_BODIES[name], fields))

    def upscale(self, task_id: str, index: int | None = None, *, mode: str | None = None, **fields: Any) -> str:
        """Pick image ``index`` of a grid, or enlarge a picture 2× with ``mode`` subtle / creative."""
        return self._operation("upscale", {"task_id": task_id, "index": index, "mode": mode, **fields})

    def variation(self, task_id: str, index: int | None = None, *, mode: str | None = None, prompt: str | None = None, **fields: Any) -> str:
        """Four variations (``mode`` subtle / strong); with ``prompt`` a remix."""
        body = {"task_id": task_id, "index": index, "mode": mode, "prompt": prompt, **fields}
        return self._operation("variation", body)

    def reroll(self, task_id: str, **fields: Any) -> str:
        return self._operation("reroll", {"task_id": task_id, **fields})

    def zoom(self, task_id: str, index: int | None = None, *, zoom: float | None = None, custom: bool | None = None, **fields: Any) -> str:
        """Zoom out by ``zoom`` (1-2); ``custom=True`` waits in MODAL for ``modal(task_id, zoom=...)``."""
        return self._operation("zoom", {"task_id": task_id, "index": index, "zoom": zoom, "custom": custom, **fields})

    def pan(self, task_id: str, direction: str, index: int | None = None, **fields: Any) -> str:
        return self._operation("pan", {"task_id": task_id, "index": index, "direction": direction, **fields})

    def inpaint(self, task_id: str, index: int | None = None, **fields: Any) -> str:
        """Vary a region: the task waits in MODAL until ``modal(task_id, prompt=..., mask_url=...)``."""
        return self._operation("inpaint", {"task_id": task_id, "index": index, **fields})

    def modal(self, task_id: str, **fields: Any) -> str:
        return self._operation("modal", {"task_id": task_id, **fields})

    def describe(self, image_url: str | None = None, **fields: Any) -> str:
        return self._operation("describe", {"image_url": image_url, **fields})

    def blend(self, image_urls: list[str], dimensions: str = "SQUARE", **fields: Any) -> str:
        return self._operation("blend", {"image_urls": image_urls, "dimensions": dimensions, **fields})

    def shorten(self, prompt: str, **fields: Any) -> str:
        return self._operation("shorten", {"prompt": prompt, **fields})

    def video(self, **fields: Any) -> str:
        """MP4 clips: ``image_url=...`` or ``task_id=..., index=0``; ``batch_size`` clips (each billed)."""
        return self._operation("video", fields)

    def press(self, custom_id: str, **fields: Any) -> str:
        """Press a button of a finished task (``task["buttons"][n]["custom_id"]``)."""
        return self._operation("action", {"custom_id": custom_id, **fields})

    def batch(self, **fields: Any) -> str:
        """Submit a batch job (``requests=[{...}, ...]`` or ``prompt_template=...,
        variables=[{...}, ...]``); returns the batch id. Checked locally like ``imagine``."""
        data = self._json(self._http.post("/v1/batches", json=check_body(BatchRequest, fields)))
        return str(data["data"][0]["batch_id"])

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        return self._json(self._http.get(f"/v1/batches/{batch_id}"))

    def wait_batch(self, batch_id: str, *, timeout: float = 3600.0, poll_interval: float = 5.0) -> dict[str, Any]:
        """Poll until the batch is completed or cancelled; returns its status."""
        deadline = time.monotonic() + timeout
        while (status := self.get_batch(batch_id))["status"] == "running":
            if time.monotonic() >= deadline:
                raise TimeoutError(f"batch {batch_id} still running after {timeout:g}s ({status['done']}/{status['total']} done)")
            time.sleep(poll_interval)
        return status

    def batch_manifest(self, batch_id: str) -> list[dict[str, Any]]:
        """Every task of the batch with its outputs and metadata, in batch order."""
        tasks: list[dict[str, Any]] = self._json(self._http.get(f"/v1/batches/{batch_id}/manifest"))["tasks"]
        return tasks

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        return self._json(self._http.post(f"/v1/batches/{batch_id}/cancel"))

    def webhook(self) -> dict[str, Any]:
        """This key's default webhook and its signing secret: ``{"url", "events", "secret"}``."""
        return self._json(self._http.get("/v1/webhook"))

    def set_webhook(self, url: str | None, events: list[str] | None = None, *, rotate_secret: bool = False) -> dict[str, Any]:
        body = {"url": url, "events": events, "rotate_secret": rotate_secret}
        return self._json(self._http.put("/v1/webhook", json=body))

    def upload(self, image: bytes | Path, content_type: str = "application/octet-stream") -> dict[str, Any]:
        """Store an image (PNG, JPEG or WebP) in pixelmill; returns ``{"url", "width", ...}``. The
        URL works in every image field (``image_urls``, ``sref``, masks) with no fetch."""
        data = image.read_bytes() if isinstance(image, Path) else image
        answer = self._json(self._http.post("/v1/uploads", content=data, headers={"Content-Type": content_type}))
        uploaded: dict[str, Any] = answer["data"][0]
        return uploaded

    def get(self, task_id: str) -> dict[str, Any]:
        return self._json(self._http.get(f"/v1/midjourney/{task_id}"))

    # --- templates -----------------------------------------------------------------------------------

    def templates(self) -> list[dict[str, Any]]:
        return self._json_list(self._http.get("/v1/templates"))

    def template(self, name: str) -> dict[str, Any]:
        """The template with its versions (newest first) and release tags."""
        return self._json(self._http.get(f"/v1/templates/{name}"))

    def create_template(self, name: str, spec: dict[str, Any], *, description: str = "", note: str = "", author: str | None = None) -> dict[str, Any]:
        body = {"name": name, "description": description, "note": note, **spec} | ({"author": author} if author else {})
        return self._json(self._http.post("/v1/templates", json=body))

    def add_template_version(self, name: str, spec: dict[str, Any], *, note: str = "", author: str | None = None) -> dict[str, Any]:
        body = {"note": note, **spec} | ({"author": author} if author else {})
        return self._json(self._http.post(f"/v1/templates/{name}/versions", json=body))

    def edit_template_version(self, name: str, version: int, spec: dict[str, Any], *, note: str = "") -> dict[str, Any]:
        """Change a draft version (a published one answers 409)."""
        return self._json(self._http.put(f"/v1/templates/{name}/versions/{version}", json={"note": note, **spec}))

    def publish_template(self, name: str, version: int) -> dict[str, Any]:
        return self._json(self._http.post(f"/v1/templates/{name}/versions/{version}/publish"))

    def release_template(self, name: str, tag: str, version: int) -> dict[str, Any]:
        return self._json(self._http.put(f"/v1/templates/{name}/releases/{tag}", json={"version": version}))

    def rollout_template(self, name: str, tag: str, version: int, percent: int) -> dict[str, Any]:
        return self._json(self._http.post(f"/v1/templates/{name}/releases/{tag}/rollout", json={"version": version, "percent": percent}))

    def release_action(self, name: str, tag: str, action: str) -> dict[str, Any]:
        """``promote``, ``pause``, ``resume`` or ``rollback`` on a release tag."""
        return self._json(self._http.post(f"/v1/templates/{name}/releases/{tag}/{action}"))

    def put_evaluation_set(self, name: str, set_name: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        return self._json(self._http.put(f"/v1/templates/{name}/sets/{set_name}", json={"items": items}))

    def evaluate_template(self, name: str, set_name: str, baseline: int, candidate: int, seed: int = 0) -> dict[str, Any]:
        body = {"set": set_name, "baseline": baseline, "candidate": candidate, "seed": seed}
        return self._json(self._http.post(f"/v1/templates/{name}/evaluations", json=body))

    def evaluation(self, name: str, evaluation_id: str) -> dict[str, Any]:
        return self._json(self._http.get(f"/v1/templates/{name}/evaluations/{evaluation_id}"))

    # --- review queue (admin keys) -----------------------------------------------------------------

    def reviews(self, state: str = "pending", tenant: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Output images held for review, oldest first."""
        params: dict[str, str | int] = {"state": state, "limit": limit}
        if tenant:
            params["tenant"] = tenant
        return self._json_list(self._http.get("/v1/admin/reviews", params=params))

    def review(self, review_id: str) -> dict[str, Any]:
        return self._json(self._http.get(f"/v1/admin/reviews/{review_id}"))

    def review_image(self, review_id: str) -> bytes:
        """The held image (PNG) of a pending review."""
        r = self._http.get(f"/v1/admin/reviews/{review_id}/image")
        if r.status_code != 200:
            self._json(r)
        return r.content

    def approve_review(self, review_id: str, note: str | None = None) -> dict[str, Any]:
        """Publish the held image into its task; returns ``{"review", "task"}``."""
        return self._json(self._http.post(f"/v1/admin/reviews/{review_id}/approve", json={"note": note}))

    def reject_review(self, review_id: str, note: str | None = None) -> dict[str, Any]:
        return self._json(self._http.post(f"/v1/admin/reviews/{review_id}/reject", json={"note": note}))

    def audit(self, kind: str | None = None, subject: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The audit log, newest first."""
        params: dict[str, str | int] = {"limit": limit} | ({"kind": kind} if kind else {}) | ({"subject": subject} if subject else {})
        return self._json_list(self._http.get("/v1/admin/audit", params=params))

    # --- upstream accounts (admin keys) -----------------------------------------------------------

    def accounts(self, engine: str | None = None) -> list[dict[str, Any]]:
        """The accounts of the remote engines' pools, with what each is doing and its health."""
        return self._json_list(self._http.get("/v1/admin/accounts", params={"engine": engine} if engine else {}))

    def set_account(self, engine: str, account: str, *, enabled: bool, reason: str = "") -> dict[str, Any]:
        """Enable an account, or disable it until an admin enables it again."""
        action = "enable" if enabled else "disable"
        return self._json(self._http.post(f"/v1/admin/accounts/{engine}/{account}/{action}", json={"reason": reason}))

    def wait(
        self,
        task_id: str,
        *,
        timeout: float = 300.0,
        poll_interval: float = 1.0,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the task is terminal. Returns it on SUCCESS; raises ``TaskFailed`` otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            task = self.get(task_id)
            if on_update is not None:
                on_update(task)
            if task["status"] == "SUCCESS":
                return task
            if task["status"] in TERMINAL:
                raise TaskFailed(task)
            if task["status"] == "MODAL":
                raise NeedsModal(task)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"task {task_id} still {task['status']} after {timeout:g}s")
            time.sleep(poll_interval)

    def download(self, url: str) -> bytes:
        r = self._http.get(url)
        r.raise_for_status()
        return r.content

    @staticmethod
    def _answer(response: httpx.Response) -> Any:
        """The decoded JSON of a successful answer; a refusal raises ``APIError``."""
        try:
            data = response.json()
        except ValueError:
            raise APIError(response.status_code, response.status_code, response.text[:200]) from None
        if response.status_code != 200 or ("code" in data and data["code"] not in (1, 21, 200)):
            raise APIError(response.status_code, data.get("code", response.status_code), data.get("description", ""))
        return data

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        """An answer that is a JSON object (most routes)."""
        data: dict[str, Any] = Client._answer(response)
        return data

    @staticmethod
    def _json_list(response: httpx.Response) -> list[dict[str, Any]]:
        """An answer that is a JSON array (the listings: templates, reviews, audit)."""
        data: list[dict[str, Any]] = Client._answer(response)
        return data
