"""Output profiles through the real server: formats, renditions, provenance embedded and beside."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
from PIL import Image

from pixelmill.media.output import read_provenance
from tests.conftest import TEST_KEY
from tests.helpers import Server, wait_files, wait_for, wait_terminal

IMAGINE = "/v1/midjourney/generations/imagine"


def test_default_profile_png_with_renditions_and_provenance(api: httpx.Client) -> None:
    done = wait_terminal(api, api.post(IMAGINE, json={"prompt": "a quiet harbour", "seed": 31}).json()["data"][0]["task_id"])
    assert done["status"] == "SUCCESS" and all(u.endswith(".png") for u in done["image_urls"])
    task = wait_files(api, done["task_id"])  # renditions and records come after SUCCESS
    assert len(task["renditions"]) == 4 and task["image_urls"] == done["image_urls"]
    full = api.get(task["image_urls"][2]).content
    record = read_provenance(full)
    assert record is not None and record["task_id"] == task["task_id"] and record["seed"] == 33  # image 3 of seed 31
    assert record["final_prompt"] == task["final_prompt"] and record["engine"] == "procedural" and record["model"] == "procedural-v1"
    beside = api.get(task["renditions"][2]["metadata"]).json()
    assert beside == record
    web = api.get(task["renditions"][2]["web"])
    thumb = Image.open(io.BytesIO(api.get(task["renditions"][2]["thumb"]).content))
    assert web.headers["content-type"] == "image/webp" and max(thumb.size) == 256 and thumb.format == "WEBP"
    assert read_provenance(web.content) is None  # public renditions are stripped
    pick = wait_terminal(api, api.post("/v1/midjourney/generations/upscale", json={"task_id": task["task_id"], "index": 3}).json()["data"][0]["task_id"])
    assert pick["renditions"] == [task["renditions"][2]]  # the pick is the same files


def test_a_chosen_profile_shapes_the_files(api: httpx.Client) -> None:
    for profile, fmt in (("avif", "AVIF"), ("web", "WEBP"), ("jpeg", "JPEG")):
        task = wait_terminal(api, api.post(IMAGINE, json={"prompt": "a lantern", "seed": 5, "output_profile": profile}).json()["data"][0]["task_id"])
        data = api.get(task["image_urls"][0]).content
        assert Image.open(io.BytesIO(data)).format == fmt and task["params"]["output_profile"] == profile
        assert read_provenance(data)["task_id"] == task["task_id"]  # type: ignore[index]
    bad = api.post(IMAGINE, json={"prompt": "a lantern", "output_profile": "poster"})
    assert bad.status_code == 400 and bad.json()["description"].startswith("output_profile: 'poster' is not one of original, web, jpeg, avif")


def test_an_expired_task_says_so_and_its_files_are_gone(tmp_path: Path) -> None:
    srv = Server(tmp_path, TEST_KEY, task_retention_seconds=4, chores_interval_seconds=0.3).start()
    try:
        with srv.client() as api:
            task = wait_terminal(api, api.post(IMAGINE, json={"prompt": "a fading lamp", "seed": 2}).json()["data"][0]["task_id"])
            file_url = task["image_urls"][0]
            assert api.get(file_url).status_code == 200

            def gone() -> httpx.Response | None:
                r = api.get(f"/v1/midjourney/{task['task_id']}")
                return r if r.status_code == 404 else None

            answer = wait_for(gone, timeout=20, what="the task to expire")
            assert answer.json()["code"] == 3 and answer.json()["description"].startswith(f"task {task['task_id']} expired")
            # Files go right after the rows (a crash in between leaves files, never dangling tasks).
            wait_for(lambda: api.get(file_url).status_code == 404, timeout=20, what="the task's files to be deleted")
            assert api.get("/v1/midjourney/12345").json()["description"] == "task 12345 does not exist"
            kept = api.put("/v1/admin/tenants/default/retention", json={"seconds": 86400})  # the bootstrap key's tenant
            assert kept.json() == {"tenant_id": "default", "retention_seconds": 86400}
            missing = api.put("/v1/admin/tenants/nobody/retention", json={"seconds": 86400})
            assert missing.status_code == 400 and missing.json()["description"] == "tenant_id: no tenant nobody"
    finally:
        srv.stop()


def test_a_key_default_profile_applies_when_a_request_names_none(server: Server, api: httpx.Client) -> None:
    out = server.cli("keys", "create", "--tenant", "brand-team").stdout.split()
    key_id, plaintext = out[1], out[-1]
    assert api.put(f"/v1/admin/keys/{key_id}/output-profile", json={"profile": "jpeg"}).json() == {"key_id": key_id, "output_profile": "jpeg"}
    bad = api.put(f"/v1/admin/keys/{key_id}/output-profile", json={"profile": "tiff"})
    assert bad.status_code == 400 and bad.json()["description"].startswith("profile: 'tiff' is not one of original")
    with server.client(plaintext) as brand:
        default = wait_terminal(brand, brand.post(IMAGINE, json={"prompt": "a brand shot", "seed": 1}).json()["data"][0]["task_id"])
        chosen = wait_terminal(brand, brand.post(IMAGINE, json={"prompt": "a brand shot", "seed": 1, "output_profile": "web"}).json()["data"][0]["task_id"])
    assert default["image_urls"][0].endswith(".jpg") and chosen["image_urls"][0].endswith(".webp")


def test_a_cap_no_file_can_meet_fails_the_task_with_the_reason(tmp_path: Path) -> None:
    profiles = '{"stamp": {"format": "png", "max_bytes": 1024}}'
    srv = Server(tmp_path, TEST_KEY, output_profiles=profiles).start()
    try:
        with srv.client() as api:
            task = wait_terminal(api, api.post(IMAGINE, json={"prompt": "a busy market", "output_profile": "stamp"}).json()["data"][0]["task_id"])
    finally:
        srv.stop()
    assert task["status"] == "FAILURE" and task["quota"] == 0 and len(task["attempts"]) == 1
    assert task["fail_reason"].startswith("profile stamp: 1,024 bytes cannot be met; the smallest file was")
