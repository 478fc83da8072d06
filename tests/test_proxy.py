"""Proxies: the proxy= option and HTTPS_PROXY / HTTP_PROXY / NO_PROXY, for discovery and the
websocket alike, through a real forwarding proxy on loopback."""

from __future__ import annotations

import base64
import contextlib
import os
import selectors
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest

from hatsu_sync import Client, ConnectError, DiscoveryError
from hatsu_sync._netconfig import proxy_for
from hatsu_sync.testing import LocalGateway

from .conftest import SESSION, T

VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ForwardingProxy:
    """A small HTTP proxy on loopback: ``CONNECT host:port`` tunnels and absolute-URI GETs.

    It records every request it gets as ``(method, target)`` and its ``Proxy-Authorization``
    header, relays bytes both ways, and only ever connects to loopback (403 otherwise).
    ``refuse`` makes it answer 403 to everything.
    """

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.requests: list[tuple[str, str]] = []
        self.authorizations: list[str | None] = []
        self._cond = threading.Condition()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._accepter = threading.Thread(target=self._accept, name="test-proxy-accept")

    def start(self) -> ForwardingProxy:
        self._accepter.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            sockets = list(self._sockets)
        # Wake the accepting thread: it sees _stopping and ends.
        with contextlib.suppress(OSError):
            socket.create_connection(self._listener.getsockname(), timeout=T).close()
        self._accepter.join(T)
        self._listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(T)
        assert not any(t.is_alive() for t in [self._accepter, *self._threads])

    # -- the proxy's threads -----------------------------------------------------------------------

    def _track(self, sock: socket.socket) -> bool:
        with self._cond:
            if self._stopping:
                sock.close()
                return False
            self._sockets.add(sock)
            return True

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # stopped
            if not self._track(client):
                return  # stopping
            thread = threading.Thread(
                target=self._serve, args=(client,), name="test-proxy-conn", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            client.settimeout(T)
            head, rest = _read_head(client)
            if head is None:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            with self._cond:
                self.requests.append((method, target))
                self.authorizations.append(headers.get("Proxy-Authorization"))
                self._cond.notify_all()
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                host = host.strip("[]")
            else:
                parts = urlsplit(target)
                host, port = parts.hostname or "", str(parts.port or 80)
            if self.refuse or host not in LOOPBACK:
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            upstream = socket.create_connection((host, int(port)), timeout=T)
            if not self._track(upstream):
                return
            if method == "CONNECT":
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                parts = urlsplit(target)
                path = parts.path + (f"?{parts.query}" if parts.query else "")
                kept = [
                    f"{name}: {value}"
                    for name, value in headers.items()
                    if not name.lower().startswith("proxy-") and name.lower() != "connection"
                ]
                upstream.sendall(
                    "\r\n".join(
                        [f"{method} {path or '/'} HTTP/1.1", *kept, "Connection: close"]
                    ).encode("latin-1")
                    + b"\r\n\r\n"
                )
            if rest:
                upstream.sendall(rest)
            _relay(client, upstream)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with self._cond:
                        self._sockets.discard(sock)
                    sock.close()


def _read_head(sock: socket.socket) -> tuple[bytes | None, bytes]:
    """The request head up to the blank line, and whatever came after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk or len(data) > 65536:
            return None, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until both sides have finished sending."""
    a.settimeout(None)
    b.settimeout(None)
    with selectors.DefaultSelector() as selector:
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        while selector.get_map():
            for key, _ in selector.select():
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                sink: socket.socket = key.data
                try:
                    data = source.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    selector.unregister(source)
                    with contextlib.suppress(OSError):
                        sink.shutdown(socket.SHUT_WR)
                    continue
                sink.sendall(data)


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with no proxy variable set; each sets what it needs."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)


@pytest.fixture
def proxy() -> Iterator[ForwardingProxy]:
    server = ForwardingProxy().start()
    yield server
    server.stop()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """An http:// URL on loopback whose port refuses connections (bound, not listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for localhost from a test CA, and a client context
    trusting that CA."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


class Gateway:
    """A LocalGateway, over TLS or not, and what a Client needs to reach it."""

    def __init__(self, gw: LocalGateway, client_context: ssl.SSLContext | None) -> None:
        self.gw = gw
        self.client_context = client_context
        self.tls = client_context is not None
        self.host = "localhost" if self.tls else "127.0.0.1"
        # What the proxy sees of each hop: a tunnel for TLS (and any websocket), else the URL.
        self.discovery_hop = (
            ("CONNECT", f"{self.host}:{gw.http_port}")
            if self.tls
            else ("GET", f"{gw.http_url}/available")
        )
        self.websocket_hop = ("CONNECT", f"{self.host}:{gw.ws_port}")


@pytest.fixture(params=["http", "https"])
def gateway(
    request: pytest.FixtureRequest, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> Iterator[Gateway]:
    """A LocalGateway over plain HTTP/ws, then over HTTPS/wss."""
    if request.param == "https":
        with LocalGateway(ssl_context=tls[0]) as gw:
            yield Gateway(gw, tls[1])
    else:
        with LocalGateway() as gw:
            yield Gateway(gw, None)


@pytest.fixture
def connect(gateway: Gateway) -> Iterator[Callable[..., Client]]:
    """Connect a client to the gateway (by discovery) and take its HELLO; closed at teardown."""
    clients: list[Client] = []

    def make(**kwargs: Any) -> Client:
        kwargs.setdefault("gateway", gateway.gw.http_url)
        client = Client(
            f"{SESSION}-{len(clients)}" if clients else SESSION,  # no DuplicateClientWarning
            ssl_context=gateway.client_context,
            backoff_base=0.01,
            backoff_max=0.05,
            **kwargs,
        )
        clients.append(client)
        client.connect(timeout=T)
        assert client.get_event(timeout=T).name == "HELLO"
        return client

    yield make
    for client in clients:
        client.close(timeout=T)


def proxy_variable(gateway: Gateway) -> str:
    return "HTTPS_PROXY" if gateway.tls else "HTTP_PROXY"


def other_variable(gateway: Gateway) -> str:
    return "HTTP_PROXY" if gateway.tls else "HTTPS_PROXY"


# -- through the proxy ---------------------------------------------------------------------------


def test_proxy_option_carries_both_hops_and_reconnects(
    gateway: Gateway, proxy: ForwardingProxy, connect: Callable[..., Client]
) -> None:
    """proxy= carries discovery and the websocket, on the first connection and after a loss."""
    client = connect(proxy=proxy.url)
    hops = [gateway.discovery_hop, gateway.websocket_hop]
    assert proxy.requests == hops
    assert gateway.gw.identifies[-1]["session_id"] == SESSION

    gateway.gw.disconnect(1011, "restarting")
    assert client.get_event(timeout=T).name == "READY"
    assert client.get_event(timeout=T).name == "HELLO"  # the reconnection's
    assert proxy.requests == hops * 2


def test_environment_proxy_carries_both_hops(
    gateway: Gateway,
    proxy: ForwardingProxy,
    refused_url: str,
    connect: Callable[..., Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without proxy=, HTTPS_PROXY carries https/wss and HTTP_PROXY http/ws, for both hops."""
    monkeypatch.setenv(proxy_variable(gateway), proxy.url)
    monkeypatch.setenv(other_variable(gateway), refused_url)  # the other scheme's: unused
    connect()
    assert proxy.requests == [gateway.discovery_hop, gateway.websocket_hop]


def test_proxy_option_beats_the_environment(
    gateway: Gateway,
    proxy: ForwardingProxy,
    refused_url: str,
    connect: Callable[..., Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """proxy= wins over HTTP(S)_PROXY and over NO_PROXY, for both hops."""
    monkeypatch.setenv("HTTP_PROXY", refused_url)
    monkeypatch.setenv("HTTPS_PROXY", refused_url)
    monkeypatch.setenv("NO_PROXY", "*")
    connect(proxy=proxy.url)
    assert proxy.requests == [gateway.discovery_hop, gateway.websocket_hop]


@pytest.mark.parametrize(
    "no_proxy",
    ["*", "{host}", "example.com, {host}", "{HOST}", "{alt}", "{net}", "{host}:{ports}"],
)
def test_no_proxy_bypasses_the_proxy(
    gateway: Gateway,
    proxy: ForwardingProxy,
    connect: Callable[..., Client],
    monkeypatch: pytest.MonkeyPatch,
    no_proxy: str,
) -> None:
    """A NO_PROXY entry that matches the gateway's host makes both hops connect directly."""
    gw = gateway.gw
    net = "localhost" if gateway.tls else "127.0.0.0/8"
    alt = ".localhost" if gateway.tls else "127.0.0.1/32"
    ports = f"{gw.http_port},{gateway.host}:{gw.ws_port}"
    value = no_proxy.format(
        host=gateway.host, HOST=gateway.host.upper(), net=net, alt=alt, ports=ports
    )
    monkeypatch.setenv(proxy_variable(gateway), proxy.url)
    monkeypatch.setenv("NO_PROXY", value)
    connect()
    assert proxy.requests == []


@pytest.mark.parametrize("no_proxy", ["example.com", "{other}", "{host}:1", "ocalhost"])
def test_no_proxy_that_does_not_match_keeps_the_proxy(
    gateway: Gateway,
    proxy: ForwardingProxy,
    connect: Callable[..., Client],
    monkeypatch: pytest.MonkeyPatch,
    no_proxy: str,
) -> None:
    """NO_PROXY entries for other hosts or ports, or another spelling of loopback, change
    nothing: names are not resolved (127.0.0.1 does not cover localhost) nor suffix-matched."""
    other = "127.0.0.1" if gateway.tls else "localhost"
    monkeypatch.setenv(proxy_variable(gateway), proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy.format(host=gateway.host, other=other))
    connect()
    assert proxy.requests == [gateway.discovery_hop, gateway.websocket_hop]


def test_no_proxy_port_entry_exempts_one_hop(
    gateway: Gateway,
    proxy: ForwardingProxy,
    connect: Callable[..., Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A host:port entry exempts only the hop to that port: discovery direct, websocket not."""
    monkeypatch.setenv(proxy_variable(gateway), proxy.url)
    monkeypatch.setenv("NO_PROXY", f"{gateway.host}:{gateway.gw.http_port}")
    connect()
    assert proxy.requests == [gateway.websocket_hop]


@pytest.mark.skipif(os.name == "nt", reason="environment names are case-insensitive")
def test_lower_case_variables_win(
    gateway: Gateway,
    proxy: ForwardingProxy,
    refused_url: str,
    connect: Callable[..., Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lower-case variable wins over the upper-case one, and set empty it disables it."""
    variable = proxy_variable(gateway)
    monkeypatch.setenv(variable, refused_url)
    monkeypatch.setenv(variable.lower(), proxy.url)
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setenv("no_proxy", "")
    connect()
    assert proxy.requests == [gateway.discovery_hop, gateway.websocket_hop]

    monkeypatch.setenv(variable.lower(), "")
    connect()  # straight there: the refusing proxy is not used
    assert len(proxy.requests) == 2


def test_cgi_http_proxy_is_ignored(
    refused_url: str, proxy: ForwardingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under CGI (REQUEST_METHOD set) HTTP_PROXY may come from a request header: ignored."""
    monkeypatch.setenv("REQUEST_METHOD", "GET")
    monkeypatch.setenv("HTTP_PROXY", refused_url)
    assert proxy_for("http://127.0.0.1:8080/available", None) is None
    assert proxy_for("ws://127.0.0.1:8080", None) is None
    if os.name != "nt":
        monkeypatch.setenv("http_proxy", proxy.url)
        assert proxy_for("ws://127.0.0.1:8080", None) == proxy.url


# -- failures ------------------------------------------------------------------------------------


def test_unreachable_proxy_is_an_error_not_a_direct_connection(
    gateway: Gateway, refused_url: str
) -> None:
    """A proxy that cannot be reached fails each hop with an error naming it (never its
    password), and nothing reaches the gateway directly."""
    gw = gateway.gw
    proxy_url = refused_url.replace("://", "://user:hunter2@")
    for kwargs, error in (
        ({"gateway": gw.http_url}, DiscoveryError),
        ({"url": gw.ws_url}, ConnectError),
    ):
        client = Client(SESSION, ssl_context=gateway.client_context, proxy=proxy_url, **kwargs)
        with pytest.raises(error, match="proxy") as caught:
            client.connect(timeout=T)
        assert "hunter2" not in str(caught.value)
        assert SESSION not in str(caught.value)
    assert gw.discovery_requests == 0
    assert gw.connections == 0


def test_proxy_refusing_the_tunnel_is_a_connect_error(gateway: Gateway) -> None:
    """A proxy that answers 403 fails the connection with a ConnectError."""
    refusing = ForwardingProxy(refuse=True).start()
    try:
        for kwargs in ({"gateway": gateway.gw.http_url}, {"url": gateway.gw.ws_url}):
            client = Client(
                SESSION, ssl_context=gateway.client_context, proxy=refusing.url, **kwargs
            )
            with pytest.raises(ConnectError):
                client.connect(timeout=T)
        assert len(refusing.requests) == 2
    finally:
        refusing.stop()
    assert gateway.gw.connections == 0


@pytest.mark.parametrize(
    "value", ["socks5://127.0.0.1:1080", "https://127.0.0.1:3128", "http://", "http://[::1"]
)
def test_unusable_environment_proxy_is_an_error(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """An environment proxy other than http://host:port is a clear error for both hops,
    never a silent direct connection."""
    monkeypatch.setenv(proxy_variable(gateway), value)
    gw = gateway.gw
    for kwargs, error in (
        ({"gateway": gw.http_url}, DiscoveryError),
        ({"url": gw.ws_url}, ConnectError),
    ):
        client = Client(SESSION, ssl_context=gateway.client_context, **kwargs)
        with pytest.raises(error, match=r"only http://host:port proxies"):
            client.connect(timeout=T)
    assert gw.discovery_requests == 0
    assert gw.connections == 0


def test_proxy_credentials_are_sent_to_the_proxy(
    gateway: Gateway, proxy: ForwardingProxy, connect: Callable[..., Client]
) -> None:
    """user:password in the proxy URL (percent-decoded) authenticate both hops to the proxy."""
    connect(proxy=proxy.url.replace("://", "://bob:p%40ss@"))
    expected = "Basic " + base64.b64encode(b"bob:p@ss").decode()
    assert proxy.authorizations == [expected, expected]


# -- the rules, one by one -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "no_proxy", "exempt"),
    [
        ("ws://gw.example.com:80", "example.com", True),
        ("ws://gw.example.com:80", ".example.com", True),
        ("ws://gw.example.com:80", "*.example.com", True),
        ("ws://example.com:80", "example.com", True),
        ("ws://EXAMPLE.com.:80", "example.COM", True),
        ("ws://notexample.com:80", "example.com", False),
        ("ws://example.com.evil:80", "example.com", False),
        ("ws://10.1.2.3:80", "10.0.0.0/8", True),
        ("ws://10.1.2.3:80", "10.1.2.3", True),
        ("ws://11.1.2.3:80", "10.0.0.0/8", False),
        ("ws://[::1]:80", "::1", True),
        ("ws://[::1]:80", "[::1]", True),
        ("ws://[::1]:80", "[::1]:80", True),
        ("ws://[::1]:80", "[::1]:81", False),
        ("ws://[::1]:80", "::/0", True),
        ("ws://[::1]:80", "0.0.0.0/0", False),
        ("wss://gw.example.com", "gw.example.com:443", True),
        ("wss://gw.example.com", "gw.example.com:80", False),
        ("ws://localhost:80", "127.0.0.1", False),
        ("ws://127.0.0.1:80", "localhost", False),
        ("ws://gw.example.com:80", " a.test ,  gw.example.com ", True),
        ("ws://gw.example.com:80", "", False),
        ("ws://gw.example.com:80", ",,", False),
    ],
)
def test_no_proxy_rules(
    monkeypatch: pytest.MonkeyPatch, url: str, no_proxy: str, exempt: bool
) -> None:
    """NO_PROXY matches names on dot boundaries, IPs and CIDR ranges, optional ports."""
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert proxy_for(url, None) == (None if exempt else "http://proxy.test:3128")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("proxy.test:3128", "http://proxy.test:3128"),
        ("http://proxy.test", "http://proxy.test:80"),
        ("HTTP://u:p@proxy.test:8080/", "http://u:p@proxy.test:8080"),
        (" http://proxy.test:3128 ", "http://proxy.test:3128"),
        ("", None),
        ("   ", None),
    ],
)
def test_environment_proxy_forms(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str | None
) -> None:
    """An environment proxy without a scheme is http://, without a port is :80; blank is none."""
    monkeypatch.setenv("HTTPS_PROXY", value)
    assert proxy_for("wss://gw.example.com", None) == expected
    assert proxy_for("ws://gw.example.com", None) is None  # HTTP_PROXY is not set
