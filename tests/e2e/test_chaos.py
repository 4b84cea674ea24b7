"""The chaos run at a small scale (bench/chaos.py runs it at 1,000 tasks): PostgreSQL, S3 behind a
gate, 2 API and 3 worker processes, processes SIGKILLed and restarted, every PostgreSQL connection
dropped once, storage unreachable for a while, one worker's clock a minute ahead. Every promise
holds: nothing lost, nothing twice, refunds exactly once, webhooks in order, files there."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import _postgres_admin_url
from tests.helpers import require_extra

pytestmark = pytest.mark.postgres


def test_a_small_chaos_run_keeps_every_promise(tmp_path: Path, postgres_url: str) -> None:
    require_extra("boto3", "s3")
    from pixelmill.chaos import Config, run

    config = Config(tasks=60, clients=4, kill_every=3.0, postgres_fault="terminate", storage_outage_seconds=4.0,
                    deadline_seconds=180, admin_url=_postgres_admin_url())
    report = run(config, tmp_path)
    assert report.clean, "\n".join(report.lines())
    assert report.accepted >= 60 and report.kills >= 1 and report.webhook_events > 0
