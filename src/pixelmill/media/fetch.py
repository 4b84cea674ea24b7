"""Fetching user-supplied image URLs without becoming a proxy into the private network (SSRF).

For every hop (the URL and each redirect):

1. Only ``http``/``https``, no user info, no cloud-metadata host names.
2. Resolve the host once and refuse it if any of its addresses is not public: loopback, private,
   shared (CGNAT), link-local (cloud metadata lives there), multicast, reserved, unspecified; IPv6
   forms that embed IPv4 (mapped ``::ffff:a.b.c.d``, 6to4, Teredo, NAT64) are judged by the IPv4
   address inside. Numeric host spellings (``2130706433``, ``0x7f.1``, ``127.1``) resolve to the
   address they mean, so they are judged by it too.
3. Connect to the checked address itself (the URL's host is sent as ``Host`` and as TLS SNI, and
   the certificate is verified against it), so a second DNS answer cannot swap the target after
   the check (DNS rebinding). Connections are never reused for another host.
4. Redirects are followed by hand, each new URL checked from step 1, at most ``max_redirects``.
5. The body is counted while it streams and cut off past ``max_bytes``; a ``Content-Length`` over
   the limit is refused before reading. A total deadline bounds slow servers.

Operators who serve images from their own private network list those hosts or networks in
``allow`` (``images.internal``, ``10.20.0.0/16``).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urljoin

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: host, port → addresses, as strings. The default asks the system resolver.
Resolver = Callable[[str, int], list[str]]

_METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data"})
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class FetchRefused(Exception):
    """The URL was not fetched; ``reason`` says why, in words for the caller. ``retryable``: the
    same fetch may work later (a timeout, a dropped connection, HTTP 429 or 5xx), as opposed to a
    URL that is refused or answers what it will answer again."""

    def __init__(self, reason: str, *, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchRefused(f"host {host} does not resolve ({exc})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def why_forbidden(address: IPAddress) -> str | None:
    """Why an address must not be fetched from, or None when it is a public unicast address."""
    if address in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and address.teredo is not None:
            inner = address.teredo[1]
        if inner is None and address in _NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None:
            reason = why_forbidden(inner)
            return f"{reason} (embedded in IPv6 {address})" if reason else None
    for test, name in (
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(address, test):
            return name
    if not address.is_global:
        return "not a public address"
    return None


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int = 12 * 1024 * 1024
    max_redirects: int = 5
    #: Whole fetch, all hops included.
    timeout_seconds: float = 20.0
    #: Host names (exact, any case) and networks that may be fetched although not public.
    allow: tuple[str, ...] = ()
    allowed_hosts: frozenset[str] = field(init=False)
    allowed_networks: tuple[Network, ...] = field(init=False)

    def __post_init__(self) -> None:
        hosts, networks = set(), []
        for entry in self.allow:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        object.__setattr__(self, "allowed_hosts", frozenset(hosts))
        object.__setattr__(self, "allowed_networks", tuple(networks))

    def check_addresses(self, host: str, addresses: Iterable[str]) -> None:
        if host.lower().rstrip(".") in self.allowed_hosts:
            return
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            if any(address in net for net in self.allowed_networks):
                continue
            reason = why_forbidden(address)
            if reason:
                shown = f"{host} is" if host == str(address) else f"{host} resolves to {address},"
                raise FetchRefused(f"{shown} {reason}; only public hosts are fetched")


#: How much of a POST's answer is read before the connection is dropped (webhook receivers).
ANSWER_BYTES = 64 * 1024


class SafeFetcher:
    def __init__(self, policy: FetchPolicy, resolver: Resolver = system_resolver) -> None:
        self.policy = policy
        self._resolve = resolver
        self._http = httpx.Client(
            trust_env=False,  # an environment proxy would make its own DNS lookup: no pinning
            follow_redirects=False,
            timeout=httpx.Timeout(policy.timeout_seconds, connect=min(5.0, policy.timeout_seconds)),
            # A pooled TLS connection was verified for one host name; never lend it to another.
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"User-Agent": "pixelmill-fetch/1", "Accept": "image/png, image/jpeg, image/webp",
                     "Accept-Encoding": "identity"},
        )

    def close(self) -> None:
        self._http.close()

    def fetch(self, url: str) -> bytes:
        deadline = time.monotonic() + self.policy.timeout_seconds
        for _ in range(self.policy.max_redirects + 1):
            request = self._pinned_request(url)
            try:
                response = self._http.send(request, stream=True)
            except httpx.TimeoutException:
                raise FetchRefused("timed out", retryable=True) from None
            except httpx.HTTPError as exc:
                raise FetchRefused(f"could not connect ({type(exc).__name__}: {exc})", retryable=True) from None
            try:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code != 200:
                    status = response.status_code
                    raise FetchRefused(f"answered HTTP {status}", retryable=status == 429 or status >= 500)
                return self._read(response, deadline)
            finally:
                response.close()
        raise FetchRefused(f"more than {self.policy.max_redirects} redirects")

    def check_url(self, url: str) -> None:
        """Raise ``FetchRefused`` unless ``url`` may be reached (the checks of a request, no I/O
        beyond DNS): for targets stored now and called later, such as webhooks."""
        self._pinned_request(url)

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        """POST to ``url`` under the same address rules, pinned to the checked address, and return
        the status. Redirects are not followed: a webhook receiver answers where it was
        configured. At most ``ANSWER_BYTES`` of the answer are read, within ``timeout`` for the
        whole exchange, then the connection is dropped: a receiver that answers slowly or at
        length costs one sender slot for ``timeout`` at most, and no memory."""
        deadline = time.monotonic() + timeout
        request = self._pinned_request(url, method="POST", content=body, headers=headers)
        request.extensions = {**request.extensions, "timeout": httpx.Timeout(timeout).as_dict()}
        try:
            response = self._http.send(request, stream=True)
        except httpx.TimeoutException:
            raise FetchRefused("timed out", retryable=True) from None
        except httpx.HTTPError as exc:
            raise FetchRefused(f"could not connect ({type(exc).__name__}: {exc})", retryable=True) from None
        try:
            read = 0
            for chunk in response.iter_raw():
                read += len(chunk)
                if read >= ANSWER_BYTES or time.monotonic() > deadline:
                    break  # the status is all a sender needs
        except httpx.HTTPError:
            pass  # the status arrived; a broken body does not change it
        finally:
            response.close()
        return response.status_code

    def _pinned_request(
        self, url: str, *, method: str = "GET", content: bytes | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Request:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise FetchRefused(f"is not a valid URL ({exc})") from None
        if parsed.scheme not in ("http", "https"):
            raise FetchRefused(f"scheme {parsed.scheme or '(none)'} is not http(s)")
        if parsed.userinfo:
            raise FetchRefused("URLs with user names or passwords are not accepted")
        host = parsed.host
        if not host:
            raise FetchRefused("has no host")
        if host.lower().rstrip(".") in _METADATA_HOSTS and host.lower() not in self.policy.allowed_hosts:
            raise FetchRefused(f"{host} is a cloud metadata host")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        addresses = self._resolve(host, port)
        if not addresses:
            raise FetchRefused(f"host {host} does not resolve")
        self.policy.check_addresses(host, addresses)
        pinned = addresses[0].split("%", 1)[0]
        extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
        return self._http.build_request(
            method,
            parsed.copy_with(host=pinned),
            content=content,
            headers={**(headers or {}), "Host": parsed.netloc.decode("ascii")},
            extensions=extensions,
        )

    def _read(self, response: httpx.Response, deadline: float) -> bytes:
        limit = self.policy.max_bytes
        too_big = f"is larger than {limit:,} bytes"
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise FetchRefused(f"{too_big} (Content-Length {int(declared):,})")
        chunks, total = [], 0
        try:
            for chunk in response.iter_bytes():
                total += len(chunk)
                if total > limit:
                    raise FetchRefused(too_big)
                if time.monotonic() > deadline:
                    raise FetchRefused("timed out")
                chunks.append(chunk)
        except httpx.TimeoutException:
            raise FetchRefused("timed out") from None
        except httpx.HTTPError as exc:
            raise FetchRefused(f"broke off while downloading ({type(exc).__name__})") from None
        return b"".join(chunks)
