"""open_socket: the websocket hop's connection, straight or through a CONNECT proxy, within one
total deadline, with a bounded proxy answer and the caller's TLS context used as it is."""

from __future__ import annotations

import base64
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hatsu_sync._netconfig import ProxyError, open_socket

from .conftest import T, trust_settings
from .hostile_http import (
    HostileServer,
    client_closed,
    connect_proxy,
    drip,
    flood,
    head,
    read_request,
    repeat,
)

trustme = pytest.importorskip("trustme")

DEADLINE = 1.0
MARGIN = 1.5  # generous: the tests share two cores with other work
PASSWORD = "hunter2"


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


def server_context(ca: Any, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def client_context(ca: Any) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(context)
    return context


def echo(conn: socket.socket, server: HostileServer) -> None:
    """Send back whatever comes, until the client closes."""
    while not server.stopping.is_set():
        data = conn.recv(4096)
        if not data:
            return
        conn.sendall(data)


@pytest.fixture
def plain_echo() -> Iterator[HostileServer]:
    with HostileServer(echo) as server:
        yield server


@pytest.fixture
def tls_echo(ca: Any) -> Iterator[HostileServer]:
    """An echo server over TLS on 127.0.0.1, its certificate for that address."""
    with HostileServer(echo, tls=server_context(ca, "127.0.0.1")) as server:
        yield server


@pytest.fixture
def proxy() -> Iterator[HostileServer]:
    with HostileServer(connect_proxy) as server:
        yield server


def round_trip(sock: socket.socket) -> bytes:
    with sock:
        sock.sendall(b"ping")
        return sock.recv(4)


def test_direct_plain_and_tls(plain_echo: HostileServer, tls_echo: HostileServer, ca: Any) -> None:
    """Without a proxy, ws:// is a TCP connection and wss:// a verified TLS one, both left with
    a timeout no longer than the time that was left."""
    sock = open_socket(plain_echo.url("ws"), None, None, T)
    assert not isinstance(sock, ssl.SSLSocket)
    assert 0 < (sock.gettimeout() or 0) <= T
    assert round_trip(sock) == b"ping"
    sock = open_socket(tls_echo.url("wss"), None, client_context(ca), T)
    assert isinstance(sock, ssl.SSLSocket)
    assert round_trip(sock) == b"ping"


def test_through_a_connect_proxy(proxy: HostileServer, tls_echo: HostileServer, ca: Any) -> None:
    """Through a proxy, the socket is a CONNECT tunnel to the URL's host and port, with the
    proxy URL's percent-decoded credentials, and TLS is done end to end inside it."""
    proxy_url = proxy.url().replace("://", "://bob:p%40ss@")
    sock = open_socket(tls_echo.url("wss"), proxy_url, client_context(ca), T)
    assert isinstance(sock, ssl.SSLSocket)
    assert round_trip(sock) == b"ping"
    request = proxy.requests[0].decode("latin-1")
    assert request.startswith(f"CONNECT 127.0.0.1:{tls_echo.port} HTTP/1.1\r\n")
    token = base64.b64encode(b"bob:p@ss").decode()
    assert f"\r\nProxy-Authorization: Basic {token}" in request


def refusing(conn: socket.socket, server: HostileServer) -> None:
    if read_request(conn, server):
        conn.sendall(head("403 Forbidden", "Content-Length: 0"))


def wants_credentials(conn: socket.socket, server: HostileServer) -> None:
    if read_request(conn, server):
        conn.sendall(head("407 Proxy Authentication Required", "Content-Length: 0"))


def not_http(conn: socket.socket, server: HostileServer) -> None:
    if read_request(conn, server):
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")


def silent_close(conn: socket.socket, server: HostileServer) -> None:
    read_request(conn, server)


def early_data(conn: socket.socket, server: HostileServer) -> None:
    if read_request(conn, server):
        conn.sendall(head("200 Connection established") + b"HTTP/1.1 101 ...")
        client_closed(conn, T)


def endless_head(conn: socket.socket, server: HostileServer) -> None:
    if read_request(conn, server):
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n")
        flood(conn, server, repeat(b"X-Junk: " + b"a" * 1000 + b"\r\n"))


@pytest.mark.parametrize(
    ("script", "problem"),
    [
        (refusing, "refused the tunnel: HTTP 403 Forbidden"),
        (wants_credentials, "HTTP 407 Proxy Authentication Required (it wants credentials)"),
        (not_http, "unusable answer: not an HTTP/1 answer"),
        (silent_close, "closed the connection without answering"),
        (early_data, "sent data after opening the tunnel"),
        (endless_head, "unusable answer: the answer's head is larger than 65536 bytes"),
    ],
)
def test_a_bad_proxy_answer_is_a_proxy_error(
    script: Any, problem: str, plain_echo: HostileServer
) -> None:
    """A refusal, a non-HTTP answer, silence, early data or a head without end fails at once
    with a ProxyError naming the proxy and the problem, never its password; the bytes read
    stay within 64 KiB of head."""
    with HostileServer(script) as bad:
        proxy_url = bad.url().replace("://", f"://bob:{PASSWORD}@")
        started = time.monotonic()
        with pytest.raises(ProxyError) as caught:
            open_socket(plain_echo.url("ws"), proxy_url, None, 4 * T)
        assert time.monotonic() - started < MARGIN
        message = str(caught.value)
        assert problem in message
        assert f"the proxy {bad.url()}" in message
        assert PASSWORD not in message
        if script is endless_head:
            assert bad.client_gone.wait(T)
        assert bad.sent < 64 * 2**20
    assert plain_echo.connections == 0


def test_a_dripping_proxy_fails_at_the_deadline(plain_echo: HostileServer) -> None:
    """A proxy that drips its answer a byte every 0.5 s fails open_socket within its timeout,
    and the connection to it is closed at once."""

    def dripping(conn: socket.socket, server: HostileServer) -> None:
        if read_request(conn, server):
            drip(conn, server, b"HTTP/1.1 200 Connection established\r\nX-Slow: a")

    with HostileServer(dripping) as slow:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="proxy"):
            open_socket(plain_echo.url("ws"), slow.url(), None, DEADLINE)
        assert time.monotonic() - started < DEADLINE + MARGIN
        assert slow.client_gone.wait(T)


