"""Discovery under hostile servers: a total deadline, 64 KiB of any answer, only
DiscoveryErrors, and nothing left reading once discover() or connect() gives up."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hatsu_sync import Client, DiscoveryError
from hatsu_sync._discovery import discover, ws_url_from_answer
from hatsu_sync.testing import LocalGateway

from .conftest import SESSION, T, client_threads, eventually
from .hostile_http import (
    GIB,
    HostileServer,
    drip,
    flood,
    gzip_bomb,
    head,
    read_request,
    repeat,
)

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
DEADLINE = 1.0
# Generous: the tests share two cores with other work.
MARGIN = 1.5


@pytest.fixture(autouse=True)
def no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests reach loopback directly."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def dripped_head(conn: socket.socket, server: HostileServer) -> None:
    """A status line, then a header line that grows by one byte every half second."""
    if read_request(conn, server):
        drip(conn, server, b"HTTP/1.1 200 OK\r\nX-Slow: a")


def dripped_body(conn: socket.socket, server: HostileServer) -> None:
    """A complete head announcing 1000 bytes, then the body one byte every half second."""
    if read_request(conn, server):
        conn.sendall(head("200 OK", "Content-Length: 1000"))
        drip(conn, server, b' {"port": 1}')


@pytest.mark.parametrize(("script", "status"), [(dripped_head, None), (dripped_body, 200)])
def test_a_dripping_answer_fails_at_the_total_deadline(script: Any, status: int | None) -> None:
    """A server that drips its head or its body a byte every 0.5 s fails discover() within
    its timeout, and the connection is closed at once (the server sees it go)."""
    with HostileServer(script) as server:
        started = time.monotonic()
        with pytest.raises(DiscoveryError, match=f"within {DEADLINE:g} s") as caught:
            discover(server.url(), timeout=DEADLINE)
        elapsed = time.monotonic() - started
        assert elapsed < DEADLINE + MARGIN
        assert caught.value.status == status
        assert isinstance(caught.value.__cause__, TimeoutError)
        assert server.client_gone.wait(T)
        assert server.sent <= 2 * (DEADLINE + MARGIN) / 0.5 + 20


def test_connect_with_a_dripping_discovery_keeps_its_timeout() -> None:
    """Client.connect(timeout) against a discovery that drips its head raises DiscoveryError
    within the timeout, leaves no client thread behind, and no socket reading on."""
    with HostileServer(dripped_head) as server:
        client = Client(SESSION, gateway=server.url(), reconnect=False)
        started = time.monotonic()
        with pytest.raises(DiscoveryError, match="no answer within"):
            client.connect(timeout=DEADLINE)
        assert time.monotonic() - started < DEADLINE + MARGIN
        assert not client_threads()
        assert server.client_gone.wait(T)
        client.close()


def huge_redirect(conn: socket.socket, server: HostileServer) -> None:
    """A 302 whose body announces and sends 1 GiB."""
    if read_request(conn, server):
        conn.sendall(head("302 Found", "Location: /elsewhere", f"Content-Length: {GIB}"))
        flood(conn, server, repeat(b"x" * 65536))


def redirect_bomb(conn: socket.socket, server: HostileServer) -> None:
    """A 302 whose gzip body (about 1 MiB on the wire) inflates to 1 GiB."""
    if read_request(conn, server):
        conn.sendall(head("302 Found", "Location: /elsewhere", "Content-Encoding: gzip"))
        flood(conn, server, gzip_bomb(), max_bytes=GIB // 1000)


def answer_bomb(conn: socket.socket, server: HostileServer) -> None:
    """A 200 whose chunked gzip body inflates to 1 GiB."""
    if read_request(conn, server):
        conn.sendall(head("200 OK", "Transfer-Encoding: chunked", "Content-Encoding: gzip"))
        flood(
            conn,
            server,
            (b"%x\r\n%s\r\n" % (len(c), c) for c in gzip_bomb()),
            max_bytes=GIB // 1000,
        )


def endless_head(conn: socket.socket, server: HostileServer) -> None:
    """A status line, then header lines without end."""
    if read_request(conn, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        flood(conn, server, repeat(b"X-Junk: " + b"a" * 1000 + b"\r\n"))


def endless_header_line(conn: socket.socket, server: HostileServer) -> None:
    """A status line, then one header line without end."""
    if read_request(conn, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Junk: ")
        flood(conn, server, repeat(b"a" * 65536))


CHILD = """
import json, resource, sys, threading, time
from hatsu_sync import Client, DiscoveryError
from hatsu_sync._discovery import discover

