"""Create in a real browser: imagine → live progress → U2 → the upscale card; a reload mid-run
re-attaches to the running task; errors read as the API gives them."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.browser.conftest import ADMIN_KEY, Pages, sign_in
from tests.helpers import Server, wait_terminal


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


def _upscaled(page: Any, prompt: str) -> Any:
    page.fill("#prompt", prompt)
    page.press("#prompt", "Enter")
    grid = f'article.card[data-status="SUCCESS"]:has-text("{prompt}")'
    page.wait_for_selector(f"{grid} img[data-kind=result]")
    page.locator(grid).locator('button:text-is("U1")').click()
    pick = 'article.card[data-status="SUCCESS"]:has-text("U1 of")'
    page.wait_for_selector(f"{pick} img[data-kind=result]")
    return page.locator(pick).first


def test_custom_zoom_asks_in_a_dialog_and_closing_it_cancels_with_a_refund(pages: Pages, srv: Server) -> None:
    page = sign_in(pages.open(), ADMIN_KEY)
    pick = _upscaled(page, "a harbour wall --seed 31")
    pick.locator('button:text-is("Custom Zoom")').click()
    dialog = page.locator("#zoom-dialog")
    dialog.wait_for()
    assert "left, then the task is cancelled and refunded" in dialog.locator(".countdown").inner_text()
    assert page.input_value("#zoom-prompt").startswith("a harbour wall")
    page.fill("#zoom-factor", "1.8")
    dialog.locator("button[type=submit]").click()
    page.wait_for_selector('article.card[data-status="SUCCESS"]:has-text("zoom of") img[data-kind=result]')
    zoom = page.locator('article.card:has-text("zoom of")').first
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as api:
        assert api.get(f"/v1/midjourney/{zoom.get_attribute('data-task-id')}").json()["params"]["zoom"] == 1.8

    pick.locator('button:text-is("Custom Zoom")').click()
    dialog.wait_for()
    page.keyboard.press("Escape")  # closing it is a no: the task is cancelled and refunded
    page.wait_for_selector('article.card[data-status="CANCEL"]:has-text("zoom of")')
    assert "refunded" in page.locator('article.card[data-status="CANCEL"]').first.inner_text()


def test_shortcuts_are_listed_under_question_mark_and_never_fire_while_typing(pages: Pages, srv: Server) -> None:
    page = sign_in(pages.open(), ADMIN_KEY)
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "prompt"
    page.keyboard.type("what? / ")
    assert page.input_value("#prompt") == "what? / " and not page.locator("#shortcuts").is_visible()
    page.locator("#prompt").blur()
    page.keyboard.press("?")
    sheet = page.locator("#shortcuts")
    sheet.wait_for()
    assert "Write a prompt" in sheet.inner_text() and "Go to Review" in sheet.inner_text()
    page.keyboard.press("Escape")
    sheet.wait_for(state="hidden")


def test_a_task_that_finishes_while_the_tab_is_hidden_shows_its_result_when_it_is_shown(pages: Pages, srv: Server) -> None:
    page = sign_in(pages.open(), ADMIN_KEY)
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as api:
        task_id = api.post("/v1/midjourney/generations/imagine", json={"prompt": "hidden tab --seed 9", "engine": "slow"}).json()["data"][0]["task_id"]
        page.wait_for_selector(f'article.card[data-task-id="{task_id}"][data-status="IN_PROGRESS"]')
        visibility = "hidden => { Object.defineProperty(document, 'hidden', {value: hidden, configurable: true});" \
                     " document.dispatchEvent(new Event('visibilitychange')); }"
        page.evaluate(visibility, True)  # the page closes its stream
        wait_terminal(api, task_id, timeout=30)
    assert page.locator(f'article.card[data-task-id="{task_id}"]').get_attribute("data-status") == "IN_PROGRESS"
    page.evaluate(visibility, False)  # a new stream: its snapshot lacks the finished task; the page reads it again
    page.wait_for_selector(f'article.card[data-task-id="{task_id}"][data-status="SUCCESS"] img[data-kind=result]')
