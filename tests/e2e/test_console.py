"""The web console's sign-in against the real server: an API key exchanged for a server-side
session behind an HttpOnly, SameSite=Strict cookie scoped to /console; changes only from the
console's own pages; a revoked key or a sign-out ends the session; the cookie never opens /v1.
(Browser tests of the pages come with the pages.)"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import Server

KEY = "pm_console_" + "c" * 32


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("console"), KEY, workers=0).start()
    yield server
    server.stop()


def _browser(srv: Server) -> httpx.Client:
    """A client that sends what a browser sends on this console's own forms."""
    return httpx.Client(base_url=srv.url, headers={"Origin": srv.url}, follow_redirects=False)


def _sign_in(browser: httpx.Client, key: str) -> httpx.Response:
    return browser.post("/console/login", data={"api_key": key})


def test_a_key_is_exchanged_for_a_session_cookie_that_never_opens_the_api(srv: Server) -> None:
    with _browser(srv) as browser:
        assert browser.get("/console").headers["location"] == "/console/login"
        page = browser.get("/console/login")
        assert page.status_code == 200 and 'name="api_key"' in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'; script-src 'self'")

        wrong = _sign_in(browser, "pm_wrong")
        assert wrong.status_code == 401 and "not a live API key" in wrong.text and "set-cookie" not in wrong.headers

        signed = _sign_in(browser, KEY)
        assert signed.status_code == 303 and signed.headers["location"] == "/console"
        cookie = signed.headers["set-cookie"]
        assert cookie.startswith("pm_console=") and KEY not in cookie
        assert all(flag in cookie for flag in ("HttpOnly", "SameSite=strict", "Path=/console"))
        home = browser.get("/console")
        assert home.status_code == 200 and 'data-tenant>default<' in home.text

        token = browser.cookies["pm_console"]
        api = httpx.get(f"{srv.url}/v1/tasks", cookies={"pm_console": token})
        assert api.status_code == 401  # the cookie is the console's only

        csrf = home.text.split('name="csrf" value="')[1].split('"')[0]
        assert browser.post("/console/logout", data={"csrf": "forged"}).status_code == 403
        out = browser.post("/console/logout", data={"csrf": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/console/login"
        # The session is gone on the server, not only the cookie in this browser.
        assert httpx.get(f"{srv.url}/console", cookies={"pm_console": token}).headers["location"] == "/console/login"


def test_a_change_from_another_site_is_refused(srv: Server) -> None:
    for headers in ({"Origin": "https://evil.example"}, {}, {"Origin": "null"}, {"Referer": "https://evil.example/page"}):
        with httpx.Client(base_url=srv.url, headers=headers) as other:
            refused = other.post("/console/login", data={"api_key": KEY})
            assert refused.status_code == 403 and "set-cookie" not in refused.headers, headers
    with httpx.Client(base_url=srv.url, headers={"Referer": f"{srv.url}/console/login"}) as own:
        assert own.post("/console/login", data={"api_key": KEY}).status_code == 303  # a Referer of ours will do


def test_revoking_the_key_ends_its_sessions(srv: Server) -> None:
    out = srv.cli("keys", "create", "--tenant", "brand").stdout.split()
    key_id, key = out[1], out[-1]
    with _browser(srv) as browser:
        assert _sign_in(browser, key).status_code == 303
        assert 'data-tenant>brand<' in browser.get("/console").text
        srv.cli("keys", "revoke", key_id)
        assert browser.get("/console").headers["location"] == "/console/login"


def test_the_stylesheet_is_served_from_the_console_itself(srv: Server) -> None:
    css = httpx.get(f"{srv.url}/console/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_behind_a_tls_proxy_the_public_origin_signs_in_and_the_cookie_is_secure(tmp_path_factory: pytest.TempPathFactory) -> None:
    proxied = Server(tmp_path_factory.mktemp("proxied"), KEY, workers=0, public_url="https://img.example.com").start()
    try:
        with httpx.Client(base_url=proxied.url, headers={"Origin": "https://img.example.com"}) as browser:
            signed = _sign_in(browser, KEY)
            assert signed.status_code == 303 and "Secure" in signed.headers["set-cookie"]
    finally:
        proxied.stop()


def _csrf(page: str) -> str:
    return page.split('<meta name="csrf" content="')[1].split('"')[0]


def test_the_console_reaches_the_api_through_its_session_and_only_with_the_csrf_token(srv: Server) -> None:
    out = srv.cli("keys", "create", "--tenant", "studio").stdout.split()
    key = out[-1]
    with _browser(srv) as browser:
        assert browser.get("/console/api/v1/tasks").status_code == 401  # no session
        _sign_in(browser, key)
        csrf = _csrf(browser.get("/console").text)
        listed = browser.get("/console/api/v1/tasks")
        assert listed.status_code == 200 and listed.json()["data"] == []

        body = {"prompt": "a quiet harbour --seed 5"}
        assert browser.post("/console/api/v1/midjourney/generations/imagine", json=body).status_code == 403
        forged = browser.post("/console/api/v1/midjourney/generations/imagine", json=body, headers={"X-CSRF-Token": "forged"})
        assert forged.status_code == 403
        with httpx.Client(base_url=srv.url, cookies=browser.cookies, headers={"Origin": "https://evil.example"}) as other:
            refused = other.post("/console/api/v1/midjourney/generations/imagine", json=body, headers={"X-CSRF-Token": csrf})
            assert refused.status_code == 403
        made = browser.post("/console/api/v1/midjourney/generations/imagine", json=body, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 200, made.text
        task_id = made.json()["data"][0]["task_id"]

        # The task is the key's tenant's: the API sees it under that key, another tenant does not.
        assert browser.get(f"/console/api/v1/midjourney/{task_id}").json()["prompt"] == body["prompt"]
        assert httpx.get(f"{srv.url}/v1/midjourney/{task_id}", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        default_tenant = httpx.get(f"{srv.url}/v1/tasks", headers={"Authorization": f"Bearer {KEY}"}).json()["data"]
        assert all(t["task_id"] != task_id for t in default_tenant)

        # Admin routes stay an admin key's; only /v1 is bridged.
        assert browser.get("/console/api/v1/admin/reviews").status_code == 403
        assert browser.get("/console/api/mj/task/list").status_code == 404
        assert browser.get("/console/review").status_code == 403


def test_a_tenant_cannot_reach_another_tenants_tasks_through_the_console(srv: Server) -> None:
    keys = {t: srv.cli("keys", "create", "--tenant", t).stdout.split()[-1] for t in ("tenant-a", "tenant-b")}
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {keys['tenant-b']}"}) as b:
        theirs = b.post("/v1/midjourney/generations/imagine", json={"prompt": "b's own work"}).json()["data"][0]["task_id"]
    with _browser(srv) as browser:
        _sign_in(browser, keys["tenant-a"])
        assert browser.get(f"/console/api/v1/midjourney/{theirs}").status_code == 404
        assert all(t["task_id"] != theirs for t in browser.get("/console/api/v1/tasks").json()["data"])
        csrf = _csrf(browser.get("/console").text)
        assert browser.post(f"/console/api/v1/midjourney/{theirs}/cancel", headers={"X-CSRF-Token": csrf}).status_code == 404


def test_the_bridge_keeps_encoded_paths_and_its_redirects_inside(srv: Server) -> None:
    with _browser(srv) as browser:
        _sign_in(browser, KEY)
        # An encoded slash stays one segment: an unknown task, not another route.
        odd = browser.get("/console/api/v1/midjourney/a%2Fb")
        assert odd.status_code == 404 and odd.json()["code"] == 3
        # Dot segments are not resolved into other routes (sent raw, as a client may).
        raw = httpx.Request("GET", f"{srv.url}/console/api/v1/../metrics", cookies=browser.cookies)
        raw.url = raw.url.copy_with(raw_path=b"/console/api/v1/../metrics")
        with httpx.Client() as plain:
            assert plain.send(raw).status_code == 404
        # A trailing slash redirect points back into the console's API, not to /v1.
        slash = browser.get("/console/api/v1/tasks/")
        assert slash.is_redirect and slash.headers["location"] == "/console/api/v1/tasks", slash


def test_a_tenant_event_stream_ends_when_its_key_is_revoked(srv: Server) -> None:
    out = srv.cli("keys", "create", "--tenant", "streamer").stdout.split()
    key_id, key = out[1], out[-1]
    with _browser(srv) as browser:
        _sign_in(browser, key)
        with browser.stream("GET", "/console/api/v1/tasks/events", timeout=30) as console, \
                httpx.stream("GET", f"{srv.url}/v1/tasks/events", headers={"Authorization": f"Bearer {key}"}, timeout=30) as api:
            assert console.status_code == 200 and api.status_code == 200
            srv.cli("keys", "revoke", key_id)
            # Both end at their next refresh (10 s apart while nothing waits), not never.
            assert b"".join(console.iter_bytes()) == b"" and b"".join(api.iter_bytes()) == b""


def test_the_consoles_own_files_carry_its_policy(srv: Server) -> None:
    script = httpx.get(f"{srv.url}/console/static/js/lib.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert script.headers["content-security-policy"].startswith("default-src 'self'") and script.headers["x-content-type-options"] == "nosniff"