def peak_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

url, timeout, how = sys.argv[1], float(sys.argv[2]), sys.argv[3]
before = peak_kib()
started = time.monotonic()
try:
    if how == "discover":
        discover(url, timeout=timeout)
    else:
        Client("session", gateway=url, reconnect=False).connect(timeout=timeout)
    outcome = "no error"
except DiscoveryError as exc:
    outcome = str(exc)
print(json.dumps({"growth_kib": peak_kib() - before, "seconds": time.monotonic() - started,
                  "outcome": outcome, "threads": threading.active_count()}))
"""


def run_child(server: HostileServer, how: str) -> dict[str, Any]:
    """Run discovery (``discover`` or ``connect``) against ``server`` in a child process; its
    report: peak RSS growth, seconds, outcome and threads left."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, server.url(), str(4 * T), how],
        capture_output=True,
        text=True,
        timeout=6 * T,
        env=os.environ.copy(),
        check=True,
    )
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@pytest.mark.parametrize(
    ("script", "problem", "how"),
    [
        (huge_redirect, "HTTP 302", "discover"),
        (huge_redirect, "HTTP 302", "connect"),
        (redirect_bomb, "HTTP 302", "discover"),
        (answer_bomb, "larger than 65536 bytes", "discover"),
        (answer_bomb, "larger than 65536 bytes", "connect"),
        (endless_head, "head is larger than 65536 bytes", "discover"),
        (endless_header_line, "head is larger than 65536 bytes", "discover"),
    ],
)
def test_a_huge_answer_costs_at_most_its_budget(script: Any, problem: str, how: str) -> None:
    """A 302 with a 1 GiB body, a gzip body that inflates to 1 GiB (302 or 200), or a head
    without end fails discover() or Client.connect() promptly; the process (measured in a
    child) grows by no more than a few MiB, no thread is left, and the server sees the
    connection go while it still had gigabytes to send."""
    with HostileServer(script) as server:
        report = run_child(server, how)
        assert problem in report["outcome"]
        assert report["seconds"] < MARGIN
        assert report["growth_kib"] < 16 * 1024
        assert report["threads"] == 1
        assert server.client_gone.wait(T)
        assert server.sent < 64 * 2**20


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"url": ' + b"[" * 100_000,
        b'{"port": ' + b'{"a": ' * 20_000,
        b"[" * 1000 + b"]" * 1000,
    ],
)
def test_deeply_nested_json_is_a_discovery_error(body: bytes) -> None:
    """JSON nested deep enough to exhaust the parser's stack is a DiscoveryError, like any other
    unusable answer, never a RecursionError."""
    with pytest.raises(DiscoveryError, match="unusable"):
        ws_url_from_answer("http://127.0.0.1:1", 200, body)


def test_a_nested_answer_is_one_failed_attempt() -> None:
    """Through a real Client: a nested answer fails connect() with a DiscoveryError, and on a
    reconnect it is one failed attempt after which the client tries again and recovers."""
    with LocalGateway() as gw:
        gw.set_discovery_answer(200, "[" * 60_000)
        client = Client(SESSION, gateway=gw.http_url, backoff_base=0.01, backoff_max=0.05)
        try:
            with pytest.raises(DiscoveryError, match="nested too deeply"):
                client.connect(timeout=T)
            gw.fail_discovery(None)
            client.connect(timeout=T)
            assert client.get_event(timeout=T).name == "HELLO"
            gw.set_discovery_answer(200, "[" * 60_000)
            requests_before = gw.discovery_requests
            gw.disconnect(1011)
            gw.wait_for_discovery_requests(requests_before + 3, timeout=T)
            assert not client.closed
            gw.fail_discovery(None)
            eventually(lambda: client.stats.reconnects == 1, what="the reconnection")
        finally:
            client.close(timeout=T)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_answer_is_a_url_or_a_discovery_error(body: bytes) -> None:
    """Whatever the body, the answer is a ws(s) URL or a DiscoveryError, never another error."""
    try:
        url = ws_url_from_answer("https://127.0.0.1:1", 200, body)
    except DiscoveryError:
        return
    assert url.startswith("wss://")
