"""Discovery: every answer form the gateway may give, and every way it can fail."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from hatsu_sync import DiscoveryError
from hatsu_sync._discovery import discover, discovery_url, ws_url_from_answer
from hatsu_sync.testing import LocalGateway

# Every wait in these tests scales with this one constant.
T = 5.0
GATEWAY = "https://gateway.vincentrps.xyz"
DISCOVERY = "https://gateway.vincentrps.xyz/available"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests reach loopback directly unless a test sets a proxy itself."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def gw() -> Iterator[LocalGateway]:
    with LocalGateway() as gateway:
        yield gateway


# -- ws_url_from_answer: the accepted forms ------------------------------------------------------


@pytest.mark.parametrize(
    ("gateway", "body", "expected"),
    [
        (GATEWAY, b'{"port": 57}', "wss://gateway.vincentrps.xyz:57"),
        (GATEWAY + "/", b'{"port": 57}', "wss://gateway.vincentrps.xyz:57"),
        ("http://127.0.0.1:8080", b'{"port": 9000}', "ws://127.0.0.1:9000"),
        ("http://[::1]:8080", b'{"port": 9000}', "ws://[::1]:9000"),
        (GATEWAY, b'{"port": "57"}', "wss://gateway.vincentrps.xyz:57"),
        (GATEWAY, b'{"port": " 65535 "}', "wss://gateway.vincentrps.xyz:65535"),
        (GATEWAY, b'{"port": 1, "other": true}', "wss://gateway.vincentrps.xyz:1"),
        (
            GATEWAY,
            b'{"url": "https://gateway-prod-1.vincentrps.xyz"}',
            "wss://gateway-prod-1.vincentrps.xyz",
        ),
        (
            GATEWAY,
            b'{"url": "wss://a.example:8443/ws?v=1", "port": 1}',
            "wss://a.example:8443/ws?v=1",
        ),
        (
            GATEWAY,
            b'"https://gateway-prod-1.vincentrps.xyz"',
            "wss://gateway-prod-1.vincentrps.xyz",
        ),
        (GATEWAY, b"https://gateway-prod-1.vincentrps.xyz", "wss://gateway-prod-1.vincentrps.xyz"),
        (
            GATEWAY,
            b"  https://gateway-prod-1.vincentrps.xyz\r\n",
            "wss://gateway-prod-1.vincentrps.xyz",
        ),
        ("http://127.0.0.1:8080", b"\xef\xbb\xbfhttp://h.example:81", "ws://h.example:81"),
        ("http://127.0.0.1:8080", b"ws://h.example:81/path", "ws://h.example:81/path"),
        (GATEWAY, b"\xef\xbb\xbfhttps://h.example:81", "wss://h.example:81"),
        (GATEWAY, b"WSS://h.example", "wss://h.example"),
    ],
)
def test_accepted_answers(gateway: str, body: bytes, expected: str) -> None:
    """Every answer form the deployed server or its documentation used gives a ws(s) URL."""
    assert ws_url_from_answer(gateway, 200, body) == expected


def test_any_2xx_status_is_accepted() -> None:
    """A 2xx status other than 200 is still an answer."""
    assert ws_url_from_answer(GATEWAY, 203, b'{"port": 57}') == "wss://gateway.vincentrps.xyz:57"


# -- ws_url_from_answer: the rejections ----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "problem"),
    [
        (200, b'{"port": 0}', "out of range"),
        (200, b'{"port": 70000}', "out of range"),
        (200, b'{"port": -1}', "out of range"),
        (200, b'{"port": "70000"}', "out of range"),
        (200, b'{"port": "123456789012345678901234567890"}', "out of range"),
        (200, b'{"port": "abc"}', "must be an integer"),
        (200, b'{"port": "5 7"}', "must be an integer"),
        (200, b'{"port": true}', "must be an integer"),
        (200, b'{"port": 57.0}', "must be an integer"),
        (200, b'{"port": null}', "must be an integer"),
        (200, b"{}", "neither a 'port' nor a 'url'"),
        (200, b'{"host": "x"}', "neither a 'port' nor a 'url'"),
        (200, b'{"url": 57}', "'url' must be a string"),
        (200, b'"ftp://gateway.vincentrps.xyz"', "unsupported scheme 'ftp'"),
        (200, b"ftp://gateway.vincentrps.xyz", "unsupported scheme 'ftp'"),
        (200, b'"gateway.vincentrps.xyz"', "unsupported scheme"),
        (200, b'"https://"', "no host"),
        (200, b'"https://h.example:99999"', "malformed"),
        (200, b"", "empty"),
        (200, b"  \n", "empty"),
        (200, b"[57]", "JSON array"),
        (200, b"57", "JSON number"),
        (200, b"null", "JSON null"),
        (200, b"Service Unavailable", "neither JSON nor a URL"),
        (200, b"\xff\xfe\x00", "not UTF-8"),
        (500, b'{"port": 57}', "HTTP 500"),
        (404, b"Not Found", "HTTP 404"),
        (302, b"", "redirects are not followed"),
        (199, b'{"port": 57}', "HTTP 199"),
    ],
)
def test_rejected_answers(status: int, body: bytes, problem: str) -> None:
    """Anything else is a DiscoveryError naming the URL, the status, the problem and the body."""
    with pytest.raises(DiscoveryError) as caught:
        ws_url_from_answer(GATEWAY, status, body)
    error = caught.value
    message = str(error)
    assert problem in message
    assert DISCOVERY in message
    assert f"HTTP {status}" in message
    assert error.url == DISCOVERY
    assert error.status == status
    if body.strip() and body.isascii():
        assert error.excerpt == body.decode()
        assert body.decode() in message


def test_excerpt_is_short_and_printable() -> None:
    """The error's excerpt is the first 200 characters of the body, control characters masked."""
    body = b"\x00\x1b[31m" + b"A" * 1000
    with pytest.raises(DiscoveryError) as caught:
        ws_url_from_answer(GATEWAY, 502, body)
    excerpt = caught.value.excerpt
    assert excerpt.startswith("??[31mAAA")
    assert excerpt.endswith("...")
    assert len(excerpt) <= 203
    assert excerpt.isprintable()
    assert "A" * 300 not in str(caught.value)


