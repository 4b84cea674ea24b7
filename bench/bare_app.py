"""The reference point of bench/quick.py: a bare FastAPI app on the same uvicorn, no work at all.
A submit answers a fixed id; a poll answers "done"."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app = FastAPI()


@app.post("/submit")
def submit(body: dict[str, Any]) -> dict[str, Any]:
    return {"code": 1, "data": [{"task_id": "1"}]}


@app.get("/task/{task_id}")
def task(task_id: str) -> dict[str, Any]:
    return {"task_id": task_id, "status": "SUCCESS"}
