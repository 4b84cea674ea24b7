"""Batch jobs against a real server: templates, counts, manifests, cancel and refusals."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx
from PIL import Image

from tests.conftest import TEST_KEY
from tests.helpers import Server, wait_for


def finished(api: httpx.Client, batch_id: str) -> dict:  # type: ignore[type-arg]
    return wait_for(lambda: (b := api.get(f"/v1/batches/{batch_id}").json())["status"] != "running" and b,
                    timeout=60, what=f"batch {batch_id}")


def test_a_template_batch_runs_and_its_manifest_lists_every_output(api: httpx.Client) -> None:
    animals = ["fox", "owl", "hare", "lynx"]
    r = api.post("/v1/batches", json={
        "prompt_template": "a {animal} in {season} snow", "defaults": {"prompt": "-", "aspect_ratio": "3:2", "seed": 11},
        "variables": [{"animal": a, "season": "early"} for a in animals], "metadata": {"campaign": "winter"},
    })
    assert r.status_code == 200 and r.json()["code"] == 1, r.text
    accepted = r.json()["data"][0]
    assert accepted["total"] == 4
    status = finished(api, accepted["batch_id"])
    assert status["status"] == "completed" and status["counts"]["SUCCESS"] == 4 and status["done"] == 4
    assert status["metadata"] == {"campaign": "winter"}
    manifest = api.get(f"/v1/batches/{accepted['batch_id']}/manifest").json()
    rows = manifest["tasks"]
    assert [row["batch_index"] for row in rows] == [0, 1, 2, 3]
    assert [row["variables"]["animal"] for row in rows] == animals
    assert rows[1]["final_prompt"].startswith("a owl in early snow --ar 3:2")
    with Image.open(io.BytesIO(api.get(rows[0]["image_urls"][0]).content)) as im:
        assert im.size == (rows[0]["width"], rows[0]["height"]) and im.width > im.height
    as_csv = list(csv.DictReader(io.StringIO(api.get(f"/v1/batches/{accepted['batch_id']}/manifest?format=csv").text)))
    assert [row["task_id"] for row in as_csv] == [row["task_id"] for row in rows]
    assert as_csv[2]["image_urls"].split() == rows[2]["image_urls"]
    task = api.get(f"/v1/midjourney/{rows[0]['task_id']}").json()
    assert task["batch_id"] == accepted["batch_id"] and task["lane"] == "batch"


def test_cancelling_a_batch_refunds_what_has_not_run(tmp_path: Path) -> None:
    srv = Server(tmp_path, TEST_KEY, workers=1, procedural_delay_ms=300).start()
    try:
        with srv.client() as api:
            r = api.post("/v1/batches", json={"requests": [{"prompt": f"a bell tower {i}"} for i in range(5)]})
            batch_id = r.json()["data"][0]["batch_id"]
            cancelled = api.post(f"/v1/batches/{batch_id}/cancel").json()
            rows = api.get(f"/v1/batches/{batch_id}/manifest").json()["tasks"]
            missing = api.get("/v1/batches/batch_nope")
        assert cancelled["status"] == "cancelled" and cancelled["counts"]["CANCEL"] >= 4
        assert all(row["quota"] == 0 for row in rows if row["status"] == "CANCEL")
        assert missing.status_code == 404 and missing.json() == {
            "code": 3, "description": "batch batch_nope does not exist", "properties": {"batch_id": "batch_nope"}, "data": [],
        }
    finally:
        srv.stop()


def test_batch_refusals_name_the_entry(api: httpx.Client) -> None:
    def refused(body: dict) -> str:  # type: ignore[type-arg]
        r = api.post("/v1/batches", json=body)
        assert r.status_code == 400 and r.json()["code"] == 4, r.text
        return str(r.json()["description"])

    assert refused({"requests": [{"prompt": "a cat"}, {"prompt": "a dog --s 5000"}]}).startswith("requests[1].prompt: --s")
    assert refused({"requests": [{"prompt": "a cat"}, {"prompt": ""}]}).startswith("requests[1].prompt: String should have at least 1")
    assert refused({"prompt_template": "a {animal}", "variables": [{"animal": "fox"}, {}]}) == "variables[1]: missing 'animal'"
    assert refused({"prompt_template": "a {animal}", "variables": [{"animal": "fox --ar 4:1"}]}).startswith("variables[0].animal: values may not")
    assert refused({"prompt_template": "a {animal}", "variables": [{"animal": "fox", "colour": "red"}]}) == (
        "variables[0]: 'colour' is not a slot of prompt_template"
    )
    assert refused({"requests": [{"prompt": "a cat"}], "lane": "interactive"}) == "lane: a batch always runs in the batch lane"
    assert refused({}).startswith("requests: give requests, or prompt_template")


def test_a_batch_is_idempotent(api: httpx.Client) -> None:
    body = {"requests": [{"prompt": "a lantern"}, {"prompt": "a kettle"}]}
    first = api.post("/v1/batches", json=body, headers={"Idempotency-Key": "batch-once"}).json()
    again = api.post("/v1/batches", json=body, headers={"Idempotency-Key": "batch-once"}).json()
    assert first == again and first["data"][0]["total"] == 2
