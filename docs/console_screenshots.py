"""Screenshots of the web console's pages for docs/console.md, taken from a real server in
Debian's Chromium: ``.venv/bin/python docs/console_screenshots.py`` (after ``make test`` has
installed the dev extra; Chromium: ``apt-get install -y chromium``). Writes docs/console/*.png.

The held pictures on the review page are made the way tests/e2e/test_screening.py makes them: a
portrait that the NudeNet detector labels FACE_FEMALE, made a review label for one tenant."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import matplotlib
from playwright.sync_api import sync_playwright

from pixelmill.testing import Server, wait_for

HERE = Path(__file__).parent
OUT = HERE / "console"
KEY = "pm_docs_" + "d" * 32
PORTRAIT = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
RULES = {"tenants": {"review": {"review": {"FACE_FEMALE": 0.2}, "inputs": {}}}}
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]


def _task(api: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    task_id = api.post(path, json=body).json()["data"][0]["task_id"]
    wait_for(lambda: api.get(f"/v1/midjourney/{task_id}").json()["status"] in ("SUCCESS", "FAILURE", "MODAL"), timeout=60, what=task_id)
    return dict(api.get(f"/v1/midjourney/{task_id}").json())


def _seed(server: Server) -> dict[str, Any]:
    """Work to show: grids, an upscale, a held picture, a template with a rollout, a failure."""
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as api:
        grid = _task(api, "/v1/midjourney/generations/imagine", {"prompt": "a lighthouse at dusk, volumetric light --ar 3:2 --seed 7"})
        _task(api, "/v1/midjourney/generations/imagine", {"prompt": "a glass greenhouse in the rain --seed 21"})
        pick = _task(api, "/v1/midjourney/generations/upscale", {"task_id": grid["task_id"], "index": 2})
        _task(api, "/v1/midjourney/generations/imagine", {"prompt": "a doomed harbour --seed 3"})
        spec = {"variables": {"subject": {"type": "text"}}}
        api.post("/v1/templates", json={"name": "hero-shot", "body": "a {subject} on a plain backdrop, studio light", **spec})
        api.post("/v1/templates/hero-shot/versions/1/publish")
        api.post("/v1/templates/hero-shot/versions", json={"body": "a {subject} on a plain backdrop, soft studio light, brand colours", **spec,
                                                            "note": "softer light, brand palette"})
        api.post("/v1/templates/hero-shot/versions/2/publish")
        api.put("/v1/templates/hero-shot/releases/stable", json={"version": 1})
        api.post("/v1/templates/hero-shot/releases/stable/rollout", json={"version": 2, "percent": 10})
        api.post("/v1/batches", json={"requests": [{"template": "hero-shot", "variables": {"subject": s}} for s in ("teapot", "sneaker", "lamp")]})
    reviewer = server.cli("keys", "create", "--tenant", "review").stdout.split()[-1]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {reviewer}"}, timeout=30) as api:
        url = api.post("/v1/uploads", content=PORTRAIT.read_bytes(), headers={"Content-Type": "image/jpeg"}).json()["data"][0]["url"]
        _task(api, "/v1/midjourney/generations/imagine", {"prompt": f"{url} a portrait in a garden --iw 3 --seed 99"})
    return {"grid": grid, "pick": pick}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        (data / "screening.json").write_text(json.dumps(RULES))
        server = Server(data, KEY, workers=2, screening="nudenet", screening_file=str(data / "screening.json"),
                        fault_injection='[{"match": "doomed", "retryable": false}]').start()
        try:
            made = _seed(server)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                for name, context in (("desktop", {"viewport": {"width": 1280, "height": 860}}),
                                      ("phone", {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
                                                 "device_scale_factor": 2})):
                    ctx = browser.new_context(base_url=server.url, **context)
                    page = ctx.new_page()
                    page.goto("/console/login")
                    if name == "desktop":
                        page.screenshot(path=OUT / "login.png")
                    page.fill("#api_key", KEY)
                    page.click("button[type=submit]")
                    page.wait_for_selector("body[data-ready=true] article.card img")
                    page.screenshot(path=OUT / f"create-{name}.png")
                    if name == "desktop":
                        page.locator(f'article.card[data-task-id="{made["pick"]["task_id"]}"] button:text-is("Vary (Region)")').click()
                        page.wait_for_selector("#mask-dialog[open] canvas")
                        box = page.locator("#mask-dialog canvas").bounding_box()
                        assert box is not None
                        page.mouse.move(box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.45)
                        page.mouse.down()
                        page.mouse.move(box["x"] + box["width"] * 0.65, box["y"] + box["height"] * 0.55, steps=10)
                        page.mouse.up()
                        page.screenshot(path=OUT / "mask-editor.png")
                        page.keyboard.press("Escape")
                        page.goto(f"/console/tasks/{made['grid']['task_id']}")
                        page.wait_for_selector("body[data-ready=true] #lineage")
                        page.screenshot(path=OUT / "task-detail.png", full_page=True)
                        page.goto("/console/templates")
                        page.wait_for_selector("body[data-ready=true] #diff div")
                        page.screenshot(path=OUT / "templates.png", full_page=True)
                        for extra in ("gallery", "batches", "usage", "keys"):
                            page.goto(f"/console/{extra}")
                            page.wait_for_selector("body[data-ready=true]")
                            page.screenshot(path=OUT / f"{extra}.png", full_page=True)
                        page.goto("/console/ops")
                        page.wait_for_selector("body[data-loaded=true]")
                        page.screenshot(path=OUT / "operations.png", full_page=True)
                    page.goto("/console/review")
                    page.wait_for_selector("body[data-ready=true] #held img")
                    page.screenshot(path=OUT / f"review-{name}.png", full_page=name == "desktop")
                    ctx.close()
                browser.close()
        finally:
            server.stop()
    for png in sorted(OUT.glob("*.png")):
        print(png.relative_to(HERE.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
