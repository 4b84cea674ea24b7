"""The review queue in a real browser, with the real detector holding real pictures (a portrait
that NudeNet labels FACE_FEMALE, made a review label for one tenant, as tests/e2e/test_screening.py
does): blurred until revealed, keyboard decisions that open the next item, undo, a live count,
bulk decisions, and the phone layout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import ADMIN_KEY, PHONE, Pages, sign_in, small_targets
from tests.e2e.test_screening import FACE_PROMPT, RULES, upload_portrait
from tests.helpers import Server, require_detector, wait_for, wait_terminal

require_detector()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("review")
    (tmp / "screening.json").write_text(json.dumps(RULES))
    server = Server(tmp, ADMIN_KEY, workers=2, screening="nudenet", screening_file=str(tmp / "screening.json")).start()
    yield server
    server.stop()


def _held_task(srv: Server) -> str:
    """A task of tenant "review" whose four pictures wait for review; its id."""
    key = srv.cli("keys", "create", "--tenant", "review").stdout.split()[-1]
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {key}"}) as c:
        url = upload_portrait(c)
        task = wait_terminal(c, c.post("/v1/midjourney/generations/imagine", json={"prompt": f"{url} {FACE_PROMPT}"}).json()["data"][0]["task_id"])
    assert [e["decision"] for e in task["screening"]] == ["review"] * 4
    return str(task["task_id"])


def _states(srv: Server, task_id: str) -> list[str]:
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:
        found = [r for s in ("pending", "approved", "rejected") for r in admin.get("/v1/admin/reviews", params={"state": s}).json()]
    return [r["state"] for r in sorted((r for r in found if r["task_id"] == task_id), key=lambda r: r["index"])]


def _current(page: Any) -> str:
    return str(page.locator('#queue button[aria-current="true"]').get_attribute("data-review-id"))


def test_review_by_keyboard_blurred_until_revealed_with_undo_and_a_live_count(pages: Pages, srv: Server) -> None:
    task_id = _held_task(srv)
    page = sign_in(pages.open(), ADMIN_KEY, "/console/review")
    page.wait_for_selector("#held img")
    assert page.locator("#pending-count").inner_text() == "· 4 waiting"
    assert page.locator("#review-count").inner_text() == "4"
    first = _current(page)
    assert first == f"{task_id}-1"
    held = page.locator("#held-image")
    # Blurred and grey, and only the server's blurred thumbnail is loaded until a reveal.
    assert "shield" in held.get_attribute("class") and held.get_attribute("src").endswith(f"/{first}/thumbnail")
    assert "FACE_FEMALE" in page.locator("#held table").inner_text()

    page.keyboard.press("a")  # approve: the next item opens at once
    wait_for(lambda: _current(page) == f"{task_id}-2", timeout=10, what="the next item to open")
    page.keyboard.press("Space")
    assert page.locator("#held-image").get_attribute("src").endswith(f"/{task_id}-2/image")
    assert "shield" not in (page.locator("#held-image").get_attribute("class") or "")

    page.keyboard.press("x")  # reject ... then undo within the window: it comes back
    wait_for(lambda: _current(page) == f"{task_id}-3", timeout=10, what="the item after the rejected one")
    page.keyboard.press("z")
    wait_for(lambda: _current(page) == f"{task_id}-2", timeout=10, what="the undone item to reopen")
    page.keyboard.press("3")  # reason 3 ...
    page.keyboard.press("x")  # ... and reject for real this time

    # The decisions land after their 5 s window; the count follows.
    wait_for(lambda: _states(srv, task_id) == ["approved", "rejected", "pending", "pending"], timeout=20, what="two decisions")
    page.wait_for_selector("#pending-count:text-is('· 2 waiting')")
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:
        notes = {r["index"]: r["note"] for r in admin.get("/v1/admin/reviews", params={"state": "rejected"}).json() if r["task_id"] == task_id}
    assert notes == {2: "off brand"}

    # New holds appear in the open queue without a reload.
    _held_task(srv)
    page.wait_for_selector("#pending-count:text-is('· 6 waiting')", timeout=15_000)


def test_bulk_decisions_and_review_at_phone_size(pages: Pages, srv: Server) -> None:
    task_id = _held_task(srv)
    page = sign_in(pages.open(**PHONE), ADMIN_KEY, "/console/review?")
    page.wait_for_selector("#held img")
    approve = page.locator("#approve").bounding_box()
    assert approve["height"] >= 44 and page.evaluate("document.documentElement.scrollWidth") <= 390
    assert small_targets(page) == []
    page.on("dialog", lambda dialog: dialog.accept())
    for i in (3, 4):
        page.check(f'#queue input[data-id="{task_id}-{i}"]')
    page.tap("#bulk-approve")
    wait_for(lambda: _states(srv, task_id)[2:] == ["approved", "approved"], timeout=10, what="the bulk approval")
    assert _states(srv, task_id)[:2] == ["pending", "pending"]
