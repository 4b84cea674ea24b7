"""Templates in the database (SQLite and PostgreSQL): immutable published versions, release tags,
rollouts that are 10 % ± 2 of callers and sticky, rollback, and promotion gated on evaluation."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, insert

from pixelmill.clock import ManualClock
from pixelmill.db.schema import evaluations
from pixelmill.exceptions import Conflict, NotFound, ValidationError
from pixelmill.observe.audit import AuditLog
from pixelmill.templates.rollout import Release, bucket
from pixelmill.templates.spec import TemplateSpec
from pixelmill.templates.store import TemplateStore

V1 = TemplateSpec.model_validate({"body": "a {thing}", "variables": {"thing": {}}})
V2 = TemplateSpec.model_validate({"body": "a shiny {thing}", "variables": {"thing": {}}})


def two_versions(store: TemplateStore) -> None:
    store.create("kite", "", V1, "alice", "first")
    store.publish("kite", 1, "alice")
    store.add_version("kite", V2, "bob", "shinier")
    store.publish("kite", 2, "bob")
    store.point("kite", "stable", 1, "alice")


def test_published_versions_never_change(db: Engine, clock: ManualClock) -> None:
    store = TemplateStore(db, clock, AuditLog(db, clock))
    store.create("kite", "kites", V1, "alice", "first")
    assert store.edit_draft("kite", 1, V2, "alice")["spec"]["body"] == "a shiny {thing}"
    store.publish("kite", 1, "alice")
    with pytest.raises(Conflict, match="published and cannot change"):
        store.edit_draft("kite", 1, V1, "mallory")
    with pytest.raises(Conflict, match="already published"):
        store.publish("kite", 1, "alice")
    assert store.version("kite", 1)["spec"]["body"] == "a shiny {thing}" and store.version("kite", 1)["author"] == "alice"
    # What a task records is recomputed from the stored content: it must be the stored hash.
    assert store.spec("kite", 1).content_hash() == store.version("kite", 1)["content_hash"] == V2.content_hash()
    with pytest.raises(Conflict, match="exists"):
        store.create("kite", "", V1, "bob")
    with pytest.raises(NotFound):
        store.version("kite", 7)


def test_a_release_points_at_published_versions_only(db: Engine, clock: ManualClock) -> None:
    store = TemplateStore(db, clock, AuditLog(db, clock))
    store.create("kite", "", V1, "alice")
    with pytest.raises(ValidationError, match="draft"):
        store.point("kite", "stable", 1, "alice")
    with pytest.raises(ValidationError, match="tag"):
        store.point("kite", "Not A Tag", 1, "alice")
    with pytest.raises(NotFound, match="no release canary"):
        store.release("kite", "canary")


def test_ten_percent_of_two_thousand_callers_get_the_candidate_always_the_same_ones(db: Engine, clock: ManualClock) -> None:
    store = TemplateStore(db, clock, AuditLog(db, clock))
    two_versions(store)
    release = store.rollout("kite", "stable", 2, 10, "alice")
    callers = [f"key_{i:05d}" for i in range(2000)]
    chosen = {c: release.choose(c)[0] for c in callers}
    assert 0.08 <= sum(v == 2 for v in chosen.values()) / 2000 <= 0.12
    again = store.release("kite", "stable")  # read back from the database, as another host would
    assert all(again.choose(c)[0] == v for c, v in chosen.items())
    wider = store.rollout("kite", "stable", 2, 50, "alice")
    assert all(wider.choose(c)[0] == 2 for c, v in chosen.items() if v == 2)  # nobody leaves the candidate
    assert store.pause("kite", "stable", "alice").choose(callers[0]) == (1, "stable")


def test_buckets_spread_evenly() -> None:
    counts = [0] * 10
    for i in range(20_000):
        counts[bucket("t", "stable", f"s{i}") // 1000] += 1
    assert all(1800 <= n <= 2200 for n in counts)
    assert Release("t", "stable", 1, candidate=2, percent=100).choose("x") == (2, "candidate")
    assert Release("t", "stable", 1, candidate=2, percent=0).choose("x") == (1, "stable")


def test_rollback_drops_a_rollout_then_undoes_a_promotion(db: Engine, clock: ManualClock) -> None:
    store = TemplateStore(db, clock, AuditLog(db, clock))
    two_versions(store)
    store.rollout("kite", "stable", 2, 30, "alice")
    assert store.rollback("kite", "stable", "alice").candidate is None
    store.rollout("kite", "stable", 2, 30, "alice")
    promoted = store.promote("kite", "stable", "alice")
    assert (promoted.version, promoted.candidate, promoted.previous_version) == (2, None, 1)
    assert store.rollback("kite", "stable", "alice").version == 1
    with pytest.raises(Conflict, match="nothing to roll back"):
        store.rollback("kite", "stable", "alice")
    actions = [e["action"] for e in reversed(AuditLog(db, clock).list("template", "kite"))]
    assert actions[-5:] == ["rollout", "rolled back", "rollout", "promoted", "rolled back"]


def test_promotion_can_require_a_finished_evaluation(db: Engine, clock: ManualClock) -> None:
    store = TemplateStore(db, clock, AuditLog(db, clock), promotion_needs_evaluation=True)
    two_versions(store)
    store.rollout("kite", "stable", 2, 10, "alice")
    with pytest.raises(Conflict, match="needs a finished evaluation"):
        store.promote("kite", "stable", "alice")
    with pytest.raises(Conflict, match="needs a finished evaluation"):
        store.point("kite", "stable", 2, "alice")
    with db.begin() as conn:
        conn.execute(insert(evaluations).values(id="ev_1", template="kite", set_name="s", baseline=1, candidate=2, seed=0,
                                                state="done", pairs=[], created_at=0, created_by="alice"))
    assert store.promote("kite", "stable", "alice").version == 2
