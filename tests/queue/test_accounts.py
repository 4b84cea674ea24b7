"""The shared state of upstream account pools (``queue/accounts.py``), on SQLite and PostgreSQL:
room counted from the upstream tasks every process recorded, submit windows, health with its
reasons, probes and admins."""

from __future__ import annotations

from sqlalchemy import Engine

from pixelmill.clock import ManualClock
from pixelmill.engines.remote.pool import rule
from pixelmill.queue.accounts import Offer
from pixelmill.queue.store import TaskStore
from pixelmill.queue.upstream import TaskUpstream, UpstreamTasks
from tests.queue.test_store import LANES, new_task

LEAST_BUSY = rule("least_busy")


def _running(store: TaskStore, upstream: UpstreamTasks) -> tuple[str, TaskUpstream]:
    store.insert(new_task(), queue_limit=100)
    task = store.claim("w1", LANES, 30)
    assert task is not None
    return task.id, upstream.record(task.id, "mj", task.attempt)


def offer(name: str, capacity: int | None = None, per_minute: int | None = None, daily: int | None = None) -> Offer:
    return Offer(name, 1.0, capacity, per_minute, daily)


def test_an_account_takes_tasks_up_to_its_capacity_and_an_ended_task_frees_its_place(db: Engine, store: TaskStore, clock: ManualClock) -> None:
    upstream = UpstreamTasks(db, clock)
    pool = [offer("a", capacity=1), offer("b", capacity=2)]
    chosen = []
    records = []
    for _ in range(3):
        _, record = _running(store, upstream)
        chosen.append(record.reserve(pool, LEAST_BUSY).account)
        record.accepted(f"U-{len(records)}")
        records.append(record)
    assert chosen == ["a", "b", "b"]  # least busy relative to capacity; ties to the first
    _, fourth = _running(store, upstream)
    full = fourth.reserve(pool, LEAST_BUSY)
    assert full.account is None and full.retry_after == 1.0
    assert "a: 1 of 1 upstream tasks" in full.why and "b: 2 of 2 upstream tasks" in full.why
    records[0].done()  # a's upstream task ended with a result: its place is free
    assert fourth.reserve(pool, LEAST_BUSY).account == "a"
    states = {s.name: s for s in upstream.accounts.states("mj", ["a", "b"])}
    assert (states["a"].in_flight, states["b"].in_flight) == (1, 2)
    assert (states["a"].submits, states["a"].succeeded, states["a"].success_rate) == (1, 1, 1.0)


def test_a_task_that_ended_here_no_longer_takes_a_place(db: Engine, store: TaskStore, clock: ManualClock) -> None:
    upstream = UpstreamTasks(db, clock)
    pool = [offer("a", capacity=1)]
    task_id, record = _running(store, upstream)
    assert record.reserve(pool, LEAST_BUSY).account == "a"
    record.accepted("U-1")
    _, other = _running(store, upstream)
    assert other.reserve(pool, LEAST_BUSY).account is None
    assert store.cancel(task_id, "acme") is not None
    assert other.reserve(pool, LEAST_BUSY).account == "a"


def test_submit_windows_per_minute_and_per_day(db: Engine, store: TaskStore, clock: ManualClock) -> None:
    upstream = UpstreamTasks(db, clock)
    clock.advance(86_400 - clock.now_ms() / 1000 % 86_400 + 3600)  # 01:00 UTC: the day has 23 hours left
    minute = [offer("a", per_minute=2)]
    assert [_running(store, upstream)[1].reserve(minute, LEAST_BUSY).account for _ in range(2)] == ["a", "a"]
    clock.advance(20)
    waiting = _running(store, upstream)[1].reserve(minute, LEAST_BUSY)
    assert waiting.account is None and waiting.retry_after == 40.0 and "2 submits this minute" in waiting.why
    clock.advance(40)
    assert _running(store, upstream)[1].reserve(minute, LEAST_BUSY).account == "a"
    daily = [offer("d", daily=1)]
    assert _running(store, upstream)[1].reserve(daily, LEAST_BUSY).account == "d"
    limited = _running(store, upstream)[1].reserve(daily, LEAST_BUSY)
    assert limited.account is None and limited.retry_after == 300.0 and "daily limit of 1" in limited.why
    clock.advance(23 * 3600)
    assert _running(store, upstream)[1].reserve(daily, LEAST_BUSY).account == "d"


