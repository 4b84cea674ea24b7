"""Batches, usage and keys in a real browser: a batch from a template and a CSV runs to the end
with live counts and a manifest; usage shows the balance and the day's charges; an admin creates
a key (shown once), and revokes it, both audited."""

from __future__ import annotations

import csv
import io

import httpx

from tests.browser.conftest import ADMIN_KEY, Pages, sign_in
from tests.helpers import Server, wait_terminal


def _admin(srv: Server) -> httpx.Client:
    return httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"})


def test_a_batch_from_a_template_and_a_csv(pages: Pages, srv: Server) -> None:
    with _admin(srv) as api:
        api.post("/v1/templates", json={"name": "animals", "body": "a {animal} at {time}", "variables": {"animal": {"type": "text"}, "time": {"type": "text"}}})
        api.post("/v1/templates/animals/versions/1/publish")
        api.put("/v1/templates/animals/releases/stable", json={"version": 1})
    page = sign_in(pages.open(), ADMIN_KEY, "/console/batches")
    page.select_option("#batch-template", "animals")
    page.fill("#batch-csv", 'animal,time\nfox,dusk\n"heron, grey",dawn\n')
    assert page.locator("#batch-preview").inner_text() == "2 tasks, in the batch lane"
    page.click("#new-batch button[type=submit]")
    done = page.locator('#batch-list tr[data-status="completed"]')
    done.wait_for(timeout=30_000)
    assert "2 / 2" in done.inner_text() and "success 2" in done.inner_text()
    batch_id = done.get_attribute("data-batch-id")
    with page.expect_download() as download:
        done.locator("a:text-is('CSV')").click()
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert [r["prompt"] for r in rows] == ["a fox at dusk", "a heron, grey at dawn"] and {r["status"] for r in rows} == {"SUCCESS"}
    with _admin(srv) as api:
        assert api.get(f"/v1/batches/{batch_id}").json()["done"] == 2


def test_a_bad_csv_is_the_apis_error_and_cancel_refunds(pages: Pages, srv: Server) -> None:
    page = sign_in(pages.open(), ADMIN_KEY, "/console/batches")
    page.fill("#batch-prompt", "a {animal} in the snow")
    page.fill("#batch-csv", "colour\nred\n")  # not the slot the prompt names
    page.click("#new-batch button[type=submit]")
    error = page.locator("#batch-error")
    error.wait_for()
    assert "animal" in error.inner_text()
    # A slow batch (1.5 s a picture) to cancel while it runs.
    with _admin(srv) as api:
        made = api.post("/v1/batches", json={"prompt_template": "a {animal} slowly", "variables": [{"animal": f"owl {i}"} for i in range(6)],
                                              "defaults": {"prompt": "-", "engine": "slow"}}).json()["data"][0]["batch_id"]
    page.reload()
    running = page.locator(f'#batch-list tr[data-batch-id="{made}"][data-status="running"]')
    running.wait_for()
    page.on("dialog", lambda dialog: dialog.accept())
    running.locator('[data-act="cancel"]').click()
    page.locator(f'#batch-list tr[data-batch-id="{made}"][data-status="cancelled"]').wait_for()
    with _admin(srv) as api:
        counts = api.get(f"/v1/batches/{made}").json()["counts"]
    assert counts["CANCEL"] >= 1 and counts["NOT_START"] + counts["SUBMITTED"] + counts["IN_PROGRESS"] == 0


def test_usage_shows_the_balance_and_the_days_charges(pages: Pages, srv: Server) -> None:
    out = srv.cli("keys", "create", "--tenant", "spender").stdout.split()
    key_id, key = out[1], out[-1]
    srv.cli("keys", "balance", key_id, "--set", "10")
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {key}"}) as api:
        for seed in (1, 2):
            task_id = api.post("/v1/midjourney/generations/imagine", json={"prompt": f"a receipt --seed {seed}"}).json()["data"][0]["task_id"]
            wait_terminal(api, task_id)
    page = sign_in(pages.open(), key, "/console/usage")
    assert page.locator("#balance").inner_text() == "8 units left"
    assert page.locator("#chart-daily svg rect").count() == 1
    assert "2 units net" in page.locator("#chart-daily p").inner_text()
    assert page.locator("#prices td").nth(4).inner_text() == "2"


def test_an_admin_creates_a_key_shown_once_and_revokes_it(pages: Pages, srv: Server) -> None:
    page = sign_in(pages.open(), ADMIN_KEY, "/console/keys")
    page.fill("#key-tenant", "newcomer")
    page.fill("#key-name", "the mobile app")
    page.click("#new-key button[type=submit]")
    shown = page.locator("#new-key-value")
    shown.wait_for()
    key = shown.inner_text()
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {key}"}) as api:
        assert api.get("/v1/tasks").status_code == 200
    line = page.locator('#key-list tr:has-text("the mobile app")')
    key_id = line.get_attribute("data-key-id")
    assert key not in page.locator("#key-list").inner_text()  # the list never shows a key
    page.on("dialog", lambda dialog: dialog.accept())
    line.locator('[data-act="revoke"]').click()
    page.locator(f'#key-list tr[data-key-id="{key_id}"][data-state="revoked"]').wait_for()
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {key}"}) as api:
        assert api.get("/v1/tasks").status_code == 401
    with _admin(srv) as api:
        audit = [(e["action"], e["subject"]) for e in api.get("/v1/admin/audit", params={"kind": "key"}).json()]
    assert audit[:2] == [("revoked", key_id), ("created", key_id)]
