"""The gallery's API through a real server: stars and the starred filter, the aspect filter, a zip
of a selection (decoded), and deletes that keep what is still on its way or has a kept follow-up."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

import pytest
from PIL import Image

from tests.helpers import Server, wait_terminal

KEY = "pm_gallery_" + "g" * 32
IMAGINE = "/v1/midjourney/generations/imagine"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("gallery"), KEY).start()
    yield server
    server.stop()


def test_stars_aspect_zip_and_delete(srv: Server) -> None:
    key = srv.cli("keys", "create", "--tenant", "gallery").stdout.split()[-1]
    with srv.client(key) as api, srv.client(srv.cli("keys", "create", "--tenant", "other").stdout.split()[-1]) as other:
        wide, square = (wait_terminal(api, api.post(IMAGINE, json={"prompt": p}).json()["data"][0]["task_id"])
                        for p in ("a wide bay --ar 16:9 --seed 1", "a square room --seed 2"))
        pick = wait_terminal(api, api.post("/v1/midjourney/generations/upscale", json={"task_id": wide["task_id"], "index": 1}).json()["data"][0]["task_id"])

        assert api.put(f"/v1/tasks/{square['task_id']}/star").status_code == 204
        assert api.put(f"/v1/tasks/{square['task_id']}/star").status_code == 204  # again: still starred
        assert other.put(f"/v1/tasks/{square['task_id']}/star").status_code == 404  # not theirs
        starred = api.get("/v1/tasks", params={"starred": "true"}).json()["data"]
        assert [t["task_id"] for t in starred] == [square["task_id"]] and starred[0]["starred"] is True
        assert api.get(f"/v1/midjourney/{square['task_id']}").json()["starred"] is True
        assert api.delete(f"/v1/tasks/{square['task_id']}/star").status_code == 204
        assert api.get("/v1/tasks", params={"starred": "true"}).json()["data"] == []

        assert [t["task_id"] for t in api.get("/v1/tasks", params={"aspect": "32:18", "action": "IMAGINE"}).json()["data"]] == [wide["task_id"]]
        assert api.get("/v1/tasks", params={"aspect": "wide"}).json()["description"].startswith("aspect: 'wide' is not W:H")

        zipped = api.post("/v1/tasks/archive", json={"ids": [square["task_id"], pick["task_id"], "unknown"]})
        assert zipped.status_code == 200 and zipped.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
            names = sorted(archive.namelist())
            assert names == sorted([*(f"{square['task_id']}-{n}.png" for n in range(1, 5)), f"{pick['task_id']}-1.png"])
            for name in names:
                with Image.open(io.BytesIO(archive.read(name))) as im:
                    im.load()
        assert other.post("/v1/tasks/archive", json={"ids": [square["task_id"]]}).headers["x-files"] == "0"

        # The grid has a follow-up (the pick): alone it is kept; with its follow-up both go.
        alone = api.post("/v1/tasks/delete", json={"ids": [wide["task_id"], "nope"]}).json()
        assert [(d["task_id"], d["deleted"]) for d in alone] == [(wide["task_id"], False), ("nope", False)]
        assert "follow-ups" in alone[0]["error"] and alone[1]["error"] == "no such task"
        both = api.post("/v1/tasks/delete", json={"ids": [wide["task_id"], pick["task_id"]]}).json()
        assert all(d["deleted"] for d in both)
        gone = api.get(f"/v1/midjourney/{wide['task_id']}")
        assert gone.status_code == 404 and "expired" in gone.json()["description"]
        # Files only they pointed at are gone too; the square's (not deleted) stay.
        assert api.get(pick["image_urls"][0]).status_code == 404
        assert api.get(square["image_urls"][0]).status_code == 200
        assert other.post("/v1/tasks/delete", json={"ids": [square["task_id"]]}).json()[0]["deleted"] is False
