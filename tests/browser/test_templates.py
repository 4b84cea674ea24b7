"""Templates in a real browser: the diff of two versions, a 10 % rollout (confirmed, audited),
rollback, the "which version" tester, and Promote disabled with its reason when an evaluation is
required; a tenant's key sees no controls."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.browser.conftest import ADMIN_KEY, Pages, sign_in
from tests.helpers import Server, wait_for

SUBJECT = {"subject": {"type": "text"}}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("templates"), ADMIN_KEY, workers=1, template_promotion_needs_evaluation="true",
                    chores_interval_seconds=0.5).start()  # evaluations are settled by the chores
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as api:
        assert api.post("/v1/templates", json={"name": "hero", "body": "a {subject} in brand style", "variables": SUBJECT}).status_code == 200
        api.post("/v1/templates/hero/versions/1/publish")
        api.post("/v1/templates/hero/versions", json={"body": "a {subject}, brand colours, soft light", "variables": SUBJECT, "note": "softer"})
        api.post("/v1/templates/hero/versions/2/publish")
        api.put("/v1/templates/hero/releases/stable", json={"version": 1})
    yield server
    server.stop()


def _audit(srv: Server) -> list[dict[str, object]]:
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as api:
        return list(api.get("/v1/admin/audit", params={"kind": "template"}).json())


def test_diff_rollout_to_ten_percent_audited_then_rollback(pages: Pages, srv: Server) -> None:
    page = sign_in(pages.open(), ADMIN_KEY, "/console/templates")
    page.wait_for_selector("#diff div")
    assert page.locator("#diff .removed").inner_text() == "- body: a {subject} in brand style"
    assert page.locator("#diff .added").inner_text() == "+ body: a {subject}, brand colours, soft light"
    assert "softer" in page.locator('#timeline [data-version="2"]').inner_text()

    page.on("dialog", lambda dialog: dialog.accept())
    page.locator('[data-rollout="stable"]').fill("10")
    page.click('[data-release="stable"] [data-act="rollout"]')
    page.wait_for_selector('[data-release="stable"]:has-text("candidate v2 at 10 %")')
    rolled = _audit(srv)[0]
    assert rolled["action"] == "rollout" and rolled["detail"] == {"tag": "stable", "candidate": 2, "percent": 10}
    # An evaluation is required: Promote is off, and says why.
    promote = page.locator('[data-release="stable"] [data-act="promote"]')
    assert promote.is_disabled() and "needs a finished evaluation" in page.locator('[data-blocked="stable"]').inner_text()

    page.fill("#try-subject", "someone")
    page.click("#try button[type=submit]")
    page.wait_for_selector("#try-answer:not(:empty)")
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as api:
        said = api.get("/v1/templates/hero/resolve", params={"subject_id": "someone"}).json()
    assert page.locator("#try-answer").inner_text() == f"gets v{said['version']} ({said['rollout']})"

    page.click('[data-release="stable"] [data-act="rollback"]')
    page.wait_for_selector('[data-release="stable"] strong:text-is("stable → v1")')
    assert _audit(srv)[0]["action"] == "rolled back"


def test_a_tenant_reads_templates_without_controls(pages: Pages, srv: Server) -> None:
    key = srv.cli("keys", "create", "--tenant", "default").stdout.split()[-1]
    page = sign_in(pages.open(), key, "/console/templates")
    page.wait_for_selector("#diff div")
    assert page.locator('[data-act="rollout"]').count() == 0 and page.locator("[data-rollout]").count() == 0


def test_an_evaluation_started_here_shows_its_contact_sheet_inside_the_page(pages: Pages, srv: Server) -> None:
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as api:
        assert api.put("/v1/templates/hero/sets/smoke", json={"items": [{"subject": "teapot"}]}).status_code == 200
    page = sign_in(pages.open(), ADMIN_KEY, "/console/templates")
    form = page.locator("#new-evaluation")
    form.wait_for()
    form.locator("input[aria-label='evaluation set']").fill("smoke")
    form.locator("button[type=submit]").click()
    page.wait_for_selector('#evaluations li:has-text("v1 vs v2")')
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as api:
        wait_for(lambda: api.get("/v1/templates/hero/evaluations").json()[0]["state"] == "done", timeout=60, what="the evaluation")
    page.reload()
    page.wait_for_selector('#evaluations li[data-state="done"]')
    page.locator('#evaluations li[data-state="done"] button').click()
    sheet = page.frame_locator("iframe.sheet")
    assert "v1 vs v2" in sheet.locator("h1").inner_text()
