"""Peer 2 of bench/peers.py: "FastAPI + procrastinate" on PostgreSQL.

POST /jobs defers a trivial job and answers its id; GET /jobs/{id} answers its status from
procrastinate's own table. Runs in the throwaway venv bench/peers.py builds.
"""

import contextlib
import os

import procrastinate
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

DSN = os.environ["PEERS_PG_DSN"]
queue = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=DSN))
pool = AsyncConnectionPool(DSN, open=False, min_size=4, max_size=16)


@queue.task(name="noop")
async def noop(payload: dict) -> dict:
    return payload


@contextlib.asynccontextmanager
async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
    async with queue.open_async():
        await pool.open()
        yield
        await pool.close()


app = FastAPI(lifespan=lifespan)


@app.post("/jobs")
async def submit(body: dict) -> dict:
    return {"id": await noop.defer_async(payload=body)}


@app.get("/jobs/{job_id}")
async def status(job_id: int) -> dict:
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT status FROM procrastinate_jobs WHERE id = %s", (job_id,))).fetchone()
    return {"id": job_id, "status": "SUCCESS" if row and row[0] == "succeeded" else (row[0] if row else "missing")}
