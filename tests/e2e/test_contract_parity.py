"""One pipeline, three front doors: moderation, quota (with refunds), idempotency and templates
behave the same through seed 004's API, midjourney-proxy's /mj and the OpenAI Images API. Each
door is driven in its own wire form; what a user can see afterwards (the refusal, the balance,
the tasks) must be the same."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_KEY
from tests.helpers import Server, wait_for, wait_terminal


@dataclass
class Outcome:
    """A submit as any door answers it: accepted with task ids, or refused with a kind and field."""

    refusal: str | None = None
    field: str | None = None
    task_ids: list[str] = dataclasses.field(default_factory=list)


class Door:
    name = ""

    def submit(self, http: httpx.Client, fields: dict[str, Any], headers: dict[str, str] | None = None) -> Outcome:
        raise NotImplementedError


class Seed(Door):
    name = "seed"

    def submit(self, http: httpx.Client, fields: dict[str, Any], headers: dict[str, str] | None = None) -> Outcome:
        r = http.post("/v1/midjourney/generations/imagine", json=fields, headers=headers or {})
        body = r.json()
        if r.status_code == 200:
            return Outcome(task_ids=[t["task_id"] for t in body["data"]])
        kinds = {24: "banned", 402: "quota"}
        kind = kinds.get(body["code"]) or ("mismatch" if r.status_code == 422 else "invalid")
        return Outcome(kind, body["properties"].get("field"))


class MidjourneyProxy(Door):
    name = "mj"

    def submit(self, http: httpx.Client, fields: dict[str, Any], headers: dict[str, str] | None = None) -> Outcome:
        r = http.post("/mj/submit/imagine", json=fields, headers={"mj-api-secret": http.headers["authorization"][7:], **(headers or {})})
        assert r.status_code == 200, r.text
        body = r.json()
        if body["code"] in (1, 21, 22):
            return Outcome(task_ids=[body["result"]])
        props = body["properties"]
        kind = {24: "banned"}.get(body["code"]) or ("quota" if "balance" in props else "mismatch" if "already used" in body["description"] else "invalid")
        return Outcome(kind, props.get("field"))


class OpenAIImages(Door):
    name = "openai"

    def submit(self, http: httpx.Client, fields: dict[str, Any], headers: dict[str, str] | None = None) -> Outcome:
        body: dict[str, Any] = {"prompt": fields.get("prompt", "")}
        if "template" in fields:
            body = {"model": f"template:{fields['template']}", "prompt": fields.get("prompt") or str(fields.get("variables", {})).replace("'", '"')}
        r = http.post("/v1/images/generations", json=body, headers={"Prefer": "respond-async", **(headers or {})})
        if r.status_code == 202:
            return Outcome(task_ids=r.json()["task_ids"])
        error = r.json()["error"]
        kinds = {"content_policy_violation": "banned", "insufficient_quota": "quota", "idempotency_key_reused": "mismatch"}
        return Outcome(kinds.get(error["code"], "invalid"), error["param"])


DOORS = [Seed(), MidjourneyProxy(), OpenAIImages()]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("parity"), TEST_KEY, rate_per_minute=0, max_concurrent_tasks=0,
                    fault_injection='[{"match": "doomed", "retryable": false}]').start()
    yield server
    server.stop()


def tenant_key(srv: Server, tenant: str, balance: int | None = None) -> tuple[str, str]:
    out = srv.cli("keys", "create", "--tenant", tenant).stdout.split()
    if balance is not None:
        srv.cli("keys", "balance", out[1], "--set", str(balance))
    return out[1], out[-1]


def balance(srv: Server, key_id: str) -> int:
    with srv.client() as admin:
        return int(admin.get(f"/v1/admin/keys/{key_id}/balance").json()["balance"])


@pytest.mark.parametrize("door", DOORS, ids=lambda d: d.name)
def test_moderation_refuses_the_same_prompt_and_charges_nothing(srv: Server, door: Door) -> None:
    key_id, key = tenant_key(srv, f"moderated-{door.name}", balance=3)
    with srv.client(key) as http:
        refused = door.submit(http, {"prompt": "a n.u.d.e figure on a beach"})
        assert (refused.refusal, refused.field) == ("banned", "prompt")
        assert door.submit(http, {"prompt": "a beach at noon"}).task_ids
    assert balance(srv, key_id) == 2  # the accepted imagine only


@pytest.mark.parametrize("door", DOORS, ids=lambda d: d.name)
def test_quota_is_charged_refused_when_spent_and_refunded_on_failure(srv: Server, door: Door) -> None:
    key_id, key = tenant_key(srv, f"quota-{door.name}", balance=1)
    with srv.client(key) as http:
        doomed = door.submit(http, {"prompt": "a doomed ship"})
        assert doomed.task_ids  # charged now, refunded when it fails (it may have already)
        assert wait_terminal(http, doomed.task_ids[0])["status"] == "FAILURE"
        wait_for(lambda: balance(srv, key_id) == 1, timeout=30, what="the refund")
        assert door.submit(http, {"prompt": "a harbour"}).task_ids
        assert door.submit(http, {"prompt": "another harbour"}).refusal == "quota"
    assert balance(srv, key_id) == 0


@pytest.mark.parametrize("door", DOORS, ids=lambda d: d.name)
def test_an_idempotency_key_answers_the_same_task_once_charged(srv: Server, door: Door) -> None:
    key_id, key = tenant_key(srv, f"idem-{door.name}", balance=5)
    headers = {"Idempotency-Key": f"retry-{door.name}"}
    with srv.client(key) as http:
        first = door.submit(http, {"prompt": "a red kite"}, headers)
        again = door.submit(http, {"prompt": "a red kite"}, headers)
        assert first.task_ids and again.task_ids == first.task_ids
        assert door.submit(http, {"prompt": "a blue kite"}, headers).refusal == "mismatch"
    assert balance(srv, key_id) == 4


@pytest.mark.parametrize("door", DOORS, ids=lambda d: d.name)
def test_templates_render_the_same_and_a_template_only_key_refuses_free_prompts(srv: Server, door: Door) -> None:
    tenant = f"brand-{door.name}"
    key_id, key = tenant_key(srv, tenant)
    name = f"shot-{door.name}"
    with srv.client() as admin:  # changing templates takes an admin key; this one is the tenant's
        spec = {"body": "studio photo of {prompt}", "variables": {"prompt": {"type": "text", "max_length": 40}},
                "locked": {"aspect_ratio": "1:1", "stylize": 100}}
        assert admin.post("/v1/templates", json={"name": name, "tenant": tenant, **spec}).status_code == 200
        assert admin.post(f"/v1/templates/{name}/versions/1/publish").status_code == 200
        assert admin.put(f"/v1/templates/{name}/releases/stable", json={"version": 1}).status_code == 200
    with srv.client(key) as http:
        made = door.submit(http, {"template": name, "variables": {"prompt": "a leather bag"}})
        task = http.get(f"/v1/midjourney/{made.task_ids[0]}").json()
        assert task["final_prompt"].startswith("studio photo of a leather bag --s 100 --seed ") and task["template"]["version"] == 1
    with srv.client() as admin:
        assert admin.put(f"/v1/admin/keys/{key_id}/template-policy", json={"require_template": True}).status_code == 200
    with srv.client(key) as http:
        free = door.submit(http, {"prompt": "anything goes"})
        assert (free.refusal, free.field) == ("invalid", "prompt")
        assert door.submit(http, {"template": name, "variables": {"prompt": "a watch"}}).task_ids
