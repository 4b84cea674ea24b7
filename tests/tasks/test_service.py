from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from pixelmill.auth.keys import Principal
from pixelmill.db.schema import tasks
from pixelmill.exceptions import EngineUnavailable, IdempotencyInProgress, QueueFull, ValidationError
from pixelmill.runtime import Runtime, build_runtime
from pixelmill.settings import Settings
from pixelmill.tasks.requests import ImagineRequest
from tests.helpers import wait_for


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = build_runtime(Settings(data_dir=tmp_path, workers=0, interactive_queue_limit=5, screening="off"))
    yield rt
    rt.close()


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
    with pytest.raises(ValidationError, match="10.0.0.1 is a private address"):
        runtime.service.imagine(acme, ImagineRequest(prompt="http://10.0.0.1/a.png a cat --r 3"))
    with runtime.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tasks)).scalar_one() == 0


def test_a_slow_first_request_whose_key_was_taken_over_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Request A holds an Idempotency-Key past the pending window (fetching inputs, say); a retry B
    takes the key over and is accepted. A must then create and charge nothing, and answer B's task."""
    rt = build_runtime(Settings(data_dir=tmp_path, workers=0, screening="off", idempotency_pending_seconds=0.2))
    try:
        key, _ = rt.keys.create(tenant_id="acme")
        rt.ledger.set_balance(key.id, 10)
        acme = Principal(key.id, "acme", False)
        planning, release = threading.Event(), threading.Event()
        real_plan = rt.service.plan_imagine

        def slow_plan(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread().name == "request-a":
                planning.set()
                assert release.wait(30)
            return real_plan(*args, **kwargs)

        monkeypatch.setattr(rt.service, "plan_imagine", slow_plan)
        req = ImagineRequest(prompt="a cat --seed 3")
        answers: dict[str, list[str]] = {}
        a = threading.Thread(name="request-a", target=lambda: answers.update(
            a=[t.id for t in rt.service.imagine(acme, req, idempotency_key="k1")]))
        a.start()
        assert planning.wait(10)

        def retry() -> list[str] | None:
            try:
                return [t.id for t in rt.service.imagine(acme, req, idempotency_key="k1")]
            except IdempotencyInProgress:  # 409 until A's claim is older than the pending window
                return None

        answers["b"] = wait_for(retry, timeout=10, what="the retry to take the key over")
        # B's task ends before A goes on, so A cannot simply coalesce onto it as running work.
        assert rt.tasks.cancel(answers["b"][0], "acme") is not None
        release.set()
        a.join(10)
        assert answers["a"] == answers["b"]
        with rt.db.connect() as conn:
            assert conn.execute(select(func.count()).select_from(tasks)).scalar_one() == 1
        assert rt.ledger.balance(key.id) == 10  # charged once, refunded once
    finally:
        rt.close()
