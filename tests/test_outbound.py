"""The SSRF guard: every blocked range refused, checks at connect time, bounded downloads."""

from __future__ import annotations

import http.server
import ipaddress
import threading
import time

import pytest

from app.config import load_settings
from app.errors import BlockedURLError, FetchError, TooLargeError
from app.outbound import Guard, client, fetch, is_blocked_address

BLOCKED = [
    "0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.254",
    "100.100.100.200", "127.0.0.1", "127.1.2.3", "169.254.0.1", "169.254.169.254",
    "172.16.0.1", "172.31.255.255", "192.0.0.1", "192.0.0.192", "192.0.2.10", "192.88.99.1",
    "192.168.0.1", "192.168.255.255", "198.18.0.1", "198.19.255.255", "198.51.100.7",
    "203.0.113.9", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    "::", "::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
    "::127.0.0.1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::a00:1",
    "2002:7f00:1::", "2002:c0a8:101::1", "2001::1", "2001:db8::1", "fc00::1", "fd00:ec2::254",
    "fe80::1", "fec0::1", "ff02::1", "100::1",
]
PUBLIC = ["93.184.215.14", "1.1.1.1", "8.8.8.8", "2606:4700:4700::1111", "2a00:1450:4001::200e",
          "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", BLOCKED)
def test_blocked_addresses(address):
    assert is_blocked_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    assert not is_blocked_address(ipaddress.ip_address(address))


def _literal(address: str) -> str:
    return f"http://[{address}]/x" if ":" in address else f"http://{address}/x"


@pytest.mark.parametrize("url", [_literal(a) for a in BLOCKED[:12]] + [
    "http://localhost/x", "http://localhost.:8080/x", "http://LOCALHOST/x",
    "http://2130706433/x", "http://0x7f000001/x", "http://0177.0.0.1/x", "http://127.1/x",
    "http://[::ffff:7f00:1]/x", "ftp://example.com/x", "file:///etc/passwd", "gopher://x/",
    "http://user:pass@93.184.215.14/x", "http:///x",
    "http://xn--localhost-/a.jpg", "http://xn--/x", "http://1.1.1.1:99999/x",
])
def test_check_url_refuses(url):
    with pytest.raises(BlockedURLError):
        Guard().check_url(url)


def test_https_only_refuses_plain_http():
    with pytest.raises(BlockedURLError, match="https"):
        Guard(https_only=True).check_url("http://93.184.215.14/x")
    Guard(https_only=True).check_url("https://93.184.215.14/x")


