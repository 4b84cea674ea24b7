"""The gallery in a real browser: filters, a star, a selection downloaded as a zip, the compare
slider, and a delete."""

from __future__ import annotations

import zipfile
from typing import Any

import httpx

from tests.browser.conftest import Pages, sign_in
from tests.helpers import Server, wait_for, wait_terminal


def _count(page: Any, n: int) -> None:
    # Waited for from here: the page's policy forbids evaluating strings, as wait_for_function does.
    wait_for(lambda: page.locator("#gallery figure").count() == n, timeout=15, what=f"{n} pictures")


def _only(page: Any, task_id: str) -> None:
    def shown() -> bool:
        ids = {f.get_attribute("data-task-id") for f in page.locator("#gallery figure").all()}
        return ids == {task_id}

    wait_for(shown, timeout=15, what=f"only the pictures of {task_id}")


def test_filter_star_zip_compare_and_delete(pages: Pages, srv: Server) -> None:
    key = srv.cli("keys", "create", "--tenant", "curator").stdout.split()[-1]
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {key}"}) as api:
        made = [wait_terminal(api, api.post("/v1/midjourney/generations/imagine", json={"prompt": p}).json()["data"][0]["task_id"])
                for p in ("a red barn --ar 3:2 --seed 1", "a blue lake --seed 2")]
    page = sign_in(pages.open(), key, "/console/gallery")
    page.wait_for_selector("#gallery figure")
    assert page.locator("#gallery figure").count() == 8  # two grids, four pictures each
    page.fill('#gallery-filters input[name="q"]', "barn")
    page.press('#gallery-filters input[name="q"]', "Enter")
    _count(page, 4)
    assert page.locator("#gallery figure").first.get_attribute("data-task-id") == made[0]["task_id"]
    page.fill('#gallery-filters input[name="q"]', "")
    page.select_option('#gallery-filters select[name="aspect"]', "1:1")
    _only(page, made[1]["task_id"])

    page.select_option('#gallery-filters select[name="aspect"]', "")
    _count(page, 8)
    page.locator(f'figure[data-task-id="{made[1]["task_id"]}"] .star').first.click()
    page.wait_for_selector(f'figure[data-task-id="{made[1]["task_id"]}"] .star.on')
    page.check('#gallery-filters input[name="starred"]')
    _only(page, made[1]["task_id"])
    page.uncheck('#gallery-filters input[name="starred"]')
    _count(page, 8)

    tiles = page.locator("#gallery figure input[type=checkbox]")
    tiles.nth(0).check()
    tiles.nth(4).check()
    assert page.locator("#selected-count").inner_text() == "2 selected"
    with page.expect_download() as download:
        page.click("#zip")
    with zipfile.ZipFile(download.value.path()) as archive:
        assert len(archive.namelist()) == 8  # both tasks, every picture

    page.click("#compare")
    dialog = page.locator("#compare-dialog")
    dialog.wait_for()
    page.locator("#compare-at").fill("20")
    assert "inset(0px 0px 0px 20%)" in page.locator("#compare-top").get_attribute("style").replace("0 0 0", "0px 0px 0px")
    page.click("#compare-dialog [data-close]")

    page.on("dialog", lambda d: d.accept())
    page.click("#delete")
    _count(page, 0)
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {key}"}) as api:
        assert api.get("/v1/tasks").json()["data"] == []
