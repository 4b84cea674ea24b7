"""Test-only helpers on top of ``pixelmill.testing``."""

from __future__ import annotations

from typing import Any

import httpx

from pixelmill.testing import Server, free_port, wait_for

__all__ = ["Server", "free_port", "wait_for", "wait_terminal"]


def wait_terminal(client: httpx.Client, task_id: str, timeout: float = 30) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        task = client.get(f"/v1/midjourney/{task_id}").json()
        return task if task["status"] in ("SUCCESS", "FAILURE", "CANCEL") else None

    return wait_for(done, timeout=timeout, what=f"task {task_id} to finish")
