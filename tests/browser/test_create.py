"""Create in a real browser: imagine → live progress → U2 → the upscale card; a reload mid-run
re-attaches to the running task; errors read as the API gives them."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.browser.conftest import ADMIN_KEY, Pages, sign_in
from tests.helpers import Server


def _card(page: Any, status: str | None = None) -> Any:
    selector = "article.card" + (f'[data-status="{status}"]' if status else "")
    return page.locator(selector)


def test_imagine_renders_live_then_u2_makes_an_upscale_card(pages: Pages, srv: Server) -> None:
    page = sign_in(pages.open(), ADMIN_KEY)
    page.fill("#prompt", "a lighthouse at dusk --seed 7")
    page.press("#prompt", "Enter")
    first = _card(page).first
    # Progress is seen on its way (the engine takes 120 ms a picture), then the grid.
    page.wait_for_selector("article.card progress", state="attached")
    first_id = first.get_attribute("data-task-id")
    page.wait_for_selector(f'article.card[data-task-id="{first_id}"][data-status="SUCCESS"] img[data-kind=result]')
    grid = page.locator(f'article.card[data-task-id="{first_id}"]')
    assert "U2" in grid.locator(".buttons").inner_text()

    started = time.perf_counter()
    grid.locator('button:text-is("U2")').click()
    page.wait_for_selector('article.card[data-status="SUCCESS"]:has-text("U2 of") img[data-kind=result]')
    took_ms = (time.perf_counter() - started) * 1000
    print(f"\nU2 click -> upscale card with its image: {took_ms:.0f} ms")
    upscale = page.locator('article.card:has-text("U2 of")')
    assert upscale.get_attribute("data-task-id") != first_id
    assert "Vary (Region)" in upscale.locator(".buttons").inner_text()


def test_a_reload_mid_run_reattaches_to_the_running_task(pages: Pages, srv: Server) -> None:
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as api:
        # 1.5 s a picture: about 6 s of rendering, several seconds more than the reload needs.
        task_id = api.post("/v1/midjourney/generations/imagine", json={"prompt": "reattach me --seed 3", "engine": "slow"}).json()["data"][0]["task_id"]
    page = sign_in(pages.open(), ADMIN_KEY)
    running = f'article.card[data-task-id="{task_id}"][data-status="IN_PROGRESS"]'
    page.wait_for_selector(running)
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    # Still rendering after the reload, with its live preview, and carried by the stream to the end.
    page.wait_for_selector(f"{running} img[data-kind=preview]")
    page.wait_for_selector(f'article.card[data-task-id="{task_id}"][data-status="SUCCESS"] img[data-kind=result]', timeout=30_000)
    assert page.locator(f'article.card[data-task-id="{task_id}"] .status').inner_text() == "done"


def test_errors_read_as_the_api_gives_them(pages: Pages, srv: Server) -> None:
    page = sign_in(pages.open(), ADMIN_KEY)
    page.fill("#prompt", "a cat --ar 99:1")
    page.click("#go")
    error = page.locator("#imagine-error")
    error.wait_for()
    assert "--ar" in error.inner_text() or "aspect" in error.inner_text().lower()