def test_allow_lists_and_the_development_switch():
    loopback = load_settings({"allowed_cidrs": ["127.0.0.0/8"]}, environ={})
    Guard.from_settings(loopback).check_url("http://127.0.0.1/x")
    with pytest.raises(BlockedURLError):
        Guard.from_settings(loopback).check_url("http://10.0.0.1/x")
    Guard.from_settings(load_settings({"allowed_hosts": ["localhost"]}, environ={})).check_url(
        "http://localhost/x")
    Guard.from_settings(load_settings({"allow_private_urls": True}, environ={})).check_url(
        "http://10.0.0.1/x")


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}
    seen: list = []

    def do_GET(self):  # noqa: N802 - the stdlib's name
        self.seen.append(dict(self.headers))
        status, headers, body, delay = self.routes.get(self.path, (404, {}, b"", 0))
        time.sleep(delay)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers and body is not None:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A real HTTP server on 127.0.0.1 with per-test routes."""
    handler = type("H", (_Handler,), {"routes": {}, "seen": []})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()


LOOPBACK = Guard(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))


def test_the_client_refuses_loopback_at_connect_time(server):
    server.RequestHandlerClass.routes["/ok"] = (200, {}, b"hello", 0)
    with client(Guard()) as session, pytest.raises(BlockedURLError):
        session.get(server.base + "/ok")
    with client(LOOPBACK) as session:
        assert session.get(server.base + "/ok").text == "hello"


def test_a_name_that_resolves_to_loopback_is_refused_when_connecting(server):
    server.RequestHandlerClass.routes["/ok"] = (200, {}, b"hello", 0)
    url = server.base.replace("127.0.0.1", "localhost") + "/ok"
    with client(Guard()) as session, pytest.raises(BlockedURLError):
        session.get(url)


def test_the_client_never_sends_back_a_cookie_it_was_given(server):
    # One pooled client serves every key's deliveries: a cookie one endpoint sets must not
    # travel with the next request to that host (another key's endpoint may be there).
    server.RequestHandlerClass.routes["/set"] = (204, {"Set-Cookie": "session=s3cret; Path=/"},
                                                 b"", 0)
    server.RequestHandlerClass.routes["/ok"] = (204, {}, b"", 0)
    with client(LOOPBACK) as session:
        assert session.get(server.base + "/set").status_code == 204
        assert session.get(server.base + "/ok").status_code == 204
        assert not session.cookies
    seen = server.RequestHandlerClass.seen
    assert len(seen) == 2 and not any(name.lower() == "cookie" for name in seen[1])


def test_the_client_never_follows_redirects(server):
    server.RequestHandlerClass.routes["/r"] = (302, {"Location": "/ok"}, b"", 0)
    with client(LOOPBACK) as session:
        assert session.get(server.base + "/r").status_code == 302


def test_fetch_follows_checked_redirects(server):
    routes = server.RequestHandlerClass.routes
    routes["/a"] = (302, {"Location": "/b"}, b"", 0)
    routes["/b"] = (200, {"Content-Type": "image/png"}, b"png!", 0)
    assert fetch(server.base + "/a", LOOPBACK, max_bytes=100, timeout=5, max_redirects=3) == (
        b"png!", "image/png")


def test_a_redirect_to_a_private_address_is_refused(server):
    server.RequestHandlerClass.routes["/a"] = (302, {"Location": "http://10.0.0.1/x"}, b"", 0)
    with pytest.raises(BlockedURLError, match="input.image_url"):
        fetch(server.base + "/a", LOOPBACK, max_bytes=100, timeout=5, max_redirects=3)


def test_too_many_redirects_fail(server):
    server.RequestHandlerClass.routes["/loop"] = (302, {"Location": "/loop"}, b"", 0)
    with pytest.raises(FetchError, match="redirects"):
        fetch(server.base + "/loop", LOOPBACK, max_bytes=100, timeout=5, max_redirects=3)


def test_bodies_over_the_limit_are_refused_with_or_without_a_length(server):
    routes = server.RequestHandlerClass.routes
    routes["/declared"] = (200, {}, b"x" * 2000, 0)
    with pytest.raises(TooLargeError):
        fetch(server.base + "/declared", LOOPBACK, max_bytes=1000, timeout=5, max_redirects=0)


def test_a_stream_past_the_limit_is_cut_off(server):
    class Streaming(_Handler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"y" * 1000)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Streaming)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with pytest.raises(TooLargeError):
            fetch(f"http://127.0.0.1:{srv.server_address[1]}/", LOOPBACK, max_bytes=5000,
                  timeout=5, max_redirects=0)
    finally:
        srv.shutdown()


def test_error_statuses_and_slow_servers_fail_with_a_reason(server):
    routes = server.RequestHandlerClass.routes
    routes["/gone"] = (404, {}, b"", 0)
    routes["/slow"] = (200, {}, b"late", 3)
    with pytest.raises(FetchError, match="404"):
        fetch(server.base + "/gone", LOOPBACK, max_bytes=100, timeout=5, max_redirects=0)
    with pytest.raises(FetchError, match="longer than allowed"):
        fetch(server.base + "/slow", LOOPBACK, max_bytes=100, timeout=0.5, max_redirects=0)


def test_a_server_trickling_its_headers_is_cut_at_the_download_limit():
    import socket

    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))

    def trickle():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        # One byte every 0.1 s: each arrives well within the read timeout, for up to 20 s.
        for _ in range(200):
            if stop.wait(0.1):
                break
            try:
                conn.sendall(b"a")
            except OSError:
                break
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    try:
        with pytest.raises(FetchError, match="longer than allowed"):
            fetch(f"http://127.0.0.1:{listener.getsockname()[1]}/x", LOOPBACK, max_bytes=100,
                  timeout=1, max_redirects=0)
    finally:
        stop.set()
        listener.close()


def test_unresolvable_hosts_are_refused():
    with pytest.raises(BlockedURLError, match="resolve"):
        Guard().check_url("http://no-such-host.invalid/x")


def test_requests_carry_our_user_agent(server):
    seen = {}

    class Echo(_Handler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            seen["ua"] = self.headers["User-Agent"]
            seen["host"] = self.headers["Host"]
            self.send_response(204)
            self.end_headers()

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        port = srv.server_address[1]
        with client(Guard(allowed_hosts=("localhost",))) as session:
            session.get(f"http://localhost:{port}/")
        assert seen["ua"].startswith("posehook/") and seen["host"] == f"localhost:{port}"
    finally:
        srv.shutdown()


def _tls_files(directory) -> tuple[str, str, str]:
    """A CA and a certificate it signed for the name 'localhost' only; return their paths."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test CA")).issuer_name(name("test CA"))
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = [str(directory / n) for n in ("ca.pem", "cert.pem", "key.pem")]
    for path, data in zip(paths, (ca.public_bytes(serialization.Encoding.PEM),
                                  cert.public_bytes(serialization.Encoding.PEM),
                                  key.private_bytes(serialization.Encoding.PEM,
                                                    serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption())), strict=True):
        with open(path, "wb") as fh:
            fh.write(data)
    return paths[0], paths[1], paths[2]


