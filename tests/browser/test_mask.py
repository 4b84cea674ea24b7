"""The mask editor in a real browser: a stroke drawn with the mouse becomes a mask that is white
exactly where it was drawn, and the inpainted picture keeps every pixel outside it."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np

from tests.browser.conftest import ADMIN_KEY, PHONE, Pages, sign_in
from tests.helpers import Server, download_image

BRUSH = 32  # the editor's starting brush, in the picture's own pixels


def _done(page: Any, selector: str) -> Any:
    page.wait_for_selector(f'{selector}[data-status="SUCCESS"] img[data-kind=result]')
    return page.locator(selector)


def test_a_drawn_stroke_is_the_mask_and_the_rest_of_the_picture_is_kept(pages: Pages, srv: Server) -> None:
    page = sign_in(pages.open(viewport={"width": 1280, "height": 900}), ADMIN_KEY)
    page.fill("#prompt", "a walled garden --seed 11")
    page.press("#prompt", "Enter")
    grid = _done(page, "article.card:has-text('a walled garden')")
    grid.locator('button:text-is("U1")').click()
    upscale = _done(page, "article.card:has-text('U1 of')")
    upscale_id = upscale.get_attribute("data-task-id")
    upscale.locator('button:text-is("Vary (Region)")').click()

    dialog = page.locator("#mask-dialog")
    dialog.wait_for()  # the task entered MODAL: its editor opened by itself
    canvas = dialog.locator("canvas")
    box = canvas.bounding_box()
    size = canvas.evaluate("c => [c.width, c.height]")
    scale = size[0] / box["width"]
    # A stroke from 30 % to 70 % across, at 40 % down, in a few mouse moves.
    y = box["y"] + box["height"] * 0.4
    x0, x1 = box["x"] + box["width"] * 0.3, box["x"] + box["width"] * 0.7
    page.mouse.move(x0, y)
    page.mouse.down()
    page.mouse.move(x1, y, steps=8)
    page.mouse.up()
    page.fill("#mask-prompt", "a fountain")
    dialog.locator("button[type=submit]").click()
    dialog.wait_for(state="hidden")

    inpaint = _done(page, "article.card:has-text('inpaint of')")
    task_id = inpaint.get_attribute("data-task-id")
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as api:
        task = api.get(f"/v1/midjourney/{task_id}").json()
        assert task["parent_task_id"] == upscale_id and task["prompt"].startswith("a fountain")
        mask = np.asarray(download_image(api, task["params"]["mask"]["url"]).convert("L"))
        source = np.asarray(download_image(api, api.get(f"/v1/midjourney/{upscale_id}").json()["image_urls"][0]).convert("RGB"))
        result = np.asarray(download_image(api, task["image_urls"][0]).convert("RGB"))

    assert mask.shape == source.shape[:2]
    assert set(np.unique(mask)) <= {0, 255}  # black and white, no grey edges
    # White exactly where the stroke went: within the brush's radius of the segment drawn.
    ys, xs = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]
    ax, bx, sy = (x0 - box["x"]) * scale, (x1 - box["x"]) * scale, (y - box["y"]) * scale
    dx = np.clip(xs, ax, bx) - xs
    distance = np.hypot(dx, ys - sy)
    assert (mask[distance <= BRUSH / 2 - 1.5] == 255).all()
    assert (mask[distance >= BRUSH / 2 + 1.5] == 0).all()

    # The picture outside the mask is the upscale's own, pixel for pixel; inside it changed.
    assert result.shape == source.shape
    kept = mask == 0
    assert (result[kept] == source[kept]).all()
    assert (result[mask == 255] != source[mask == 255]).any()


def test_a_finger_draws_on_the_mask_at_phone_size(pages: Pages, srv: Server) -> None:
    page = sign_in(pages.open(**PHONE), ADMIN_KEY)
    page.fill("#prompt", "a rocky shore --seed 12")
    page.tap("#go")
    grid = _done(page, "article.card:has-text('a rocky shore')")
    grid.locator('button:text-is("U2")').tap()
    upscale = _done(page, "article.card:has-text('U2 of')")
    upscale.locator('button:text-is("Vary (Region)")').tap()
    dialog = page.locator("#mask-dialog")
    dialog.wait_for()
    canvas = dialog.locator("canvas")
    box = canvas.bounding_box()
    assert box["width"] <= 390
    # A real touch stroke, through Chromium's input pipeline (the DevTools protocol): the
    # browser makes the Pointer Events the editor draws with, as for a mouse or a pen.
    touch = page.context.new_cdp_session(page)
    y = box["y"] + box["height"] / 2
    xs = [box["x"] + box["width"] * (0.2 + 0.05 * i) for i in range(9)]
    touch.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": xs[0], "y": y}]})
    for x in xs[1:]:
        touch.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
    touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    painted = canvas.evaluate("c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                              " let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 127; return n; }")
    size = canvas.evaluate("c => c.width")
    # A 32 px brush along 40 % of the picture's width: about 0.4 × width × 32 pixels painted.
    assert 0.8 * 0.4 * size * BRUSH <= painted <= 1.2 * (0.4 * size * BRUSH + BRUSH * BRUSH)
    page.keyboard.press("Escape")
    page.wait_for_selector('article.card[data-status="CANCEL"]:has-text("inpaint of")')
