"""Quota and billing through the real server: 402, refunds, the cache-hit rule, the price table
(file and admin API), usage reports, admin-only routes."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import TEST_KEY
from tests.helpers import Server, wait_terminal

IMAGINE = "/v1/midjourney/generations/imagine"


def new_key(srv: Server, tenant: str) -> tuple[str, str]:
    out = srv.cli("keys", "create", "--tenant", tenant).stdout.split()
    return out[1], out[-1]


def test_balance_402_refund_and_usage(tmp_path: Path) -> None:
    srv = Server(tmp_path, TEST_KEY, fault_injection='[{"match": "doomed", "retryable": false}]').start()
    try:
        key_id, plaintext = new_key(srv, "shop")
        with srv.client() as admin, srv.client(plaintext) as shop:
            assert admin.put(f"/v1/admin/keys/{key_id}/balance", json={"balance": 3}).json() == {"key_id": key_id, "balance": 3}
            ok = wait_terminal(shop, shop.post(IMAGINE, json={"prompt": "a cat"}).json()["data"][0]["task_id"])
            doomed = wait_terminal(shop, shop.post(IMAGINE, json={"prompt": "a doomed cat"}).json()["data"][0]["task_id"])
            assert (ok["quota"], doomed["status"], doomed["quota"]) == (1, "FAILURE", 0)
            assert admin.get(f"/v1/admin/keys/{key_id}/balance").json()["balance"] == 2  # the failure was refunded
            r = shop.post(IMAGINE, json={"prompt": "three cats --repeat 3"})
            assert r.status_code == 402 and r.json()["code"] == 402
            assert r.json()["description"] == "not enough quota: this request costs 3, the key has 2 left"
            assert admin.get(f"/v1/admin/keys/{key_id}/balance").json()["balance"] == 2
            assert admin.post(f"/v1/admin/keys/{key_id}/credit", json={"units": 5}).json()["balance"] == 7
            usage = shop.get("/v1/usage").json()
            assert usage["usage"] == [{"key_id": key_id, "price_key": "midjourney@imagine", "tasks": 2, "charged": 2, "refunded": 1, "net": 1}]
            assert usage["engines"][0]["engine"] == "procedural" and usage["engines"][0]["tasks"] == 2
            forbidden = shop.get("/v1/admin/prices")
            assert forbidden.status_code == 403 and forbidden.json()["code"] == 403
            cli = srv.cli("usage", "--key", key_id)
            assert f"{key_id}  midjourney@imagine  tasks 2  charged 2  refunded 1  net 1" in cli.stdout
            assert srv.cli("keys", "balance", key_id, "--credit", "3").stdout.strip() == f"{key_id}: balance 10"
            assert srv.cli("keys", "balance", key_id, "--unlimited").stdout.strip() == f"{key_id}: balance unlimited"
            assert "midjourney@video-720p  2" in srv.cli("prices").stdout
            assert srv.cli("prices", "set", "--", "midjourney@upscale", "-1", check=False).stderr.strip().endswith("units: must be 0-1,000,000, got -1")
    finally:
        srv.stop()


def test_prices_from_a_file_and_the_admin_api_and_the_cache_hit_rule(tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"midjourney@imagine": 4, "midjourney@upscale": 0}))
    srv = Server(tmp_path / "srv", TEST_KEY, prices_file=str(prices), cache_hit_charge="full").start()
    try:
        with srv.client() as api:
            table = api.get("/v1/admin/prices").json()
            assert table["midjourney@imagine"] == 4 and table["midjourney@video"] == 1 and table["midjourney@imagine-niji7"] == 1
            body = {"prompt": "a priced lighthouse", "seed": 77}
            first = wait_terminal(api, api.post(IMAGINE, json=body).json()["data"][0]["task_id"])
            hit = api.get(f"/v1/midjourney/{api.post(IMAGINE, json=body).json()['data'][0]['task_id']}").json()
            assert (first["quota"], hit["params"]["cache_hit"], hit["quota"]) == (4, first["task_id"], 4)  # "full" rule
            up = wait_terminal(api, api.post("/v1/midjourney/generations/upscale", json={"task_id": first["task_id"], "index": 1}).json()["data"][0]["task_id"])
            assert up["quota"] == 0
            assert api.put("/v1/admin/prices/midjourney@imagine", json={"units": 2}).json()["midjourney@imagine"] == 2
            after = api.get(f"/v1/midjourney/{api.post(IMAGINE, json={'prompt': 'repriced'}).json()['data'][0]['task_id']}").json()
            assert after["quota"] == 2
            bad = api.put("/v1/admin/prices/imagine", json={"units": 2})
            assert bad.status_code == 400 and bad.json()["description"].startswith("price_key: 'imagine' must look like midjourney@")
    finally:
        srv.stop()


def test_cache_hits_are_free_by_default(api: httpx.Client) -> None:
    body = {"prompt": "a free repeat", "seed": 4242}
    wait_terminal(api, api.post(IMAGINE, json=body).json()["data"][0]["task_id"])
    hit = api.get(f"/v1/midjourney/{api.post(IMAGINE, json=body).json()['data'][0]['task_id']}").json()
    assert "cache_hit" in hit["params"] and hit["quota"] == 0


def test_speed_tiers_bill_under_their_own_key_when_priced(api: httpx.Client) -> None:
    assert api.put("/v1/admin/prices/midjourney@imagine-turbo", json={"units": 3}).status_code == 200
    turbo = wait_terminal(api, api.post(IMAGINE, json={"prompt": "a tiered comet --turbo", "seed": 9191}).json()["data"][0]["task_id"])
    assert (turbo["quota"], turbo["params"]["price_key"], turbo["params"]["speed"]) == (3, "midjourney@imagine-turbo", "turbo")
    # Unpriced tier: the plain key's price. Relax also waits in the batch lane.
    relax = wait_terminal(api, api.post(IMAGINE, json={"prompt": "a tiered comet", "speed": "relax", "seed": 9292}).json()["data"][0]["task_id"])
    assert (relax["quota"], relax["params"]["price_key"], relax["lane"]) == (1, "midjourney@imagine", "batch")
    # The tier changes price and queue, never pixels: the same request at another speed is a cache hit.
    again = api.get(f"/v1/midjourney/{api.post(IMAGINE, json={'prompt': 'a tiered comet --fast', 'seed': 9191}).json()['data'][0]['task_id']}").json()
    assert again["params"]["cache_hit"] == turbo["task_id"]
    both = api.post(IMAGINE, json={"prompt": "a comet --fast --turbo"})
    assert both.status_code == 400 and both.json()["description"] == "prompt: --fast and --turbo both pick the speed; give one"