@pytest.mark.parametrize(
    "gateway",
    [
        "ws://gateway.example",
        "ftp://gateway.example",
        "gateway.example",
        "",
        "https://",
        "http://gate way.example",
        "http://gateway.example/x\x00y",
        "http://gateway.example/\u2028x",
    ],
)
def test_gateway_must_be_http(gateway: str) -> None:
    """A gateway base URL that is not http(s) with a host, or that holds spaces or control
    characters (they would reach the request line), is refused before any request."""
    with pytest.raises(DiscoveryError, match="must be an http"):
        discovery_url(gateway)
    with pytest.raises(DiscoveryError, match="must be an http"):
        discover(gateway, timeout=T)


def test_credentials_in_the_gateway_url_are_not_shown() -> None:
    """A user:password in the gateway URL never appears in the error."""
    with pytest.raises(DiscoveryError) as caught:
        ws_url_from_answer("https://user:hunter2@gateway.example", 500, b"")
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in caught.value.url


# -- discover() against a LocalGateway ----------------------------------------------------------


def test_discover_finds_the_local_gateway(gw: LocalGateway) -> None:
    """The normal {"port": N} answer leads to the gateway's websocket URL."""
    assert discover(gw.http_url, timeout=T) == gw.ws_url
    assert discover(gw.http_url + "/", timeout=T) == gw.ws_url


@pytest.mark.parametrize("form", ["plain", "json-string", "url-object"])
def test_discover_accepts_every_url_form(gw: LocalGateway, form: str) -> None:
    """A plain-text URL, a JSON string and a {"url": ...} object all work over HTTP."""
    http_form = gw.ws_url.replace("ws://", "http://")
    bodies = {
        "plain": http_form + "\n",
        "json-string": json.dumps(http_form),
        "url-object": json.dumps({"url": gw.ws_url}),
    }
    gw.set_discovery_answer(200, bodies[form])
    assert discover(gw.http_url, timeout=T) == gw.ws_url


def test_discover_reports_a_server_error(gw: LocalGateway) -> None:
    """HTTP 500 is a DiscoveryError naming the URL, the status and an excerpt of the body."""
    gw.fail_discovery("500")
    with pytest.raises(DiscoveryError) as caught:
        discover(gw.http_url, timeout=T)
    error = caught.value
    assert error.status == 500
    assert error.url == gw.http_url + "/available"
    assert error.excerpt == "Internal Server Error"
    for part in (gw.http_url + "/available", "HTTP 500", "Internal Server Error"):
        assert part in str(error)


def test_discover_reports_garbage(gw: LocalGateway) -> None:
    """A 200 whose body says nothing about where to connect is a DiscoveryError."""
    gw.fail_discovery("garbage")
    with pytest.raises(DiscoveryError, match="unusable") as caught:
        discover(gw.http_url, timeout=T)
    assert caught.value.status == 200
    assert "It works!" in caught.value.excerpt


def test_discover_gives_up_on_a_hanging_server(gw: LocalGateway) -> None:
    """A server that never answers is a DiscoveryError after about the timeout."""
    gw.fail_discovery("hang")
    started = time.monotonic()
    with pytest.raises(DiscoveryError, match=r"no answer within 0\.3 s") as caught:
        discover(gw.http_url, timeout=0.3)
    assert time.monotonic() - started < T / 2
    assert caught.value.status is None
    assert isinstance(caught.value.__cause__, TimeoutError)


def test_discover_reports_a_refused_connection(refused_url: str) -> None:
    """Nothing listening on the port is a DiscoveryError chained to the connection error."""
    with pytest.raises(DiscoveryError, match="could not connect") as caught:
        discover(refused_url, timeout=T)
    assert refused_url + "/available" in str(caught.value)
    assert caught.value.status is None
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


