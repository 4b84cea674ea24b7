"""Remote engines with a pool of upstream accounts, against real servers: B's engine "mj" has
accounts that are proxies (``FaultyProxy``) in front of upstream A, so a test can make one fail,
count what each was sent, and heal it."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from pixelmill.testing import FaultyProxy
from tests.e2e.test_remote import GEN, KEY_A, KEY_B
from tests.helpers import Server, wait_for, wait_terminal


def _pool(proxies: dict[str, FaultyProxy], **knobs: Any) -> str:
    accounts = [{"name": name, "base_url": p.url, "api_key": KEY_A, **knobs.pop(name, {})} for name, p in proxies.items()]
    spec = {"kind": "remote", "accounts": accounts, "poll_seconds": 0.1, "backoff_seconds": [0.05, 0.1, 0.2], "max_tries": 4, **knobs}
    return json.dumps({"procedural": {"kind": "procedural"}, "mj": spec})


def _accounts(api: Any) -> dict[str, dict[str, Any]]:
    r = api.get("/v1/admin/accounts")
    assert r.status_code == 200, r.text
    return {a["name"]: a for a in r.json()}


def test_a_failing_account_is_disabled_with_its_reason_and_the_others_run_every_task(tmp_path: Path) -> None:
    """Three accounts, one failing every request: every task succeeds on the other two, the
    failing one is disabled with its reason, follow-ups stay on the account of their parent,
    and a probe enables the failing account again once it answers."""
    a = Server(tmp_path / "a", KEY_A, rate_per_minute=0, max_concurrent_tasks=0, workers=4).start()
    with FaultyProxy(a.url, rate=1.0, kinds=("500",)) as bad, FaultyProxy(a.url, rate=0) as one, FaultyProxy(a.url, rate=0) as two:
        b = Server(tmp_path / "b", KEY_B, engines=_pool({"bad": bad, "one": one, "two": two}, disable_after_failures=2, probe_seconds=0.5),
                   rate_per_minute=0, max_concurrent_tasks=0, workers=4, fetch_allow='["127.0.0.1/32"]')
        try:
            b.start()
            with b.client() as api:
                ids = [api.post(f"{GEN}/imagine", json={"prompt": f"a harbour at night {i}", "engine": "mj"}).json()["data"][0]["task_id"]
                       for i in range(8)]
                grids = [wait_terminal(api, t, timeout=60) for t in ids]
                assert [g["status"] for g in grids] == ["SUCCESS"] * 8, [g.get("fail_reason") for g in grids]
                made_on = {g["task_id"]: g["engine_meta"]["upstream_account"] for g in grids}
                assert set(made_on.values()) <= {"one", "two"}

                accounts = _accounts(api)
                assert not accounts["bad"]["enabled"] and accounts["bad"]["disabled_by"] == "health"
                assert accounts["bad"]["disabled_reason"].startswith("2 submits refused in a row; the last: HTTP 500, code None: Internal Server Error")
                assert accounts["one"]["enabled"] and accounts["two"]["enabled"]
                assert accounts["one"]["submits"] + accounts["two"]["submits"] == 8 and accounts["bad"]["submits"] == 0
                metrics = api.get("/metrics").text
                assert 'pixelmill_upstream_account_enabled{account="bad",engine="mj"} 0.0' in metrics
                refused = re.search(r'pixelmill_upstream_account_submits_total\{account="bad",engine="mj",outcome="refused"\} (\d+)', metrics)
                assert refused and int(refused[1]) >= 2  # workers that chose it before it was disabled met a refusal too
                listed = subprocess.run([sys.executable, "-m", "pixelmill", "accounts", "list", "--url", b.url, "--api-key", KEY_B],
                                        capture_output=True, text=True, check=True).stdout
                assert "mj/bad  running 0 queued 0  success -" in listed and "DISABLED (health): 2 submits refused in a row" in listed

                picks = [api.post(f"{GEN}/upscale", json={"task_id": t, "index": 1}).json()["data"][0]["task_id"] for t in ids]
                for pick_id, parent in zip(picks, ids, strict=True):
                    pick = wait_terminal(api, pick_id, timeout=60)
                    assert pick["status"] == "SUCCESS", pick.get("fail_reason")
                    assert pick["engine_meta"]["upstream_account"] == made_on[parent]

                bad.rate = 0  # the account recovers: a probe finds it and enables it again
                wait_for(lambda: _accounts(api)["bad"]["enabled"], timeout=30, what="a probe to enable the recovered account")
        finally:
            b.stop()
            a.stop()
    # Every submit B sent on: 8 imagines and 8 upscales, each to one of the healthy accounts,
    # a follow-up to the proxy that made its parent.
    assert len(one.submits) + len(two.submits) == 16 and bad.forwarded <= 1  # at most the probe


def test_when_every_account_is_full_tasks_wait_in_the_queue_not_fail(tmp_path: Path) -> None:
    """One account of capacity 2: five imagines leave two upstream at a time; the others wait in
    B's queue (SUBMITTED), and each goes upstream when a place frees."""
    a = Server(tmp_path / "a", KEY_A, workers=0, rate_per_minute=0, max_concurrent_tasks=0).start()
    with FaultyProxy(a.url, rate=0) as proxy:
        b = Server(tmp_path / "b", KEY_B, engines=_pool({"only": proxy}, only={"max_in_flight": 2}), rate_per_minute=0,
                   max_concurrent_tasks=0, workers=4, fetch_allow='["127.0.0.1/32"]')
        try:
            b.start()
            with b.client() as api:
                ids = [api.post(f"{GEN}/imagine", json={"prompt": f"a quiet village {i}", "engine": "mj"}).json()["data"][0]["task_id"]
                       for i in range(5)]
                wait_for(lambda: len(proxy.submits) == 2, timeout=30, what="two submits upstream")
                only = _accounts(api)["only"]
                assert (only["in_flight"], only["running"], only["queued"]) == (2, 2, 0)
                # Two run upstream; the others wait here (a worker takes one now and then, finds no
                # room and puts it back, so this is waited for, not read once).
                def waiting_here() -> bool:
                    statuses = [api.get(f"/v1/midjourney/{t}").json()["status"] for t in ids]
                    return statuses.count("IN_PROGRESS") == 2 and statuses.count("SUBMITTED") == 3

                wait_for(waiting_here, timeout=30, what="two tasks upstream and three in B's queue")
                with a.worker():
                    done = [wait_terminal(api, t, timeout=60) for t in ids]
        finally:
            b.stop()
            a.stop()
    assert [t["status"] for t in done] == ["SUCCESS"] * 5, [t.get("fail_reason") for t in done]
    assert sorted(proxy.submits) == sorted(f"{t}-1" for t in ids)  # no attempt spent waiting for room
    # Upstream, never more than two at once: each submit after the second came after an end.
    with sqlite3.connect(a.data_dir / "pixelmill.db") as conn:
        rows = conn.execute("SELECT submit_time, finish_time FROM tasks ORDER BY submit_time").fetchall()
    for k, (submitted, _) in enumerate(rows):
        running = sum(1 for s, f in rows[:k] if f is None or f > submitted)
        assert running < 2, (k, rows)


