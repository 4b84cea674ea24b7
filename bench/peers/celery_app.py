"""Peer 1 of bench/peers.py: what a team builds instead of pixelmill, "FastAPI + Celery + Redis".

POST /jobs queues a trivial job and answers its id; GET /jobs/{id} answers its state. No auth,
no validation, no billing, no idempotency: the bare queue pixelmill is compared against. Runs in
the throwaway venv bench/peers.py builds, never in pixelmill's own.
"""

import os

from celery import Celery
from celery.result import AsyncResult
from fastapi import FastAPI

REDIS = os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379/0")
queue = Celery("peers", broker=REDIS, backend=REDIS)
queue.conf.update(task_ignore_result=False, worker_prefetch_multiplier=4, broker_connection_retry_on_startup=True)
app = FastAPI()


@queue.task(name="noop")
def noop(payload: dict) -> dict:
    return payload


@app.post("/jobs")
def submit(body: dict) -> dict:
    return {"id": noop.delay(body).id}


@app.get("/jobs/{job_id}")
def status(job_id: str) -> dict:
    return {"id": job_id, "status": AsyncResult(job_id, app=queue).state}