def test_discover_cuts_off_a_huge_body(gw: LocalGateway) -> None:
    """A 10 MB answer is refused after max_body bytes, without reading it whole."""
    gw.set_discovery_answer(200, b"x" * (10 * 2**20))
    tracemalloc.start()
    try:
        with pytest.raises(DiscoveryError, match="larger than 65536 bytes") as caught:
            discover(gw.http_url, timeout=T)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2**20
    assert caught.value.excerpt.startswith("xxxx")


def test_discover_bounds_a_trickling_server() -> None:
    """A server that sends its body a byte at a time is cut off at the overall deadline."""
    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as server:

        def trickle() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 1000\r\n\r\n")
                while not stop.wait(0.02):
                    try:
                        conn.sendall(b" ")
                    except OSError:
                        return

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        started = time.monotonic()
        try:
            with pytest.raises(DiscoveryError, match=r"did not complete within 0\.5 s") as caught:
                discover(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=0.5)
            assert time.monotonic() - started < T / 2
            assert caught.value.status == 200
        finally:
            stop.set()
            thread.join(T)


# -- proxies -------------------------------------------------------------------------------------


class _ForwardingProxy(ThreadingHTTPServer):
    """A minimal HTTP forward proxy that remembers what it forwarded."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.forwarded: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _ForwardingProxy

    def do_GET(self) -> None:
        self.server.forwarded.append(self.path)  # absolute-form: the proxied URL
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with direct.open(self.path, timeout=T) as answer:
                status, body = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[_ForwardingProxy]:
    server = _ForwardingProxy()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(T)


@pytest.fixture
def refused_url() -> Iterator[str]:
    """An http:// URL on loopback whose port refuses connections (bound, not listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_proxy_argument_carries_the_request(gw: LocalGateway, proxy: _ForwardingProxy) -> None:
    """proxy= sends the discovery request through that proxy."""
    assert discover(gw.http_url, timeout=T, proxy=proxy.url) == gw.ws_url
    assert proxy.forwarded == [gw.http_url + "/available"]


def test_proxy_argument_beats_the_environment(
    gw: LocalGateway, proxy: _ForwardingProxy, refused_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """proxy= takes precedence over HTTP_PROXY and NO_PROXY."""
    monkeypatch.setenv("HTTP_PROXY", refused_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert discover(gw.http_url, timeout=T, proxy=proxy.url) == gw.ws_url
    assert proxy.forwarded == [gw.http_url + "/available"]


def test_environment_proxy_applies_without_the_argument(
    gw: LocalGateway, proxy: _ForwardingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without proxy=, HTTP_PROXY is used, and NO_PROXY exempts a host."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    assert discover(gw.http_url, timeout=T) == gw.ws_url
    assert proxy.forwarded == [gw.http_url + "/available"]
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert discover(gw.http_url, timeout=T) == gw.ws_url
    assert len(proxy.forwarded) == 1


def test_unreachable_proxy_is_a_discovery_error(gw: LocalGateway, refused_url: str) -> None:
    """A proxy that cannot be reached is a DiscoveryError, not a direct connection."""
    with pytest.raises(DiscoveryError, match="proxy"):
        discover(gw.http_url, timeout=T, proxy=refused_url)
    assert gw.discovery_requests == 0


# -- TLS -----------------------------------------------------------------------------------------


@pytest.fixture
def tls_gateway() -> Iterator[tuple[str, ssl.SSLContext]]:
    """An HTTPS discovery endpoint with a private CA; yields its URL and a context trusting it."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"port": 4443}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    # By name: urllib3 1.26 cannot check an IP address against a context with check_hostname.
    yield f"https://localhost:{server.server_address[1]}", client_context
    server.shutdown()
    server.server_close()
    thread.join(T)


def test_ssl_context_is_used_and_left_unchanged(tls_gateway: tuple[str, ssl.SSLContext]) -> None:
    """ssl_context decides what is trusted for HTTPS discovery, and is not modified."""
    url, context = tls_gateway
    trusted_before = context.cert_store_stats()
    assert discover(url, timeout=T, ssl_context=context) == "wss://localhost:4443"
    assert context.cert_store_stats() == trusted_before
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_default_verification_refuses_an_unknown_ca(
    tls_gateway: tuple[str, ssl.SSLContext],
) -> None:
    """Without ssl_context, a certificate from an unknown CA fails discovery."""
    url, _ = tls_gateway
    with pytest.raises(DiscoveryError, match="TLS") as caught:
        discover(url, timeout=T)
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)


def test_arguments_are_checked() -> None:
    """A non-positive timeout or max_body is a ValueError."""
    with pytest.raises(ValueError, match="timeout"):
        discover(GATEWAY, timeout=0)
    with pytest.raises(ValueError, match="max_body"):
        discover(GATEWAY, timeout=T, max_body=0)
