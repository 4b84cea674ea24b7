from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from pixelmill.auth.keys import KeyStore
from pixelmill.clock import ManualClock
from pixelmill.db.engine import make_engine
from pixelmill.db.migrate import upgrade
from pixelmill.queue.store import TaskStore


@pytest.fixture
def db(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:  # the session database is shared: start each test empty
            conn.execute(text("TRUNCATE tasks, api_keys, tenants CASCADE"))
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(db: Engine, clock: ManualClock) -> TaskStore:
    KeyStore(db, clock).create(tenant_id="acme")
    return TaskStore(db, clock)
