"""A remote engine with a pool of accounts, against scripted upstreams on loopback and the real
upstream records (SQLite and PostgreSQL): which account a submit goes to when another refuses,
may have received it, is gone, or is full."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import Engine

from pixelmill.clock import ManualClock
from pixelmill.engines.base import Busy, GenerationRequest, UpstreamStep, Waiting
from pixelmill.engines.remote import RemoteConfig, RemoteEngine
from pixelmill.engines.remote.openai import OpenAIImagesEngine
from pixelmill.queue.store import TaskStore
from pixelmill.queue.upstream import TaskUpstream, UpstreamTasks
from tests.engines.test_remote_table import OK, Scripted, serving
from tests.queue.test_store import LANES, new_task


@pytest.fixture
def a() -> Iterator[Scripted]:
    yield from serving()


@pytest.fixture
def b() -> Iterator[Scripted]:
    yield from serving()


def _engine(*accounts: tuple[str, Scripted, dict[str, Any]], **knobs: Any) -> RemoteEngine:
    spec = {"accounts": [{"name": n, "base_url": s.url, "api_key": f"key-{n}", **extra} for n, s, extra in accounts],
            "backoff_seconds": [0.01], "max_tries": 2, **knobs}
    return RemoteEngine("mj", RemoteConfig.from_json(spec))


def _record(store: TaskStore, upstream: UpstreamTasks) -> TaskUpstream:
    store.insert(new_task(), queue_limit=100)
    task = store.claim("w1", LANES, 30)
    assert task is not None
    upstream.parking = True  # the engine hands the task on (Waiting) once an account accepted it
    return upstream.record(task.id, "mj", task.attempt)


def _submit(engine: RemoteEngine, record: TaskUpstream, step: UpstreamStep | None = None) -> str:
    request = GenerationRequest(prompt="a lake", width=64, height=64, seeds=(1,), source_prompt="a lake", step=step, upstream=record)
    with pytest.raises(Waiting) as waiting:
        engine.generate(request)
    return waiting.value.upstream_id


def test_an_account_that_refuses_is_passed_over_at_once(a: Scripted, b: Scripted, db: Engine, store: TaskStore, clock: ManualClock) -> None:
    engine = _engine(("a", a, {}), ("b", b, {}))
    upstream = UpstreamTasks(db, clock)
    record = _record(store, upstream)
    a.script = [(503, {"code": 9, "description": "overloaded"})]
    b.script = [OK]
    assert _submit(engine, record) == "42"
    assert record.account == "b" and len(a.seen) == len(b.seen) == 1
    assert a.seen[0]["authorization"] == "Bearer key-a" and b.seen[0]["authorization"] == "Bearer key-b"
    assert a.seen[0]["idempotency-key"] == b.seen[0]["idempotency-key"] == record.submit_key
    states = {s.name: s for s in upstream.accounts.states("mj", ["a", "b"])}
    assert (states["a"].refused, states["a"].failures, states["b"].submits) == (1, 1, 1)
    engine.close()


def test_a_submit_that_may_have_arrived_is_asked_again_of_the_same_account_only(
    a: Scripted, b: Scripted, db: Engine, store: TaskStore, clock: ManualClock,
) -> None:
    engine = _engine(("a", a, {}), ("b", b, {}))
    record = _record(store, UpstreamTasks(db, clock))
    a.script = ["drop", "drop", OK]  # the connection drops after the request: a may hold the task
    assert _submit(engine, record) == "42"
    assert record.account == "a" and len(a.seen) == 3 and b.seen == []
    assert {s["idempotency-key"] for s in a.seen} == {record.submit_key}
    engine.close()


def test_a_banned_account_is_disabled_at_once_with_the_reason(a: Scripted, b: Scripted, db: Engine, store: TaskStore, clock: ManualClock) -> None:
    engine = _engine(("a", a, {}), ("b", b, {}), disable_after_failures=5)
    upstream = UpstreamTasks(db, clock)
    a.script = [(403, {"code": 403, "description": "Your account has been suspended"})]
    b.script = [OK, OK]
    _submit(engine, _record(store, upstream))
    state = upstream.accounts.states("mj", ["a"])[0]
    assert (state.enabled, state.disabled_by) == (False, "account")  # a probe that gets an answer does not cure a ban
    assert state.disabled_reason == "HTTP 403: Your account has been suspended"
    assert _submit(engine, _record(store, upstream)) == "42" and len(a.seen) == 1  # a is no longer asked
    engine.close()


def test_a_follow_up_goes_to_its_parents_account_and_waits_for_room_there(
    a: Scripted, b: Scripted, db: Engine, store: TaskStore, clock: ManualClock,
) -> None:
    engine = _engine(("a", a, {"max_in_flight": 1}), ("b", b, {}))
    upstream = UpstreamTasks(db, clock)
    a.script = [OK]
    first = _record(store, upstream)
    _submit(engine, first)
    assert first.account == "a"
    follow_up = UpstreamStep("upscale", {"task_id": "42", "index": 1}, account="a")
    with pytest.raises(Busy) as busy:  # a is full, and b does not hold the parent's task
        _submit(engine, _record(store, upstream), follow_up)
    assert busy.value.retry_after == 1.0 and "a: 1 of 1 upstream tasks" in str(busy.value)
    first.done()
    a.script = [OK]
    second = _record(store, upstream)
    _submit(engine, second, follow_up)
    assert second.account == "a" and b.seen == []
    engine.close()


def test_a_speed_tier_goes_only_to_accounts_that_run_it(a: Scripted, b: Scripted, db: Engine, store: TaskStore, clock: ManualClock) -> None:
    engine = _engine(("a", a, {"speeds": ["fast"]}), ("b", b, {"speeds": ["relax", "fast"]}))
    b.script = [OK]
    record = _record(store, UpstreamTasks(db, clock))
    _submit(engine, record, UpstreamStep("imagine", {"prompt": "a lake --relax"}, speed="relax"))
    assert record.account == "b" and a.seen == []
    with pytest.raises(Exception, match="no account of engine mj runs the turbo speed tier"):
        _submit(engine, _record(store, UpstreamTasks(db, clock)), UpstreamStep("imagine", {"prompt": "a lake"}, speed="turbo"))
    engine.close()


def test_pool_settings_are_checked_when_the_engine_is_built(a: Scripted) -> None:
    good = {"name": "a", "base_url": a.url, "api_key": "k"}
    for spec, message in [
        ({"accounts": [good], "base_url": a.url}, "give 'base_url' and 'api_key' or 'accounts', not both"),
        ({"accounts": []}, "'accounts' must be a non-empty list"),
        ({"accounts": [good, good]}, "account names must be unique"),
        ({"accounts": [{**good, "colour": "red"}]}, "accounts[0]: unknown settings colour"),
        ({"accounts": [{**good, "api_key": ""}]}, "accounts[0]: 'api_key' is required"),
        ({"accounts": [{**good, "max_in_flight": 0}]}, "account 'a': weight > 0, max_in_flight >= 1"),
        ({"accounts": [{**good, "speeds": ["warp"]}]}, "account 'a': speeds must be some of fast, relax, turbo"),
        ({"accounts": [good], "selection": "random"}, "selection"),
        ({"accounts": [good], "contract": "openai", "pictures_per_call": 11}, "pictures_per_call must be 1 to 10"),
        ({"accounts": [good], "pictures_per_call": 1}, "pictures_per_call is for the openai contract only"),
    ]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
            RemoteConfig.from_json(spec)
    openai = {"accounts": [good], "contract": "openai"}
    assert RemoteConfig.from_json(openai | {"upstream_model": "dall-e-3"}).per_call == 1  # it refuses n > 1
    assert RemoteConfig.from_json(openai).per_call == 10
    assert RemoteConfig.from_json(openai | {"upstream_model": "dall-e-3", "pictures_per_call": 2}).per_call == 2


def test_an_account_that_may_hold_the_submit_is_never_left_for_another(
    a: Scripted, b: Scripted, db: Engine, store: TaskStore, clock: ManualClock,
) -> None:
    engine = _engine(("a", a, {}), ("b", b, {}), max_tries=3)
    record = _record(store, UpstreamTasks(db, clock))
    # Lost twice after sending, then refused, then accepted: b, which could make a second
    # task, is never asked.
    a.script = ["drop", "drop", (503, {"code": 9, "description": "overloaded"}), OK]
    assert _submit(engine, record) == "42"
    assert record.account == "a" and len(a.seen) == 4 and b.seen == []
    engine.close()


def test_an_unanswered_midjourney_proxy_submit_is_looked_up_by_its_state_not_sent_again(
    a: Scripted, b: Scripted, db: Engine, store: TaskStore, clock: ManualClock,
) -> None:
    engine = _engine(("a", a, {}), ("b", b, {}), contract="midjourney-proxy")
    record = _record(store, UpstreamTasks(db, clock))
    # midjourney-proxy takes no Idempotency-Key: the lost answer is not asked again at once,
    # and before a second send the task list is searched for the submit's state.
    a.script = ["drop", (200, [{"id": "99", "state": record.submit_key, "status": "SUBMITTED"}])]
    assert _submit(engine, record) == "99"
    assert len(a.seen) == 2 and b.seen == []
    engine.close()


def _picture_answer() -> tuple[int, dict[str, Any]]:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (30, 90, 200)).save(out, "PNG")
    return 200, {"created": 1, "data": [{"b64_json": base64.b64encode(out.getvalue()).decode()}]}


def test_a_dall_e_3_grid_takes_its_accounts_room_before_any_call_then_sends_all_there(
    a: Scripted, b: Scripted, db: Engine, store: TaskStore, clock: ManualClock,
) -> None:
    # b takes 2 submits a minute: the grid's four calls are one task's submit, not four.
    spec = {"accounts": [{"name": "a", "base_url": a.url, "api_key": "key-a", "max_in_flight": 1},
                         {"name": "b", "base_url": b.url, "api_key": "key-b", "max_in_flight": 1, "submit_per_minute": 2}],
            "contract": "openai", "upstream_model": "dall-e-3", "backoff_seconds": [0.01], "max_tries": 2}
    engine = OpenAIImagesEngine("mj", RemoteConfig.from_json(spec))
    upstream = UpstreamTasks(db, clock)
    holders = [_record(store, upstream) for _ in range(2)]
    for holder in holders:  # both accounts busy with a task each
        engine._choose(holder, set(), speed=None, sticky=None)
    request = GenerationRequest(prompt="a lake", width=64, height=64, seeds=(1, 2, 3, 4), upstream=(grid := _record(store, upstream)))
    with pytest.raises(Busy):
        engine.generate(request)
    assert a.seen == [] and b.seen == []  # nothing sent, nothing paid for
    holders[1].answered(10)  # b has room again
    b.script = [_picture_answer() for _ in range(4)]
    result = engine.generate(request)
    assert len(result.images) == 4 and result.meta["upstream_account"] == "b" and a.seen == []
    keys = sorted(seen["idempotency-key"] for seen in b.seen)
    assert keys == sorted([grid.submit_key] + [f"{grid.submit_key}-{i}" for i in (2, 3, 4)])
    assert grid.account is None  # answered: the account is let go
    engine.close()
