"""Sign-in, tenancy, the task detail page and the operations page, in a real browser."""

from __future__ import annotations

from typing import Any

import httpx

from tests.browser.conftest import ADMIN_KEY, PHONE, Pages, sign_in, small_targets
from tests.helpers import Server, wait_terminal


def _tenant_key(srv: Server, tenant: str) -> tuple[str, str]:
    """A new key of ``tenant``: its id and the key."""
    out = srv.cli("keys", "create", "--tenant", tenant).stdout.split()
    return out[1], out[-1]


def _finished(srv: Server, key: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {key}"}) as api:
        return wait_terminal(api, api.post(path, json=body).json()["data"][0]["task_id"])


def test_sign_in_wrong_key_sign_out_and_a_revoked_key(pages: Pages, srv: Server) -> None:
    page = pages.open()
    page.goto("/console")
    page.wait_for_url("**/console/login")
    page.fill("#api_key", "pm_not_a_key")
    page.click("button[type=submit]")
    assert "not a live API key" in page.locator("[role=alert]").inner_text()
    assert page.context.cookies() == []

    key_id, key = _tenant_key(srv, "signer")
    sign_in(page, key)
    assert page.locator("header [data-tenant]").inner_text() == "signer"
    cookie = page.context.cookies()[0]
    assert cookie["name"] == "pm_console" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # scripts cannot read the session
    page.click("text=Sign out")
    page.wait_for_url("**/console/login")
    page.goto("/console")
    page.wait_for_url("**/console/login")

    sign_in(page, key)
    srv.cli("keys", "revoke", key_id)
    page.reload()
    page.wait_for_url("**/console/login")


def test_tenant_a_never_sees_tenant_b_and_admin_pages_need_an_admin_key(pages: Pages, srv: Server) -> None:
    b_task = _finished(srv, _tenant_key(srv, "b-brand")[1], "/v1/midjourney/generations/imagine", {"prompt": "b's secret launch"})
    page = sign_in(pages.open(), _tenant_key(srv, "a-brand")[1])
    assert page.locator("article.card").count() == 0
    page.goto(f"/console/tasks/{b_task['task_id']}")
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("h1").inner_text() == "No such task"
    for path in ("/console/review", "/console/ops"):
        assert page.goto(path).status == 403
        assert "needs an admin API key" in page.content()
    assert page.locator("nav").inner_text().split() == ["Create", "Gallery", "Templates", "Batches", "Usage"]


def test_task_detail_shows_how_it_was_made_its_lineage_and_moves_with_arrow_keys(pages: Pages, srv: Server) -> None:
    grid = _finished(srv, ADMIN_KEY, "/v1/midjourney/generations/imagine", {"prompt": "a glass greenhouse --seed 21"})
    pick = _finished(srv, ADMIN_KEY, "/v1/midjourney/generations/upscale", {"task_id": grid["task_id"], "index": 3})
    page = sign_in(pages.open(), ADMIN_KEY, f"/console/tasks/{grid['task_id']}")
    facts = {k: page.locator(f'[data-fact="{k}"]').inner_text() for k in ("seed", "engine", "final prompt", "cost")}
    assert facts == {"seed": str(grid["seed"]), "engine": "procedural", "final prompt": grid["final_prompt"], "cost": "1 unit"}
    assert page.locator(".count").inner_text() == "1 / 4"
    image = page.locator(".viewer img")
    assert image.get_attribute("src") == grid["image_urls"][0]
    page.keyboard.press("ArrowRight")
    assert image.get_attribute("src") == grid["image_urls"][1] and page.locator(".count").inner_text() == "2 / 4"
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    assert page.locator(".count").inner_text() == "4 / 4"
    assert page.locator("#download").get_attribute("href") == grid["image_urls"][3]
    # Its child, the U3 pick, is in the tree; from there the grid is its parent.
    page.click(f'#lineage a[href="/console/tasks/{pick["task_id"]}"]')
    page.wait_for_selector("body[data-ready=true]")
    assert "U3 of" in page.locator("h1").inner_text()
    assert page.locator(f'#lineage a[href="/console/tasks/{grid["task_id"]}"]').count() == 1
    page.click("#use-prompt")
    page.wait_for_selector("body[data-ready=true]")
    assert page.input_value("#prompt") == pick["prompt"]


def test_operations_shows_readiness_queues_health_and_failures(pages: Pages, srv: Server) -> None:
    _finished(srv, ADMIN_KEY, "/v1/midjourney/generations/imagine", {"prompt": "a counted task --seed 4"})
    page = sign_in(pages.open(), ADMIN_KEY, "/console/ops")
    page.wait_for_selector("body[data-loaded=true]")
    readiness = page.locator("#readiness").inner_text()
    assert "database" in readiness and "ok" in readiness
    assert "interactive" in page.locator("#lanes").inner_text()
    health = page.locator("#health").inner_text()
    assert "success rate" in health and "min 0.95" in health
    assert "no finished tasks" not in page.locator("#chart-success p").inner_text()


def test_create_at_phone_size(pages: Pages, srv: Server) -> None:
    page = sign_in(pages.open(**PHONE), ADMIN_KEY)
    page.fill("#prompt", "a tide pool --seed 8")
    page.tap("#go")
    done = 'article.card[data-status="SUCCESS"]:has-text("a tide pool")'
    page.wait_for_selector(f"{done} img[data-kind=result]")
    card = page.locator(done)
    assert card.bounding_box()["width"] <= 390
    for button in card.locator(".buttons button").all():
        assert button.bounding_box()["height"] >= 44
    assert small_targets(page) == []
    # The imagine bar stays in reach at the bottom of the screen.
    bar = page.locator("#imagine").bounding_box()
    assert bar["y"] + bar["height"] >= 844 - 2
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_the_gallery_and_a_task_at_phone_size(pages: Pages, srv: Server) -> None:
    task = _finished(srv, ADMIN_KEY, "/v1/midjourney/generations/imagine", {"prompt": "a pier at low tide --seed 14"})
    page = sign_in(pages.open(**PHONE), ADMIN_KEY, "/console/gallery")
    page.wait_for_selector("#gallery figure")
    assert small_targets(page) == [] and page.evaluate("document.documentElement.scrollWidth") <= 390
    page.goto(f"/console/tasks/{task['task_id']}")
    page.wait_for_selector("body[data-ready=true] #lineage")
    assert small_targets(page) == [] and page.evaluate("document.documentElement.scrollWidth") <= 390