def test_a_dripped_tls_handshake_fails_at_the_deadline(ca: Any) -> None:
    """A server that answers the TLS ClientHello a byte every 0.5 s fails open_socket within
    its timeout."""

    def dripping(conn: socket.socket, server: HostileServer) -> None:
        if conn.recv(4096):
            # A handshake record header announcing 16 KiB, then its body a byte at a time.
            drip(conn, server, b"\x16\x03\x03\x40\x00\x02")

    with HostileServer(dripping) as slow:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="TLS handshake"):
            open_socket(slow.url("wss"), None, client_context(ca), DEADLINE)
        assert time.monotonic() - started < DEADLINE + MARGIN
        assert slow.client_gone.wait(T)


def test_an_unreachable_proxy_is_a_proxy_error(plain_echo: HostileServer) -> None:
    """A proxy nobody listens on is a ProxyError saying so (never its password), not a direct
    connection."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        proxy_url = f"http://bob:{PASSWORD}@127.0.0.1:{unused.getsockname()[1]}"
        with pytest.raises(ProxyError, match="could not connect to the proxy") as caught:
            open_socket(plain_echo.url("ws"), proxy_url, None, T)
    assert PASSWORD not in str(caught.value)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert plain_echo.connections == 0


def test_the_callers_context_decides_and_is_not_modified(ca: Any) -> None:
    """A certificate for another host name fails with check_hostname on, and is accepted with
    check_hostname off and CERT_OPTIONAL; the caller's context is left exactly as it was."""
    with HostileServer(echo, tls=server_context(ca, "gateway.example")) as server:
        strict = client_context(ca)
        with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
            open_socket(server.url("wss"), None, strict, T)
        lenient = client_context(ca)
        lenient.check_hostname = False
        lenient.verify_mode = ssl.CERT_OPTIONAL
        before = trust_settings(lenient)
        assert round_trip(open_socket(server.url("wss"), None, lenient, T)) == b"ping"
        assert trust_settings(lenient) == before
        # Still verified against its CAs: an unknown CA is refused.
        other = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        other.check_hostname = False
        trustme.CA().configure_trust(other)
        with pytest.raises(ssl.SSLCertVerificationError):
            open_socket(server.url("wss"), None, other, T)


def test_tls_needs_a_context() -> None:
    """A wss:// URL without a context is a ValueError before any connection."""
    with pytest.raises(ValueError, match="needs a TLS context"):
        open_socket("wss://127.0.0.1:1", None, None, T)
