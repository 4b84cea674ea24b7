"""Leases, schedules and timeouts by the database's clock: a host whose clock runs a minute ahead
takes no live task from another (PostgreSQL; SQLite lives on one host, with one clock)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from pixelmill.auth.keys import KeyStore
from pixelmill.clock import DatabaseClock, SystemClock, clock_for
from pixelmill.queue.store import TaskStore
from tests.queue.test_store import LANES, new_task

pytestmark = pytest.mark.postgres


def test_a_host_a_minute_ahead_keeps_the_databases_time(pg: Engine) -> None:
    honest, ahead = DatabaseClock(pg), DatabaseClock(pg, SystemClock(skew_seconds=60))
    assert abs(ahead.now_ms() - honest.now_ms()) < 1_000
    assert isinstance(clock_for(pg, 60), DatabaseClock)
    KeyStore(pg, honest).create(tenant_id="acme")
    store = TaskStore(pg, honest)
    task = store.insert(new_task(), queue_limit=10)
    assert store.claim("live-worker", LANES, lease_seconds=30) is not None
    # The skewed host's scheduler sees a lease 30 s from expiry, not 30 s past it.
    assert TaskStore(pg, ahead).requeue_expired() == (0, 0)
    assert TaskStore(pg, ahead).expire_stale(queue_timeout_seconds=45, run_timeout_seconds=45) == 0
    # What the host's own clock would have done: requeue the live task (and run it twice).
    assert TaskStore(pg, SystemClock(skew_seconds=60)).requeue_expired() == (1, 0)
    assert store.get(task.id).attempt == 1  # type: ignore[union-attr]
