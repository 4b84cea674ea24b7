"""The SSRF guard, against real HTTP servers on loopback. Loopback is forbidden like any private
address, so tests that must get through allow-list 127.0.0.2 (an address Linux answers on, that
no other test uses) the way an operator allow-lists an internal image store."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest

from pixelmill.media.fetch import FetchPolicy, FetchRefused, SafeFetcher, system_resolver, why_forbidden
from tests.imageserver import ImageServer, body, endless, png_bytes, redirect

ALLOWED_HOST = "127.0.0.2"
PNG = png_bytes()


@pytest.fixture
def fetcher() -> Iterator[SafeFetcher]:
    f = SafeFetcher(FetchPolicy(allow=(f"{ALLOWED_HOST}/32",), timeout_seconds=5))
    yield f
    f.close()


@pytest.fixture
def allowed() -> Iterator[ImageServer]:
    with ImageServer({"/a.png": body(PNG)}, host=ALLOWED_HOST) as srv:
        yield srv


def refused(fetcher: SafeFetcher, url: str) -> str:
    with pytest.raises(FetchRefused) as err:
        fetcher.fetch(url)
    return err.value.reason


def test_an_allowed_host_is_fetched(fetcher: SafeFetcher, allowed: ImageServer) -> None:
    assert fetcher.fetch(allowed.url("/a.png")) == PNG


def test_a_redirect_to_loopback_is_refused(fetcher: SafeFetcher, allowed: ImageServer) -> None:
    with ImageServer({"/secret.png": body(PNG)}) as inside:  # on 127.0.0.1: not allowed
        allowed.routes["/jump"] = redirect(inside.url("/secret.png"))
        assert refused(fetcher, allowed.url("/jump")) == "127.0.0.1 is a loopback address; only public hosts are fetched"
        assert inside.hits == []


def test_a_relative_redirect_on_an_allowed_host_is_followed(fetcher: SafeFetcher, allowed: ImageServer) -> None:
    allowed.routes["/old"] = redirect("/a.png", status=301)
    assert fetcher.fetch(allowed.url("/old")) == PNG


def test_a_redirect_loop_ends(fetcher: SafeFetcher, allowed: ImageServer) -> None:
    allowed.routes["/loop"] = redirect("/loop")
    assert refused(fetcher, allowed.url("/loop")) == "more than 5 redirects"


def test_a_host_name_resolving_to_a_private_address_is_refused(fetcher: SafeFetcher) -> None:
    with ImageServer({"/a.png": body(PNG)}) as inside:
        reason = refused(fetcher, inside.url("/a.png", host="localhost"))
        assert reason == "localhost resolves to 127.0.0.1, a loopback address; only public hosts are fetched"
        assert inside.hits == []


def test_an_oversize_body_without_content_length_is_cut_off_while_streaming(fetcher: SafeFetcher, allowed: ImageServer) -> None:
    allowed.routes["/huge"] = endless(total=64 * 1024 * 1024)
    assert refused(fetcher, allowed.url("/huge")) == "is larger than 12,582,912 bytes"


def test_an_oversize_content_length_is_refused_before_reading(fetcher: SafeFetcher, allowed: ImageServer) -> None:
    allowed.routes["/big"] = body(b"\x00" * (13 * 1024 * 1024))
    assert refused(fetcher, allowed.url("/big")) == "is larger than 12,582,912 bytes (Content-Length 13,631,488)"


def test_an_error_status_is_refused(fetcher: SafeFetcher, allowed: ImageServer) -> None:
    assert refused(fetcher, allowed.url("/missing.png")) == "answered HTTP 404"


def test_dns_rebinding_cannot_swap_the_checked_address(allowed: ImageServer) -> None:
    """The first answer passes the check; a second lookup would say 127.0.0.1. The fetch must go
    to the address it checked, asking DNS once per hop."""
    answers = iter([[ALLOWED_HOST], ["127.0.0.1"]])
    asked: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return next(answers)

    f = SafeFetcher(FetchPolicy(allow=(f"{ALLOWED_HOST}/32",)), resolver=rebinding)
    try:
        assert f.fetch(f"http://images.example:{allowed.port}/a.png") == PNG
    finally:
        f.close()
    assert asked == ["images.example"]
    assert allowed.hits == ["/a.png"]


def test_the_host_header_names_the_url_host_not_the_pinned_address(allowed: ImageServer) -> None:
    seen: list[str] = []

    def echo(h):  # type: ignore[no-untyped-def]
        seen.append(h.headers["Host"])
        body(PNG)(h)

    allowed.routes["/echo.png"] = echo
    f = SafeFetcher(FetchPolicy(allow=("images.example",)), resolver=lambda host, port: [ALLOWED_HOST])
    try:
        f.fetch(f"http://images.example:{allowed.port}/echo.png")
    finally:
        f.close()
    assert seen == [f"images.example:{allowed.port}"]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "127.0.0.1 is a loopback address"),
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://0x7f000001/", "0x7f000001 resolves to 127.0.0.1, a loopback address"),
        ("http://2130706433/", "2130706433 resolves to 127.0.0.1, a loopback address"),
        ("http://0177.0.0.1/", "is not a valid URL (Invalid IPv4 address: '0177.0.0.1')"),
        ("http://127.1/", "127.1 resolves to 127.0.0.1, a loopback address"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1 resolves to ::ffff:7f00:1, a loopback address (embedded in IPv6 ::ffff:7f00:1)"),
        ("http://[::ffff:a9fe:a9fe]/", "::ffff:a9fe:a9fe is a cloud metadata address (embedded in IPv6 ::ffff:a9fe:a9fe)"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254 is a cloud metadata address"),
        ("http://100.100.100.200/", "100.100.100.200 is a cloud metadata address"),
        ("http://metadata.google.internal/", "metadata.google.internal is a cloud metadata host"),
        ("http://10.1.2.3/", "10.1.2.3 is a private address"),
        ("http://172.16.0.1/", "172.16.0.1 is a private address"),
        ("http://192.168.1.1/", "192.168.1.1 is a private address"),
        ("http://100.64.0.1/", "100.64.0.1 is not a public address"),
        ("http://169.254.1.1/", "169.254.1.1 is a link-local address"),
        ("http://[fe80::1]/", "fe80::1 is a link-local address"),
        ("http://[fc00::1]/", "fc00::1 is a private address"),
        ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
        ("http://[ff02::1]/", "ff02::1 is a multicast address"),
        ("http://0.0.0.0/", "0.0.0.0 is an unspecified address"),
        ("http://[::]/", ":: is an unspecified address"),
        ("http://240.0.0.1/", "240.0.0.1 is a private address"),
        ("http://[2002:7f00:1::]/", "2002:7f00:1:: is a loopback address (embedded in IPv6 2002:7f00:1::)"),
        ("http://[64:ff9b::a00:1]/", "64:ff9b::a00:1 is a private address (embedded in IPv6 64:ff9b::a00:1)"),
    ],
)
def test_non_public_addresses_in_every_spelling_are_refused(fetcher: SafeFetcher, url: str, reason: str) -> None:
    public_only = "address" in reason and "valid URL" not in reason
    assert refused(fetcher, url) == (f"{reason}; only public hosts are fetched" if public_only else reason)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/a.png", "scheme ftp is not http(s)"),
        ("http://user:pw@example.com/a.png", "URLs with user names or passwords are not accepted"),
        ("http://nowhere.invalid/a.png", "host nowhere.invalid does not resolve"),
    ],
)
def test_other_refusals(fetcher: SafeFetcher, url: str, reason: str) -> None:
    assert refused(fetcher, url).startswith(reason)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e"])
def test_public_addresses_pass(address: str) -> None:
    assert why_forbidden(ipaddress.ip_address(address)) is None


def test_the_system_resolver_answers_numeric_forms() -> None:
    assert system_resolver("0x7f000001", 80) == ["127.0.0.1"]
