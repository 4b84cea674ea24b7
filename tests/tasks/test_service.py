from __future__ import annotations

from pathlib import Path

import pytest

from pixelmill.auth.keys import KeyStore, Principal
from pixelmill.clock import ManualClock
from pixelmill.db.engine import make_engine
from pixelmill.db.migrate import upgrade
from pixelmill.exceptions import EngineUnavailable
from pixelmill.queue.store import TaskStore
from pixelmill.settings import Settings
from pixelmill.tasks.requests import ImagineRequest
from pixelmill.tasks.service import TaskService


def test_no_engine_instance_is_503_code_3_without_the_word_task(tmp_path: Path) -> None:
    db = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(db)
    clock = ManualClock()
    KeyStore(db, clock).create(tenant_id="acme")
    service = TaskService(TaskStore(db, clock), Settings(data_dir=tmp_path), engine_names=frozenset())
    with pytest.raises(EngineUnavailable) as err:
        service.imagine(Principal("k", "acme", False), ImagineRequest(prompt="a cat"))
    assert err.value.http_status == 503 and err.value.code == 3
    # Clients treat code 3 as "retry later" unless the text mentions a task (seed 004).
    assert "task" not in err.value.description
    db.dispose()
