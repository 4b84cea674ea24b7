"""A tenant's tasks, a page at a time (``queue/listing.py``), on SQLite and PostgreSQL: newest
first, every filter narrows, a cursor continues where the last page ended whatever was
submitted meanwhile, and another tenant's tasks never show."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pixelmill.clock import ManualClock
from pixelmill.exceptions import ValidationError
from pixelmill.queue.listing import TaskQuery
from pixelmill.queue.store import TaskStore
from pixelmill.tasks.actions import Action
from pixelmill.tasks.status import TaskStatus
from tests.queue.test_store import LANES, new_task


def _add(store: TaskStore, clock: ManualClock, prompt: str, **changes: object) -> str:
    clock.advance(1)
    return store.insert(replace(new_task(), prompt=prompt, final_prompt=f"{prompt} --seed 1", **changes), queue_limit=100).id  # type: ignore[arg-type]  # NewTask's fields


def _ids(store: TaskStore, query: TaskQuery) -> list[str]:
    return [t.id for t in store.page("acme", query, limit=50).tasks]


def test_pages_run_newest_first_and_a_cursor_is_not_moved_by_new_tasks(store: TaskStore, clock: ManualClock) -> None:
    ids = [_add(store, clock, f"a harbour {i}") for i in range(5)]
    first = store.page("acme", TaskQuery(), limit=2)
    assert [t.id for t in first.tasks] == ids[:-3:-1] and first.next_cursor
    _add(store, clock, "submitted meanwhile")
    second = store.page("acme", TaskQuery(), limit=2, cursor=first.next_cursor)
    assert [t.id for t in second.tasks] == [ids[2], ids[1]]
    last = store.page("acme", TaskQuery(), limit=2, cursor=second.next_cursor)
    assert [t.id for t in last.tasks] == [ids[0]] and last.next_cursor is None
    assert store.page("other-tenant", TaskQuery(), limit=50).tasks == []


def test_every_filter_narrows_the_list(store: TaskStore, clock: ManualClock) -> None:
    lake = _add(store, clock, "A calm LAKE at dawn", engine="mj", params={"width": 64, "height": 64, "template": {"name": "lakes", "version": 2}})
    pick = _add(store, clock, "50% off banner", action=Action.UPSCALE, batch_id="b1")
    done = _add(store, clock, "a red fox")
    claimed = store.claim("w1", LANES, 30)
    while claimed is not None and claimed.id != done:
        claimed = store.claim("w1", LANES, 30)
    assert claimed is not None
    store.fail(done, "w1", "broken", retryable=False, backoff_seconds=(1,))
    assert _ids(store, TaskQuery(statuses=[TaskStatus.FAILURE])) == [done]
    assert _ids(store, TaskQuery(actions=[Action.UPSCALE])) == [pick]
    assert _ids(store, TaskQuery(engine="mj")) == [lake]
    assert _ids(store, TaskQuery(template="lakes")) == [lake]
    assert _ids(store, TaskQuery(batch_id="b1")) == [pick]
    assert _ids(store, TaskQuery(text="lake at")) == [lake]  # any case
    assert _ids(store, TaskQuery(text="dawn calm")) == [lake] and _ids(store, TaskQuery(text="calm fox")) == []  # every word
    assert _ids(store, TaskQuery(text="50%")) == [pick]  # % is a character, not a wildcard
    assert _ids(store, TaskQuery(text="0% o")) == [pick] and _ids(store, TaskQuery(text="%")) == [pick]
    t_lake = store.get(lake)
    assert t_lake is not None
    assert _ids(store, TaskQuery(since=t_lake.submit_time + 1)) == [done, pick]
    assert _ids(store, TaskQuery(until=t_lake.submit_time + 1)) == [lake]
    assert _ids(store, TaskQuery(statuses=[TaskStatus.IN_PROGRESS], actions=[Action.IMAGINE])) == [lake]  # claimed before the fox


@pytest.mark.parametrize("cursor", ["!!", "bm90IGEgY3Vyc29y", ""])
def test_a_cursor_this_server_did_not_give_is_refused(store: TaskStore, cursor: str) -> None:
    with pytest.raises(ValidationError) as refused:
        store.page("acme", TaskQuery(), limit=10, cursor=cursor)
    assert refused.value.field == "cursor"
