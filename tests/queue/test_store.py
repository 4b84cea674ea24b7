"""The task store as a queue: one conformance suite, run on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace

import pytest
from sqlalchemy import Engine

from pixelmill.auth.keys import KeyStore
from pixelmill.clock import ManualClock
from pixelmill.exceptions import QueueFull, RateLimited
from pixelmill.queue.store import TaskStore
from pixelmill.tasks import status as status_module
from pixelmill.tasks.actions import Action, Lane
from pixelmill.tasks.record import NewTask, TaskResult
from pixelmill.tasks.status import TaskStatus

LANES = (Lane.INTERACTIVE, Lane.BATCH)


def roomy(lane: Lane) -> tuple[int, int]:
    """Limits for /modal that never refuse: queue limit 1,000, no concurrency cap."""
    return 1000, 0


def new_task(lane: Lane = Lane.INTERACTIVE, priority: int = 0, max_attempts: int = 3) -> NewTask:
    return NewTask(
        tenant_id="acme",
        action=Action.IMAGINE,
        prompt="a cat",
        final_prompt="a cat --seed 1",
        params={"width": 64, "height": 64},
        engine="procedural",
        seed=1,
        quota=1,
        lane=lane,
        priority=priority,
        max_attempts=max_attempts,
    )


def test_insert_queues_the_task(store: TaskStore) -> None:
    task = store.insert(new_task(), queue_limit=10)
    assert task.status is TaskStatus.SUBMITTED
    assert task.attempt == 0 and task.lease_owner is None
    assert store.get(task.id) == task


def test_tenant_scoped_get_hides_other_tenants(store: TaskStore) -> None:
    task = store.insert(new_task(), queue_limit=10)
    assert store.get(task.id, tenant_id="acme") is not None
    assert store.get(task.id, tenant_id="someone-else") is None


def test_queue_limit_refuses_with_retry_after(store: TaskStore) -> None:
    for _ in range(3):
        store.insert(new_task(), queue_limit=3)
    with pytest.raises(QueueFull) as err:
        store.insert(new_task(), queue_limit=3)
    assert err.value.retry_after > 0
    # The batch lane has its own limit.
    store.insert(new_task(lane=Lane.BATCH), queue_limit=3)


def test_claim_order_interactive_first_then_priority_then_age(store: TaskStore, clock: ManualClock) -> None:
    batch = store.insert(new_task(lane=Lane.BATCH, priority=9), queue_limit=10)
    clock.advance(1)
    old = store.insert(new_task(), queue_limit=10)
    clock.advance(1)
    new = store.insert(new_task(), queue_limit=10)
    urgent = store.insert(new_task(priority=5), queue_limit=10)
    order = [store.claim("w", LANES, 30).id for _ in range(4)]  # type: ignore[union-attr]
    assert order == [urgent.id, old.id, new.id, batch.id]
    assert store.claim("w", LANES, 30) is None


def test_concurrent_claims_never_hand_out_a_task_twice(store: TaskStore) -> None:
    ids = {store.insert(new_task(), queue_limit=1000).id for _ in range(40)}
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(n: int) -> None:
        while (task := store.claim(f"w{n}", LANES, 30)) is not None:
            with lock:
                claimed.append(task.id)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert Counter(claimed).most_common(1)[0][1] == 1
    assert set(claimed) == ids


def test_complete_needs_the_lease(store: TaskStore) -> None:
    store.insert(new_task(), queue_limit=10)
    task = store.claim("w1", LANES, 30)
    assert task is not None and task.status is TaskStatus.IN_PROGRESS and task.attempt == 1
    assert not store.complete(task.id, "intruder", TaskResult(image_keys=("k",)))
    assert store.complete(task.id, "w1", TaskResult(image_keys=("k",)))
    done = store.get(task.id)
    assert done is not None and done.status is TaskStatus.SUCCESS and done.progress == 100
    assert done.result == TaskResult(image_keys=("k",)) and done.finish_time is not None
    # A terminal task cannot be completed again.
    assert not store.complete(task.id, "w1", TaskResult())


def test_expired_lease_requeues_and_fences_the_old_worker(store: TaskStore, clock: ManualClock) -> None:
    store.insert(new_task(), queue_limit=10)
    first = store.claim("dead-worker", LANES, lease_seconds=5)
    assert first is not None
    clock.advance(4)
    assert store.requeue_expired() == (0, 0)  # not expired yet
    clock.advance(2)
    assert store.requeue_expired() == (1, 0)
    requeued = store.get(first.id)
    assert requeued is not None and requeued.status is TaskStatus.SUBMITTED
    assert "lease expired" in requeued.errors[-1]["error"]
    second = store.claim("live-worker", LANES, 30)
    assert second is not None and second.id == first.id and second.attempt == 2
    # The first worker wakes up late: its result must not overwrite the new attempt.
    assert not store.complete(first.id, "dead-worker", TaskResult(image_keys=("stale",)))
    assert store.complete(first.id, "live-worker", TaskResult(image_keys=("fresh",)))
    final = store.get(first.id)
    assert final is not None and final.result == TaskResult(image_keys=("fresh",))


def test_heartbeat_keeps_the_lease(store: TaskStore, clock: ManualClock) -> None:
    store.insert(new_task(), queue_limit=10)
    task = store.claim("w", LANES, lease_seconds=5)
    assert task is not None
    for _ in range(4):
        clock.advance(3)
        assert store.heartbeat("w", [task.id], lease_seconds=5) == 1
    assert store.requeue_expired() == (0, 0)


def test_lease_expiry_fails_when_attempts_are_used_up(store: TaskStore, clock: ManualClock) -> None:
    store.insert(new_task(max_attempts=1), queue_limit=10)
    task = store.claim("w", LANES, lease_seconds=1)
    assert task is not None
    clock.advance(2)
    assert store.requeue_expired() == (0, 1)
    failed = store.get(task.id)
    assert failed is not None and failed.status is TaskStatus.FAILURE
    assert failed.quota == 0 and "lease expired" in (failed.fail_reason or "")


def test_retryable_failure_backs_off_then_runs_again(store: TaskStore, clock: ManualClock) -> None:
    store.insert(new_task(max_attempts=2), queue_limit=10)
    task = store.claim("w", LANES, 30)
    assert task is not None
    status = store.fail(task.id, "w", "engine hiccup", retryable=True, backoff_seconds=(4.0,))
    assert status is TaskStatus.NOT_START
    assert store.claim("w", LANES, 30) is None  # still backing off
    clock.advance(5.1)  # 4 s + up to 25 % jitter
    again = store.claim("w", LANES, 30)
    assert again is not None and again.id == task.id and again.attempt == 2
    status = store.fail(task.id, "w", "engine hiccup", retryable=True, backoff_seconds=(4.0,))
    assert status is TaskStatus.FAILURE
    final = store.get(task.id)
    assert final is not None
    assert final.fail_reason == "engine hiccup (gave up after 2 attempts)"
    assert [e["attempt"] for e in final.errors] == [1, 2]
    assert final.quota == 0


def test_non_retryable_failure_is_final_at_once(store: TaskStore) -> None:
    store.insert(new_task(), queue_limit=10)
    task = store.claim("w", LANES, 30)
    assert task is not None
    assert store.fail(task.id, "w", "bad input", retryable=False, backoff_seconds=(1.0,)) is TaskStatus.FAILURE
    assert store.fail(task.id, "w", "again", retryable=False, backoff_seconds=(1.0,)) is None


def test_an_id_collision_mints_a_new_id(store: TaskStore, monkeypatch: pytest.MonkeyPatch) -> None:
    first = store.insert(new_task(), queue_limit=10)
    ids = iter([first.id, "2000000000000001"])
    monkeypatch.setattr("pixelmill.queue.store.new_task_id", lambda _now, _spread: next(ids))
    second = store.insert(new_task(), queue_limit=10)
    assert second.id == "2000000000000001"


def test_other_integrity_errors_are_not_retried(store: TaskStore) -> None:
    from dataclasses import replace

    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        store.insert(replace(new_task(), tenant_id="no-such-tenant"), queue_limit=10)


def test_many_tasks_in_one_millisecond_get_distinct_ids(store: TaskStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # A batch mints thousands of ids in one millisecond; here 40 ids from a space of 60 suffixes
    # collide for certain. The insert must still succeed at once, not redo itself until lucky.
    import secrets

    monkeypatch.setattr("pixelmill.queue.store.new_task_id", lambda now, _spread: str(now * 1000 + secrets.randbelow(60)))
    tasks = store.insert_all([new_task(lane=Lane.BATCH)] * 40, queue_limit=1000)
    assert len({t.id for t in tasks}) == 40 and len({t.submit_time for t in tasks}) == 1


def test_a_modal_task_waits_unclaimed_until_its_modal_call(store: TaskStore, clock: ManualClock) -> None:
    waiting = store.insert(replace(new_task(), modal=True), queue_limit=1)
    assert waiting.status is TaskStatus.MODAL and store.queue_position(waiting) is None
    assert store.claim("w1", LANES, lease_seconds=30) is None
    assert store.submit_modal(waiting.id, "other-tenant", prompt="x", final_prompt="x", params={}, limits=roomy) is None
    queued = store.submit_modal(waiting.id, "acme", prompt="eyes", final_prompt="eyes --seed 1", params={"mask": {"key": "k"}},
                                limits=roomy)
    assert queued is not None and queued.status is TaskStatus.SUBMITTED and queued.params == {"mask": {"key": "k"}}
    assert store.submit_modal(waiting.id, "acme", prompt="again", final_prompt="again", params={}, limits=roomy) is None  # once only
    claimed = store.claim("w1", LANES, lease_seconds=30)
    assert claimed is not None and claimed.id == waiting.id and claimed.prompt == "eyes"


def test_an_unanswered_modal_expires_into_cancel(store: TaskStore, clock: ManualClock) -> None:
    waiting = store.insert(replace(new_task(), modal=True), queue_limit=10)
    answered = store.insert(replace(new_task(), modal=True), queue_limit=10)
    store.submit_modal(answered.id, "acme", prompt="p", final_prompt="p", params={}, limits=roomy)
    clock.advance(1799)
    assert store.expire_modal(1800) == 0
    clock.advance(2)
    assert store.expire_modal(1800) == 1
    task = store.get(waiting.id)
    assert task is not None and task.status is TaskStatus.CANCEL and task.quota == 0
    assert task.fail_reason == "no /modal call within 30 minutes; cancelled and refunded"
    assert store.get(answered.id).status is TaskStatus.SUBMITTED  # type: ignore[union-attr]


def test_a_worker_claims_only_tasks_for_engines_it_has(store: TaskStore) -> None:
    gpu = store.insert(replace(new_task(), engine="sdxl"), queue_limit=10)
    cpu = store.insert(new_task(), queue_limit=10)
    claimed = store.claim("cpu-worker", LANES, 30, engines=["procedural"])
    assert claimed is not None and claimed.id == cpu.id
    assert store.claim("cpu-worker", LANES, 30, engines=["procedural"]) is None  # the sdxl task is left alone
    assert store.get(gpu.id).status is TaskStatus.SUBMITTED  # type: ignore[union-attr]
    other = store.claim("gpu-worker", LANES, 30, engines=["sdxl"])
    assert other is not None and (other.id, other.attempt) == (gpu.id, 1)


def test_modal_queues_only_within_the_queue_limit_and_the_keys_cap(store: TaskStore, db: Engine, clock: ManualClock) -> None:
    key, _ = KeyStore(db, clock).create(tenant_id="acme", name="capped")
    waiting = store.insert(replace(new_task(), modal=True, api_key_id=key.id), queue_limit=10)
    store.insert_all([replace(new_task(), api_key_id=key.id)] * 2, queue_limit=10)
    modal = {"prompt": "eyes", "final_prompt": "eyes", "params": {}}
    with pytest.raises(QueueFull):  # 2 waiting + this one > 2
        store.submit_modal(waiting.id, "acme", **modal, limits=lambda lane: (2, 0))  # type: ignore[arg-type]
    with pytest.raises(RateLimited):  # the key has 2 queued; 2 + 1 > cap 2
        store.submit_modal(waiting.id, "acme", **modal, limits=lambda lane: (1000, 2))  # type: ignore[arg-type]
    assert store.get(waiting.id).status is TaskStatus.MODAL  # type: ignore[union-attr]
    queued = store.submit_modal(waiting.id, "acme", **modal, limits=lambda lane: (3, 3))  # type: ignore[arg-type]
    assert queued is not None and queued.status is TaskStatus.SUBMITTED


def test_a_review_ends_a_success_only_as_the_status_table_allows(store: TaskStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def finished() -> str:
        task = store.insert(new_task(), queue_limit=10)
        assert store.claim("w", LANES, 30) is not None and store.complete(task.id, "w", TaskResult())
        return task.id

    rejected = store.revise_result(finished(), lambda r: r, ends=lambda r: "every image was rejected in review")
    assert rejected is not None and (rejected.status, rejected.quota, rejected.fail_reason) == (
        TaskStatus.FAILURE, 0, "every image was rejected in review")
    # tasks/status.py is the one authority: without SUCCESS → FAILURE in its table, nothing changes.
    monkeypatch.setitem(status_module._NEXT, TaskStatus.SUCCESS, frozenset())
    kept = finished()
    assert store.revise_result(kept, lambda r: r, ends=lambda r: "rejected") is None
    assert store.get(kept).status is TaskStatus.SUCCESS  # type: ignore[union-attr]
