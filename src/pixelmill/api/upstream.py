"""Upstream callbacks: an upstream that takes webhooks (another pixelmill) calls here when a task
it runs for us ends (``callbacks`` on a remote engine, ``queue/upstream.py``).

The URL names the task and carries a token only this deployment can make; no API key. The body
is not read: the call only makes the task's poll due now, and the poller asks the upstream
itself. So a forged or replayed call changes nothing but the time of one poll.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from pixelmill.api.deps import RuntimeDep
from pixelmill.exceptions import NotFound

router = APIRouter(prefix="/v1/upstream", tags=["upstream"])


@router.post("/callbacks/{task_id}", status_code=204, response_class=Response,
             responses={404: {"description": "code 3: no such callback (an unknown task, or a token that is not its own)"}})
async def callback(task_id: str, runtime: RuntimeDep, token: str = Query("", max_length=64)) -> Response:
    """An upstream says the task's upstream task changed; pixelmill asks the upstream at once."""
    if not await run_in_threadpool(runtime.upstream.called_back, task_id, token):
        raise NotFound(f"no callback for task {task_id}")
    return Response(status_code=204)