def test_refusals_in_a_row_disable_an_account_with_the_reason_and_a_probe_enables_it(db: Engine, store: TaskStore, clock: ManualClock) -> None:
    upstream = UpstreamTasks(db, clock)
    accounts = upstream.accounts
    pool = [offer("a"), offer("b")]
    _, record = _running(store, upstream)
    assert record.reserve(pool, LEAST_BUSY).account == "a"
    assert not record.refused("a", "HTTP 500: boom", disable=False, after=2)
    assert record.account is None  # refused: the record no longer points there
    assert record.refused("a", "HTTP 503: still down", disable=False, after=2)
    state = accounts.states("mj", ["a"])[0]
    assert not state.enabled and state.disabled_by == "health"
    assert state.disabled_reason == "2 submits refused in a row; the last: HTTP 503: still down"
    assert record.reserve(pool, LEAST_BUSY).account == "b"  # a is passed over
    assert "a: disabled (2 submits refused" in record.reserve([offer("a")], LEAST_BUSY).why
    # probes: not before probe_seconds, then one that fails keeps it off, one that answers enables it
    assert accounts.to_probe("mj", ["a", "b"], 30) == []
    clock.advance(31)
    assert accounts.to_probe("mj", ["a", "b"], 30) == ["a"]
    assert not accounts.probed("mj", "a", "RuntimeError: the upstream answers HTTP 503")
    assert accounts.to_probe("mj", ["a", "b"], 30) == []
    clock.advance(31)
    assert accounts.probed("mj", "a", None)
    assert accounts.states("mj", ["a"])[0].enabled


def test_a_ban_disables_at_once_and_only_an_admin_enables_it_or_what_an_admin_disabled(
    db: Engine, store: TaskStore, clock: ManualClock,
) -> None:
    upstream = UpstreamTasks(db, clock)
    accounts = upstream.accounts
    _, record = _running(store, upstream)
    assert record.refused("a", "HTTP 403: account banned", disable=True, after=5)
    a = accounts.states("mj", ["a"])[0]
    assert (a.disabled_reason, a.disabled_by) == ("HTTP 403: account banned", "account")
    accounts.set_enabled("mj", "b", False, "rotating its key")
    clock.advance(60)
    assert accounts.to_probe("mj", ["a", "b"], 30) == []  # an upstream that answers a probe may still refuse them
    assert not accounts.probed("mj", "a", None) and not accounts.probed("mj", "b", None)
    b = accounts.states("mj", ["b"])[0]
    assert (b.enabled, b.disabled_by, b.disabled_reason) == (False, "admin", "rotating its key")
    accounts.set_enabled("mj", "b", True)
    assert accounts.states("mj", ["b"])[0].enabled


def test_round_robin_takes_turns_across_records(db: Engine, store: TaskStore, clock: ManualClock) -> None:
    upstream = UpstreamTasks(db, clock)
    pool = [offer("a"), offer("b"), offer("c")]
    turns = []
    for _ in range(6):
        clock.advance(1)
        turns.append(_running(store, upstream)[1].reserve(pool, rule("round_robin")).account)
    assert turns == ["a", "b", "c", "a", "b", "c"]


def test_a_busy_refusal_is_no_mark_on_health_and_an_answered_call_lets_go_of_its_account(
    db: Engine, store: TaskStore, clock: ManualClock,
) -> None:
    upstream = UpstreamTasks(db, clock)
    _, record = _running(store, upstream)
    for _ in range(3):
        assert record.reserve([offer("a")], LEAST_BUSY).account == "a"
        assert not record.refused("a", "HTTP 429: slow down", disable=False, after=2, busy=True)
    state = upstream.accounts.states("mj", ["a"])[0]
    assert (state.enabled, state.failures, state.refused) == (True, 0, 3)
    assert record.reserve([offer("a", capacity=1)], LEAST_BUSY).account == "a"
    _, other = _running(store, upstream)
    assert other.reserve([offer("a", capacity=1)], LEAST_BUSY).account is None  # the call in flight holds the place
    record.answered(1500)
    assert record.account is None
    assert other.reserve([offer("a", capacity=1)], LEAST_BUSY).account == "a"
    state = upstream.accounts.states("mj", ["a"])[0]
    assert (state.submits, state.succeeded, state.mean_latency_ms) == (1, 1, 1500)