def test_an_admin_disables_and_enables_an_account_and_the_audit_log_says_who(tmp_path: Path) -> None:
    a = Server(tmp_path / "a", KEY_A, rate_per_minute=0, max_concurrent_tasks=0, workers=2).start()
    with FaultyProxy(a.url, rate=0) as one, FaultyProxy(a.url, rate=0) as two:
        b = Server(tmp_path / "b", KEY_B, engines=_pool({"one": one, "two": two}), rate_per_minute=0, max_concurrent_tasks=0,
                   workers=2, fetch_allow='["127.0.0.1/32"]')
        try:
            b.start()
            with b.client() as api:
                off = api.post("/v1/admin/accounts/mj/two/disable", json={"reason": "rotating its key"})
                assert off.status_code == 200 and off.json()["enabled"] is False and off.json()["disabled_by"] == "admin"
                ids = [api.post(f"{GEN}/imagine", json={"prompt": f"a mill by a river {i}", "engine": "mj"}).json()["data"][0]["task_id"]
                       for i in range(3)]
                done = [wait_terminal(api, t, timeout=60) for t in ids]
                assert [t["engine_meta"]["upstream_account"] for t in done] == ["one"] * 3 and two.submits == []
                assert b.cli("accounts", "enable", "mj", "two").stdout.strip() == "mj/two: enabled"
                assert _accounts(api)["two"]["enabled"] is True
                audit = api.get("/v1/admin/audit", params={"kind": "account"}).json()
                assert [(e["subject"], e["action"], e["detail"]) for e in audit] == [
                    ("mj/two", "enabled", {}), ("mj/two", "disabled", {"reason": "rotating its key"})]
                unknown = api.post("/v1/admin/accounts/mj/three/disable")
                assert unknown.status_code == 404 and unknown.json()["code"] == 3
                assert api.get("/v1/admin/accounts", params={"engine": "procedural"}).status_code == 404
            tenant_key = b.cli("keys", "create", "--tenant", "acme").stdout.split()[-1]
            with b.client(tenant_key) as tenant:  # a tenant's key may not see or switch accounts
                assert tenant.get("/v1/admin/accounts").status_code == 403
                assert tenant.post("/v1/admin/accounts/mj/one/disable").status_code == 403
        finally:
            b.stop()
            a.stop()
