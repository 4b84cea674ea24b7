"""The console's click-to-picture time (issue 22): a click on U2 of a finished grid on the Create
page until the new upscale card shows its image, in Debian's Chromium against a real server with
the procedural engine. The target is under 300 ms.

Each round submits a fresh grid (so no request cache answers), waits for it, then times the click.
Prints p50, p95 and max over the rounds, and the server-side submit → SUCCESS time of the upscales
for comparison (the rest is the event stream, the card and the image load).

Run: .venv/bin/python bench/console_latency.py --rounds 20
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from pixelmill.testing import Server
from service import pct

KEY = "pm_bench_" + "c" * 32
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    clicks: list[float] = []
    server_ms: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), KEY, workers=2).start()  # the defaults of `make run`, screening included
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                page = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900}).new_page()
                page.goto("/console/login")
                page.fill("#api_key", KEY)
                page.click("button[type=submit]")
                page.wait_for_selector("body[data-ready=true]")
                for i in range(args.rounds):
                    prompt = f"a lighthouse, round {i} --seed {1000 + i}"
                    page.fill("#prompt", prompt)
                    page.press("#prompt", "Enter")
                    grid = f'article.card[data-status="SUCCESS"]:has-text("{prompt}")'
                    page.wait_for_selector(f"{grid} img[data-kind=result]")
                    grid_id = page.locator(grid).get_attribute("data-task-id")
                    before = page.locator("article.card").count()
                    button = page.locator(grid).locator('button:text-is("U2")')
                    started = time.perf_counter()
                    button.click()
                    # The new card (one more than before) showing its finished picture, decoded.
                    page.wait_for_function(
                        """([n, parent]) => [...document.querySelectorAll('article.card[data-status="SUCCESS"]')].some((c) =>
                             c.querySelector(`.origin a[href$="/${parent}"]`) && c.querySelector('img[data-kind=result]')?.complete
                             && c.querySelector('img[data-kind=result]').naturalWidth > 0) && document.querySelectorAll('article.card').length > n""",
                        arg=[before, grid_id], polling="raf")
                    clicks.append((time.perf_counter() - started) * 1000)
                browser.close()
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as api:
                for t in api.get("/v1/tasks", params={"action": "UPSCALE", "limit": 200}).json()["data"]:
                    server_ms.append(t["finish_time"] - t["submit_time"])
        finally:
            server.stop()
    print(f"U2 click -> upscale card showing its image, {len(clicks)} rounds: "
          f"p50 {pct(clicks, 50):.0f} ms, p95 {pct(clicks, 95):.0f} ms, max {max(clicks):.0f} ms (target < 300 ms)")
    print(f"server side, upscale submit -> SUCCESS: p50 {pct(server_ms, 50):.0f} ms, p95 {pct(server_ms, 95):.0f} ms")


if __name__ == "__main__":
    main()
