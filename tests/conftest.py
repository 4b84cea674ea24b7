from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, create_engine, text

from pixelmill.auth.keys import KeyStore, Principal
from pixelmill.clock import ManualClock
from pixelmill.db.engine import make_engine
from pixelmill.db.migrate import upgrade
from pixelmill.queue.store import TaskStore
from pixelmill.runtime import Runtime
from tests.helpers import Server, free_port, require_extra, wait_for

TEST_KEY = "pm_test_" + "k" * 32

# Property tests draw the same examples on every run (derived from each test, not from a random
# seed), and never fail on a slow machine's timing (no deadline, no "too slow" health check): a
# run of the suite never depends on chance. `HYPOTHESIS_PROFILE=explore` draws fresh examples.
hypothesis_settings.register_profile("pixelmill", derandomize=True, deadline=None, database=None, print_blob=True,
                                     suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.register_profile("explore", deadline=None, database=None, max_examples=1000, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "pixelmill"))


@pytest.fixture
def acme(runtime: Runtime) -> Principal:
    """A key of tenant acme, in the ``runtime`` fixture of the module that asks for it."""
    key, _ = runtime.keys.create(tenant_id="acme")
    return Principal(key.id, "acme", False)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server process (SQLite, local storage, procedural engine) shared by API tests.

    127.0.0.2 is allow-listed for image URLs, as an operator would list an internal image store,
    so tests can serve input images from loopback; everything else on loopback stays refused.
    No rate or concurrency caps: the fuzz test submits hundreds of tasks with this one key (the
    caps are tested on servers of their own)."""
    srv = Server(
        tmp_path_factory.mktemp("server"), TEST_KEY, fetch_allow='["127.0.0.2/32"]', rate_per_minute=0, max_concurrent_tasks=0
    ).start()
    yield srv
    srv.stop()


@pytest.fixture
def api(server: Server) -> Iterator:
    with server.client() as c:
        yield c


def _postgres_admin_url() -> str:
    return os.environ.get("PIXELMILL_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards.

    Skipped when no server answers, except in CI (CI=true), where PostgreSQL is part of the
    environment and its absence is a failure.
    """
    admin_url = _postgres_admin_url()
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"pixelmill_test_{secrets.token_hex(4)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # any connection problem means "no server"
        admin.dispose()
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL not reachable at {admin_url}: {exc}")
    yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on both databases (one conformance suite for every backend)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def db(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:  # the session database is shared: start each test empty
            conn.execute(text("TRUNCATE tasks, api_keys, tenants, prices, templates, reviews, audit_log, upstream_tasks, upstream_accounts CASCADE"))
    yield engine
    engine.dispose()


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Engine]:
    """PostgreSQL only, emptied: for what exists only there (LISTEN/NOTIFY, its clock)."""
    engine = make_engine(postgres_url)
    upgrade(engine)
    with engine.begin() as conn:
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


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on loopback, and credentials for it in this process's environment."""
    require_extra("boto3", "s3")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)
    try:
        wait_for(lambda: _answers(url), timeout=30, what="moto S3 server")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.TransportError:
        return False
