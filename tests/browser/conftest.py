"""Browser tests: Debian's Chromium, driven by Playwright's own sync API (no pytest-playwright:
its fixtures warn, and -W error fails them), against a real ``pixelmill serve`` process.

- Every page a test opens fails the test on a JavaScript error or a console error.
- Tests wait for ``body[data-ready=true]``, which a page's script sets once it has started, before
  pressing keys: a key pressed earlier would find no handler.
- Where /usr/bin/chromium is missing the tests skip, loudly; under CI=true they fail instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Server, require_extra

CHROMIUM = Path(os.environ.get("PIXELMILL_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ADMIN_KEY = "pm_browser_" + "a" * 32
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}

pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    message = f"browser tests need Chromium at {CHROMIUM}: apt-get install -y chromium"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message, allow_module_level=True)

sync_api = require_extra("playwright.sync_api", "dev")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    # Per module, not per session: Playwright's sync API keeps an event loop running in this
    # thread while it is open, and every later test that calls asyncio.run() would fail.
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with workers, a procedural engine slow enough to watch render (120 ms a picture)
    and a slower one (``engine: "slow"``, 1.5 s a picture) for what must happen mid-run."""
    engines = {"procedural": {"kind": "procedural"}, "slow": {"kind": "procedural", "delay_ms": 1500}}
    server = Server(tmp_path_factory.mktemp("browser"), ADMIN_KEY, workers=2, procedural_delay_ms=120,
                    engines=json.dumps(engines)).start()
    yield server
    server.stop()


class Pages:
    """New browser contexts (each its own cookies), whose pages fail the test on any script error."""

    def __init__(self, chromium: Any, base: str) -> None:
        self._chromium = chromium
        self.base = base
        self.errors: list[str] = []
        self._contexts: list[Any] = []

    def open(self, **context: Any) -> Any:
        ctx = self._chromium.new_context(base_url=self.base, **context)
        ctx.set_default_timeout(15_000)
        self._contexts.append(ctx)
        page = ctx.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("console", self._console)
        return page

    def _console(self, msg: Any) -> None:
        # Chromium logs every answer of 4xx as a failed load. A refused sign-in or page (401, 403)
        # and an API error the page shows are what the tests assert; a missing file (404 of a
        # page's own script or style) or a server error fails the test, like any script error.
        text, url = msg.text, msg.location.get("url", "")
        answered = text.startswith("Failed to load resource: the server responded with a status of ")
        expected = answered and ("status of 401" in text or "status of 403" in text
                                 or ("status of 4" in text and "/console/api/" in url))
        if msg.type == "error" and not expected:
            self.errors.append(f"console {msg.type}: {text} at {url}")

    def close(self) -> None:
        for ctx in self._contexts:
            ctx.close()


@pytest.fixture
def pages(chromium: Any, srv: Server) -> Iterator[Pages]:
    made = Pages(chromium, srv.url)
    yield made
    made.close()
    assert not made.errors, "\n".join(made.errors)


def sign_in(page: Any, key: str, then: str = "/console") -> Any:
    page.goto("/console/login")
    page.fill("#api_key", key)
    page.click("button[type=submit]")
    page.wait_for_url("**/console")
    if then != "/console":
        page.goto(then)
    page.wait_for_selector("body[data-ready=true]")
    return page


SignIn = Callable[..., Any]

#: Every visible control a finger can hit, smaller than 44 px each way: what a phone layout must not have.
SMALL_TARGETS = """() => [...document.querySelectorAll('a[href], button, input, select, textarea, summary')]
  .filter((el) => el.offsetParent !== null && getComputedStyle(el).visibility !== 'hidden')
  .map((el) => [el, el.getBoundingClientRect()])
  .filter(([el, r]) => r.height < 44 || ((el.type === 'checkbox' || el.type === 'radio' || el.tagName === 'BUTTON') && r.width < 44))
  .map(([el, r]) => `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''} "${(el.textContent || el.name || '').trim().slice(0, 30)}" ${Math.round(r.width)}×${Math.round(r.height)}`)"""


def small_targets(page: Any) -> list[str]:
    return list(page.evaluate(SMALL_TARGETS))
