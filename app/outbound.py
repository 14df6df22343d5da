"""The one way posehook talks to URLs it was given: an SSRF-guarded httpx client.

Every host is resolved once, every address it resolves to is checked, and the
connection is made to the address that was checked (the URL is rewritten to the IP,
with Host and TLS SNI kept as the name), so DNS rebinding has no window. Redirects
are never followed by the client; ``fetch`` follows a few, checking each hop.
"""

from __future__ import annotations

import http.cookiejar
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

from app.config import Settings
from app.errors import BlockedURLError, FetchError, TooLargeError

USER_AGENT = "posehook/0.1 (+https://github.com/posehook/posehook)"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ranges Python's is_global does not already refuse, or refuses only in part.
_EXTRA_BLOCKED = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.88.99.0/24", "198.18.0.0/15",
    "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
    "::/96", "100::/64", "2001::/32", "2001:db8::/32", "fc00::/7", "fe80::/10", "fec0::/10",
    "ff00::/8",
)]
# IPv6 prefixes that carry an IPv4 address in their last 32 bits.
_NAT64 = [ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48")]


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """Return the IPv4 address an IPv6 form wraps (mapped, 6to4, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_blocked_address(ip: IPAddress) -> bool:
    """Return True for any address we never connect to unless allow-listed."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_blocked_address(embedded)
        if ip.scope_id:
            return True
    if any(ip.version == net.version and ip in net for net in _EXTRA_BLOCKED):
        return True
    return not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_link_local


@dataclass(frozen=True)
class Guard:
    """Which outbound URLs are allowed: public addresses, plus allow-listed ones."""

    allow_private: bool = False
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    https_only: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Guard:
        """Build the guard from ALLOW_PRIVATE_URLS, ALLOWED_CIDRS/HOSTS and HTTPS_ONLY."""
        return cls(allow_private=settings.allow_private_urls,
                   allowed_networks=tuple(ipaddress.ip_network(c, strict=False)
                                          for c in settings.allowed_cidrs),
                   allowed_hosts=tuple(h.lower() for h in settings.allowed_hosts),
                   https_only=settings.https_only)

    def _allowed(self, ip: IPAddress, host: str) -> bool:
        if self.allow_private or host in self.allowed_hosts:
            return True
        if any(ip.version == net.version and ip in net for net in self.allowed_networks):
            return True
        return not is_blocked_address(ip)

    def resolve(self, url: str | httpx.URL, field: str = "url") -> tuple[httpx.URL, str]:
        """Check a URL and return it with its host replaced by the checked IP, and the name."""
        try:
            parsed = httpx.URL(str(url)) if not isinstance(url, httpx.URL) else url
        except httpx.InvalidURL as exc:
            raise BlockedURLError(f"{field} is not a valid URL", field=field) from exc
        schemes = ("https",) if self.https_only else ("http", "https")
        if parsed.scheme not in schemes:
            raise BlockedURLError(f"{field} must use {' or '.join(schemes)}", field=field)
        if parsed.userinfo:
            raise BlockedURLError(f"{field} must not carry a user name or password", field=field)
        try:
            host = parsed.host.lower().rstrip(".")
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
        except (UnicodeError, ValueError, httpx.InvalidURL) as exc:  # bad IDNA, bad port
            raise BlockedURLError(f"{field} has a host or port that is not valid",
                                  field=field) from exc
        if not host:
            raise BlockedURLError(f"{field} has no host", field=field)
        if not 0 < port < 65536:
            raise BlockedURLError(f"{field} has a port out of range (1-65535)", field=field)
        addresses = _resolve(host, port, field)
        for ip in addresses:
            if not self._allowed(ip, host):
                raise BlockedURLError(
                    f"{field} points at {host}, which resolves to a private, loopback, "
                    "link-local or reserved address; use a public URL", field=field)
        return parsed.copy_with(host=str(addresses[0])), host

    def check_url(self, url: str, field: str = "url") -> None:
        """Raise BlockedURLError unless ``url`` is one we would connect to."""
        self.resolve(url, field)


def _resolve(host: str, port: int, field: str) -> list[IPAddress]:
    """Return every address of ``host`` (an IP literal resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise BlockedURLError(f"{field}: the host {host!r} does not resolve", field=field) from exc
    found: list[IPAddress] = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]
        ip = ipaddress.ip_address(text)
        if ip not in found:
            found.append(ip)
    if not found:
        raise BlockedURLError(f"{field}: the host {host!r} has no address", field=field)
    return found


MAX_POOLS = 64
"""Connection pools one transport keeps (one per host name)."""


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport that connects only to addresses the guard allows, at send time.

    The request goes to the checked address, while TLS (SNI and certificate check) and the
    Host header keep the name. Pools are kept per name, so a connection opened and verified
    for one name on an address is never reused for another name on the same address.
    """

    def __init__(self, guard: Guard, **options: Any) -> None:
        self.guard = guard
        self._options = options
        self._pools: dict[str, httpx.HTTPTransport] = {}
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Resolve and check the host now, then send to the checked address."""
        pinned, host = self.guard.resolve(request.url)
        request.url = pinned
        request.headers["Host"] = request.headers.get("Host") or host
        if pinned.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        retired = None
        with self._lock:
            pool = self._pools.get(host)
            if pool is None:
                if len(self._pools) >= MAX_POOLS:  # the oldest name gives way
                    retired = self._pools.pop(next(iter(self._pools)))
                pool = self._pools[host] = httpx.HTTPTransport(**self._options)
        if retired is not None:
            retired.close()
        return pool.handle_request(request)

    def close(self) -> None:
        """Close pooled connections."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


class _NoCookies(http.cookiejar.CookieJar):
    """A jar that keeps nothing: we are no browser, and one pooled client serves every key's
    deliveries, so a cookie one endpoint sets must never go out with the next request to its
    host (also less work per answer than a jar that parses and then refuses them)."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        """Keep no cookie an answer sets."""

    def add_cookie_header(self, request: Any) -> None:
        """Add none: the jar is always empty."""


def client(guard: Guard, *, timeout: float = 15, connect_timeout: float = 5) -> httpx.Client:
    """Return a pooled client that never follows redirects, connects only where allowed and
    keeps no cookies."""
    return httpx.Client(transport=GuardedTransport(guard), follow_redirects=False,
                        timeout=httpx.Timeout(timeout, connect=connect_timeout),
                        headers={"User-Agent": USER_AGENT}, trust_env=False,
                        cookies=_NoCookies())


def read_limited(response: httpx.Response, max_bytes: int, deadline: float,
                 field: str) -> bytes:
    """Read a streamed body, refusing more than ``max_bytes`` or past ``deadline``."""
    declared = response.headers.get("Content-Length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise TooLargeError(f"{field}: the file is larger than {max_bytes} bytes", field=field)
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise TooLargeError(f"{field}: the file is larger than {max_bytes} bytes",
                                field=field)
        if time.monotonic() > deadline:
            raise FetchError(f"{field}: the download took longer than allowed", field=field)
        chunks.append(chunk)
    return b"".join(chunks)


class _Deadline:
    """Cut a download's connections when its time is up, slow headers included.

    Read timeouts reset with every byte, so a server trickling its headers could hold a
    worker far past the limit; at the deadline the sockets are shut down instead.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._expire)
        self._timer.daemon = True

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: keep the socket of every connection this download opens."""
        if event != "connection.connect_tcp.complete" or info.get("return_value") is None:
            return
        sock = info["return_value"].get_extra_info("socket")
        if sock is not None:
            with self._lock:
                self._sockets.append(sock)
            if self.expired:
                self._expire()

    def _expire(self) -> None:
        self.expired = True
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()


def fetch(url: str, guard: Guard, *, max_bytes: int, timeout: float, max_redirects: int,
          field: str = "input.image_url") -> tuple[bytes, str]:
    """GET ``url`` (following at most ``max_redirects``, each checked); return (body, type)."""
    deadline = time.monotonic() + timeout
    current = url
    with client(guard, timeout=timeout, connect_timeout=min(5.0, timeout)) as http, \
            _Deadline(deadline) as watch:
        for _ in range(max_redirects + 1):
            guard.check_url(current, field)
            try:
                # identity: a compressed body could expand far past max_bytes in one chunk.
                with http.stream("GET", current, headers={"Accept-Encoding": "identity"},
                                 extensions={"trace": watch.trace}) as response:
                    if response.is_redirect:
                        location = response.headers.get("Location", "")
                        current = urljoin(current, location)
                        continue
                    if not response.is_success:
                        raise FetchError(f"{field}: the server answered {response.status_code}",
                                         field=field)
                    body = read_limited(response, max_bytes, deadline, field)
                    return body, response.headers.get("Content-Type", "")
            except httpx.HTTPError as exc:
                if watch.expired or isinstance(exc, httpx.TimeoutException):
                    raise FetchError(f"{field}: the download took longer than allowed "
                                     f"({timeout:g} s)", field=field) from exc
                raise FetchError(f"{field}: the download failed ({type(exc).__name__})",
                                 field=field) from exc
    raise FetchError(f"{field}: more than {max_redirects} redirects", field=field)
