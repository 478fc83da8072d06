"""URL passwords (gateway, proxy, discovered URL) never appear in discovery errors, in log lines
or in the network settings' ValueErrors; the gateway's own credentials still reach it."""

from __future__ import annotations

import base64
import logging
import socket
import ssl
from collections.abc import Iterator

import pytest

from hatsu_sync import Client, DiscoveryError
from hatsu_sync._discovery import discover, ws_url_from_answer
from hatsu_sync._netconfig import proxy_for, tls_context

from .conftest import SESSION, T
from .hostile_http import HostileServer, answer, head, read_request

PASSWORD = "hunter2"
VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def caught_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every hatsu_sync log line, DEBUG included."""
    with caplog.at_level(logging.DEBUG, logger="hatsu_sync"):
        yield caplog


def assert_hidden(error: DiscoveryError, caplog: pytest.LogCaptureFixture) -> None:
    shown = [str(error), error.url, error.excerpt, *(r.getMessage() for r in caplog.records)]
    assert not [text for text in shown if PASSWORD in text]


def failing(conn: socket.socket, server: HostileServer) -> None:
    answer(conn, server, "500 Internal Server Error", b"down")


def test_gateway_password_is_sent_but_never_shown(caught_logs: pytest.LogCaptureFixture) -> None:
    """A user:password in the gateway URL goes to the gateway as Basic authorisation (as
    requests sent it), and appears in no error, URL attribute or log line."""
    with HostileServer(failing) as server:
        gateway = server.url().replace("://", f"://bob:{PASSWORD}@")
        with pytest.raises(DiscoveryError, match="HTTP 500") as caught:
            discover(gateway, timeout=T)
    token = base64.b64encode(f"bob:{PASSWORD}".encode()).decode()
    assert f"\r\nAuthorization: Basic {token}".encode() in server.requests[0]
    assert "bob:[redacted]@" in caught.value.url
    assert_hidden(caught.value, caught_logs)


@pytest.mark.parametrize(
    "body",
    [
        f"ws://bob:{PASSWORD}@gateway.example",
        f'{{"url": "http://bob:{PASSWORD}@gateway.example"}}',
        f'"wss://bob:{PASSWORD}@gateway.example:99999"',
        f"ftp://bob:{PASSWORD}@gateway.example",
    ],
)
def test_a_discovered_urls_password_is_never_shown(body: str) -> None:
    """An answer naming a URL with a password that is refused (plain ws:// from https, a bad
    port, another scheme) shows the URL and the excerpt with the password redacted."""
    with pytest.raises(DiscoveryError) as caught:
        ws_url_from_answer("https://gateway.example", 200, body.encode())
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in caught.value.excerpt
    assert "bob:[redacted]@" in str(caught.value)


def test_an_accepted_urls_password_is_kept_for_the_connection() -> None:
    """A discovered URL's password is the connection's to use: the URL is returned whole."""
    body = f'{{"url": "wss://bob:{PASSWORD}@gateway.example/ws"}}'.encode()
    assert ws_url_from_answer("https://gateway.example", 200, body) == (
        f"wss://bob:{PASSWORD}@gateway.example/ws"
    )


def refusing_proxy(conn: socket.socket, server: HostileServer) -> None:
    if read_request(conn, server):
        conn.sendall(head("403 Forbidden", "Content-Length: 6") + b"denied")


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_proxys_password_is_never_shown(
    scheme: str, caught_logs: pytest.LogCaptureFixture
) -> None:
    """A proxy that refuses the request (http://, forwarded) or the tunnel (https://) fails
    discovery with an error naming the proxy without its password, through a real Client."""
    with HostileServer(refusing_proxy) as proxy:
        proxy_url = proxy.url().replace("://", f"://bob:{PASSWORD}@")
        client = Client(
            SESSION,
            gateway=f"{scheme}://127.0.0.1:1",
            proxy=proxy_url,
            ssl_context=ssl.create_default_context(),
            reconnect=False,
        )
        with pytest.raises(DiscoveryError, match="403") as caught:
            client.connect(timeout=T)
        client.close()
    assert_hidden(caught.value, caught_logs)
    if scheme == "https":
        assert f"the proxy {proxy.url()} refused the tunnel" in str(caught.value)


@pytest.mark.parametrize(
    "value",
    [
        f"socks5://bob:{PASSWORD}@127.0.0.1:1080",
        f"http://bob:{PASSWORD}@[::1",
        f"https://bob:{PASSWORD}@proxy.example:3128",
    ],
)
def test_unusable_environment_proxy_errors_hide_the_password(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ValueError for an unusable environment proxy never shows its password."""
    monkeypatch.setenv("HTTPS_PROXY", value)
    with pytest.raises(ValueError, match="only http://host:port") as caught:
        proxy_for("wss://gateway.example", None)
    assert PASSWORD not in str(caught.value)


def test_tls_warnings_hide_the_password(caught_logs: pytest.LogCaptureFixture) -> None:
    """The warning about a context that does not verify shows the URL without its password."""
    insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    tls_context(insecure, f"wss://bob:{PASSWORD}@gateway.example")
    messages = [r.getMessage() for r in caught_logs.records]
    assert any("bob:[redacted]@gateway.example" in m for m in messages)
    assert not [m for m in messages if PASSWORD in m]
