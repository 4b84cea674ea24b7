from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pixelmill.auth.keys import Principal
from pixelmill.db.schema import tasks
from pixelmill.exceptions import EngineUnavailable, QueueFull, ValidationError
from pixelmill.runtime import Runtime, build_runtime
from pixelmill.settings import Settings
from pixelmill.tasks.requests import ImagineRequest


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = build_runtime(Settings(data_dir=tmp_path, workers=0, interactive_queue_limit=5, screening="off"))
    yield rt
    rt.close()


@pytest.fixture
def acme(runtime: Runtime) -> Principal:
    key, _ = runtime.keys.create(tenant_id="acme")
    return Principal(key.id, "acme", False)


def test_no_engine_instance_is_503_code_3_without_the_word_task(runtime: Runtime, acme: Principal) -> None:
    runtime.service._engines = {}  # no engine loaded on this deployment
    with pytest.raises(EngineUnavailable) as err:
        runtime.service.imagine(acme, ImagineRequest(prompt="a cat"))
    assert err.value.http_status == 503 and err.value.code == 3
    # Clients treat code 3 as "retry later" unless the text mentions a task (seed 004).
    assert "task" not in err.value.description


def test_repeat_makes_one_task_per_run_with_seeds_of_their_own(runtime: Runtime, acme: Principal) -> None:
    tasks = runtime.service.imagine(acme, ImagineRequest(prompt="a cat --repeat 3 --seed 10"))
    assert [t.seed for t in tasks] == [10, 14, 18]
    assert [t.final_prompt for t in tasks] == [f"a cat --seed {s}" for s in (10, 14, 18)]
    assert [t.params["repeat"] for t in tasks] == [{"run": r, "of": 3} for r in (1, 2, 3)]


def test_repeat_is_queued_all_or_none(runtime: Runtime, acme: Principal) -> None:
    runtime.service.imagine(acme, ImagineRequest(prompt="a cat --r 3"))
    with pytest.raises(QueueFull):
        runtime.service.imagine(acme, ImagineRequest(prompt="a cat --r 3"))  # 3 + 3 > 5
    [one] = runtime.service.imagine(acme, ImagineRequest(prompt="a cat"))
    assert one.id


def test_niji_body_fields_become_the_niji_flag_and_price_key(runtime: Runtime, acme: Principal) -> None:
    [task] = runtime.service.imagine(acme, ImagineRequest(prompt="a girl --v 6", niji=True, version="7", seed=1))
    assert task.final_prompt == "a girl --niji 7 --seed 1"
    assert task.params["price_key"] == "midjourney@imagine-niji7"
    [plain] = runtime.service.imagine(acme, ImagineRequest(prompt="a girl", seed=1))
    assert plain.params["price_key"] == "midjourney@imagine"


def test_sizes_follow_the_documented_rule(runtime: Runtime, acme: Principal) -> None:
    def size(**body: object) -> tuple[int, int]:
        [task] = runtime.service.imagine(acme, ImagineRequest(**body))  # type: ignore[arg-type]
        return task.params["width"], task.params["height"]

    assert size(prompt="a cat") == (512, 512)
    assert size(prompt="a cat --ar 16:9") == (680, 384)
    assert size(prompt="a cat --ar 16:9 --hd") == (1368, 768)
    assert size(prompt="a cat", size="1024x576") == (1024, 576)


def test_a_refused_image_queues_nothing(runtime: Runtime, acme: Principal) -> None:
    with pytest.raises(ValidationError, match="10.0.0.1 a private address"):
        runtime.service.imagine(acme, ImagineRequest(prompt="http://10.0.0.1/a.png a cat --r 3"))
    with runtime.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tasks)).scalar_one() == 0
