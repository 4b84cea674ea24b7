"""``GET /v1/tasks``: a tenant's tasks, newest first, filtered and paged, against the real server."""

from __future__ import annotations

import uuid

import httpx

from tests.helpers import Server, wait_terminal

IMAGINE = "/v1/midjourney/generations/imagine"


def _tenant(server: Server) -> httpx.Client:
    key = server.cli("keys", "create", "--tenant", f"lister-{uuid.uuid4().hex[:8]}").stdout.split()[-1]
    return server.client(key)


def test_a_tenant_lists_its_tasks_a_page_at_a_time_with_filters(server: Server) -> None:
    with _tenant(server) as api, _tenant(server) as other:
        ids = [api.post(IMAGINE, json={"prompt": f"a {word} at dusk", "seed": 3}).json()["data"][0]["task_id"]
               for word in ("lighthouse", "harbour", "Lighthouse keeper")]
        for task_id in ids:
            wait_terminal(api, task_id)
        pick = api.post("/v1/midjourney/generations/upscale", json={"task_id": ids[0], "index": 1}).json()["data"][0]["task_id"]
        wait_terminal(api, pick)

        first = api.get("/v1/tasks", params={"limit": 2}).json()
        assert [t["task_id"] for t in first["data"]] == [pick, ids[2]] and first["next_cursor"]
        rest = api.get("/v1/tasks", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        assert [t["task_id"] for t in rest["data"]] == [ids[1], ids[0]] and rest["next_cursor"] is None
        assert rest["data"][0]["status"] == "SUCCESS" and rest["data"][0]["image_urls"]

        assert [t["task_id"] for t in api.get("/v1/tasks", params={"action": "upscale"}).json()["data"]] == [pick]
        assert [t["task_id"] for t in api.get("/v1/tasks", params={"parent": ids[0]}).json()["data"]] == [pick]
        assert api.get("/v1/tasks", params={"parent": ids[1]}).json()["data"] == []
        assert [t["task_id"] for t in api.get("/v1/tasks", params={"q": "LIGHTHOUSE", "action": "IMAGINE"}).json()["data"]] == [ids[2], ids[0]]
        assert len(api.get("/v1/tasks", params={"status": "SUCCESS,FAILURE"}).json()["data"]) == 4
        assert other.get("/v1/tasks").json() == {"data": [], "next_cursor": None}  # another tenant's tasks never show

        wrong = api.get("/v1/tasks", params={"status": "DONE"})
        assert wrong.status_code == 400 and wrong.json()["code"] == 4
        assert wrong.json()["description"].startswith("status: 'DONE' is not one of CANCEL, FAILURE")
        bad_cursor = api.get("/v1/tasks", params={"cursor": "not-ours"})
        assert bad_cursor.status_code == 400 and bad_cursor.json()["description"].startswith("cursor: not a cursor this server gave")
        assert api.get("/v1/tasks", params={"limit": 0}).status_code == 400
