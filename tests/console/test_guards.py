"""The console's guards without a server: origins compared as browsers do, the pages' content
security policy naming storage's origin when storage hands out its own URLs, CSRF tokens of any
characters refused rather than failing."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import Request

from pixelmill.auth.keys import Principal
from pixelmill.auth.sessions import Session
from pixelmill.console.guards import HEADERS, page_headers, same_origin
from pixelmill.settings import Settings


def _request(origin: str, url: str = "http://127.0.0.1:8000/console/login") -> Request:
    scheme, rest = url.split("://")
    host, _, path = rest.partition("/")
    name, _, port = host.partition(":")
    scope: dict[str, Any] = {"type": "http", "scheme": scheme, "server": (name, int(port or 80)), "path": "/" + path,
                             "headers": [(b"host", host.encode()), (b"origin", origin.encode())], "query_string": b""}
    return Request(scope)


def _runtime(public_url: str | None = None) -> Any:
    return SimpleNamespace(settings=SimpleNamespace(public_url=public_url))


@pytest.mark.parametrize(("origin", "public", "ok"), [
    ("http://127.0.0.1:8000", None, True),
    ("HTTP://127.0.0.1:8000", None, True),
    ("http://127.0.0.1:8001", None, False),
    ("https://127.0.0.1:8000", None, False),
    ("https://Console.Example.com", "https://console.example.com:443", True),
    ("https://console.example.com:443", "https://console.example.com", True),
    ("https://console.example.com:8443", "https://console.example.com", False),
    ("https://evil.example", "https://console.example.com", False),
    ("http://127.0.0.1:notaport", None, False),
])
def test_origins_compare_as_browsers_do(origin: str, public: str | None, ok: bool) -> None:
    assert same_origin(_request(origin), _runtime(public)) is ok


def test_the_policy_names_storage_only_where_storage_hands_out_its_own_urls() -> None:
    assert page_headers(Settings(storage="local")) == HEADERS
    assert page_headers(Settings(storage="s3", s3_bucket="b", s3_url_mode="pixelmill")) == HEADERS
    public = page_headers(Settings(storage="s3", s3_bucket="b", s3_url_mode="public", s3_public_base_url="https://cdn.example.com/shots/"))
    csp = public["Content-Security-Policy"]
    assert "img-src 'self' https://cdn.example.com data: blob:" in csp and "media-src 'self' https://cdn.example.com;" in csp
    assert "script-src 'self';" in csp  # nothing else widens
    signed = page_headers(Settings(storage="s3", s3_bucket="b", s3_url_mode="presigned", s3_endpoint_url="http://127.0.0.1:9000"))
    assert "img-src 'self' http://127.0.0.1:9000 " in signed["Content-Security-Policy"]
    aws = page_headers(Settings(storage="s3", s3_bucket="b", s3_url_mode="presigned"))
    assert "img-src 'self' https://*.amazonaws.com " in aws["Content-Security-Policy"]


def test_a_csrf_token_of_any_characters_is_a_no() -> None:
    session = Session(Principal(key_id="k", tenant_id="t", is_admin=False), csrf="abc")
    assert session.csrf_ok("abc") and not session.csrf_ok("abd") and not session.csrf_ok(None)
    assert not session.csrf_ok("é\udcff")