@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS server on 127.0.0.1 with a certificate for 'localhost'; it records SNI names."""
    import ssl

    ca, cert, key = _tls_files(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names: list[str | None] = []
    context.sni_callback = lambda sock, server_name, ctx: names.append(server_name)
    import socket

    handler = type("H", (_Handler,), {"routes": {"/": (200, {}, b"tls ok", 0)}})
    # Listen where 'localhost' resolves first here (127.0.0.1 or ::1): that is where we connect.
    family, *_, address = socket.getaddrinfo("localhost", 0, type=socket.SOCK_STREAM)[0]
    server_class = type("S", (http.server.ThreadingHTTPServer,), {"address_family": family})
    srv = server_class((address[0], 0), handler)
    srv.address = address[0]
    srv.socket = context.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.port, srv.names = srv.server_address[1], names
    srv.trust = ssl.create_default_context(cafile=ca)
    yield srv
    srv.shutdown()


def test_tls_goes_to_the_checked_address_but_verifies_the_name(tls_server):
    import httpx

    from app.outbound import GuardedTransport

    loopback = Guard(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),
                                       ipaddress.ip_network("::1/128")))
    transport = GuardedTransport(loopback, verify=tls_server.trust)
    with httpx.Client(transport=transport) as http:
        # 'localhost' is resolved and checked by the guard, the connection goes to that
        # address, and TLS still checks the certificate against the name (sent as SNI).
        answer = http.get(f"https://localhost:{tls_server.port}/")
        assert (answer.status_code, answer.content) == (200, b"tls ok")
        assert tls_server.names[-1] == "localhost"
        # The same server by address: its certificate does not name the address, so it fails.
        literal = f"[{tls_server.address}]" if ":" in tls_server.address else tls_server.address
        with pytest.raises(httpx.ConnectError, match="(?i)certificate|hostname|IP address"):
            http.get(f"https://{literal}:{tls_server.port}/")
        # One pool per name: the connection verified for 'localhost' is not reused by address.
        assert sorted(transport._pools) == sorted(["localhost", tls_server.address])
    assert transport._pools == {}  # closed with the client


def test_a_name_the_guard_refuses_never_reaches_tls(tls_server):
    import httpx

    from app.outbound import GuardedTransport

    with httpx.Client(transport=GuardedTransport(Guard(), verify=tls_server.trust)) as http:
        with pytest.raises(BlockedURLError):
            http.get(f"https://localhost:{tls_server.port}/")
    assert tls_server.names == []
