"""TLS: https:// discovery and wss:// verified by default, and ssl_context for a private CA."""

from __future__ import annotations

import json
import logging
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from hatsu_sync import Client, ConnectError, DiscoveryError
from hatsu_sync._discovery import discover
from hatsu_sync.testing import LocalGateway

from .conftest import SESSION, T, trust_settings
from .hostile_http import HostileServer, answer

trustme = pytest.importorskip("trustme")

VERIFY_FAILED = "certificate verify failed"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "WEBSOCKET_CLIENT_CA_BUNDLE")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy and no CA bundle from the environment unless a test sets one."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name in (*CA_VARIABLES, "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture(scope="module")
def trusting(ca: Any) -> ssl.SSLContext:
    """A client context that trusts the test CA (and only it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(context)
    return context


def server_context(ca: Any, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


@pytest.fixture
def gw(ca: Any) -> Iterator[LocalGateway]:
    """A LocalGateway over TLS, with a certificate for localhost from the test CA."""
    with LocalGateway(ssl_context=server_context(ca, "localhost")) as gateway:
        yield gateway


@pytest.fixture
def clients() -> Iterator[Callable[..., Client]]:
    """Make clients; every one is closed at teardown."""
    made: list[Client] = []

    def make(**kwargs: Any) -> Client:
        kwargs.setdefault("backoff_base", 0.01)
        kwargs.setdefault("backoff_max", 0.05)
        client = Client(SESSION, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close(timeout=T)


def both_hops(gw: LocalGateway) -> list[tuple[str, dict[str, str], type[ConnectError]]]:
    """Discovery then the websocket, and the error each raises: (hop, Client kwargs, error)."""
    return [
        ("discovery", {"gateway": gw.http_url}, DiscoveryError),
        ("websocket", {"url": gw.ws_url}, ConnectError),
    ]


def test_local_gateway_serves_https_and_wss(gw: LocalGateway) -> None:
    """With an ssl_context the LocalGateway's URLs are https:// and wss:// on localhost."""
    assert gw.http_url == f"https://localhost:{gw.http_port}"
    assert gw.ws_url == f"wss://localhost:{gw.ws_port}"
    assert "https://localhost" in repr(gw)
    assert "wss://localhost" in repr(gw)


def test_local_gateway_refuses_a_client_side_context() -> None:
    """A client-side context cannot serve TLS: LocalGateway says so at once."""
    with pytest.raises(ValueError, match="client-side"):
        LocalGateway(ssl_context=ssl.create_default_context())


def test_default_refuses_an_unknown_ca(gw: LocalGateway, clients: Callable[..., Client]) -> None:
    """By default both hops verify the certificate: an unknown CA fails each with an error
    that names the verification failure, and no identify is sent."""
    for hop, kwargs, error in both_hops(gw):
        client = clients(**kwargs)
        with pytest.raises(error, match=VERIFY_FAILED) as caught:
            client.connect(timeout=T)
        if hop == "websocket":
            assert not isinstance(caught.value, DiscoveryError)
            assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
            assert gw.ws_url in str(caught.value)
        assert SESSION not in str(caught.value)
    assert gw.discovery_requests == 0
    assert gw.identifies == []


def test_ssl_context_trusting_the_ca_is_used_for_both_hops(
    gw: LocalGateway, trusting: ssl.SSLContext, clients: Callable[..., Client]
) -> None:
    """An ssl_context trusting the test CA is accepted for discovery and the websocket, again
    after a reconnect, and the context is left as it was."""
    before = (trusting.cert_store_stats(), trusting.verify_mode, trusting.check_hostname)
    client = clients(gateway=gw.http_url, ssl_context=trusting)
    client.connect(timeout=T)
    assert [client.get_event(timeout=T).name for _ in range(2)] == ["HELLO", "READY"]
    gw.disconnect(1011)
    assert [client.get_event(timeout=T).name for _ in range(2)] == ["HELLO", "READY"]
    assert gw.discovery_requests == 2
    assert [i["session_id"] for i in gw.identifies] == [SESSION, SESSION]
    assert (trusting.cert_store_stats(), trusting.verify_mode, trusting.check_hostname) == before


def test_wrong_host_name_is_refused(
    ca: Any, trusting: ssl.SSLContext, clients: Callable[..., Client]
) -> None:
    """A certificate from a trusted CA but for another host name fails both hops."""
    with LocalGateway(ssl_context=server_context(ca, "gateway.example")) as gw:
        for _hop, kwargs, error in both_hops(gw):
            client = clients(ssl_context=trusting, **kwargs)
            with pytest.raises(error, match="Hostname mismatch"):
                client.connect(timeout=T)
        assert gw.identifies == []


def test_ip_address_not_in_the_certificate_is_refused(
    gw: LocalGateway, trusting: ssl.SSLContext, clients: Callable[..., Client]
) -> None:
    """Reaching a localhost-only certificate by its IP address fails the host name check."""
    by_ip = gw.ws_url.replace("localhost", "127.0.0.1")
    client = clients(url=by_ip, ssl_context=trusting)
    with pytest.raises(ConnectError, match="IP address mismatch"):
        client.connect(timeout=T)
    assert gw.identifies == []


def test_one_librarys_ca_variables_do_not_change_trust(
    gw: LocalGateway,
    ca: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    clients: Callable[..., Client],
) -> None:
    """REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and WEBSOCKET_CLIENT_CA_BUNDLE, which only one of the
    two hops' libraries reads, change nothing: both hops still refuse the unknown CA."""
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    for name in CA_VARIABLES:
        monkeypatch.setenv(name, str(bundle))
    for _hop, kwargs, error in both_hops(gw):
        with pytest.raises(error, match=VERIFY_FAILED):
            clients(**kwargs).connect(timeout=T)


def test_ssl_cert_file_moves_the_default_trust_store_for_both_hops(
    gw: LocalGateway,
    ca: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    clients: Callable[..., Client],
) -> None:
    """The default trust store is OpenSSL's, for both hops alike: SSL_CERT_FILE moves it."""
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    client = clients(gateway=gw.http_url)
    client.connect(timeout=T)
    assert client.get_event(timeout=T).name == "HELLO"
    assert gw.discovery_requests == 1


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_a_context_that_does_not_verify_warns_on_every_connect(
    gw: LocalGateway, clients: Callable[..., Client], caplog: pytest.LogCaptureFixture
) -> None:
    """A caller's context with verification off is obeyed, but each hop of each connection
    logs a warning that says so."""
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    client = clients(gateway=gw.http_url, ssl_context=insecure)
    with caplog.at_level(logging.WARNING, logger="hatsu_sync"):
        client.connect(timeout=T)
        assert client.get_event(timeout=T).name == "HELLO"
        gw.disconnect(1011)
        assert [client.get_event(timeout=T).name for _ in range(2)] == ["READY", "HELLO"]
    warnings = [r for r in caplog.records if "is not verified" in r.getMessage()]
    assert len(warnings) == 4  # discovery and websocket, twice
    assert {gw.http_url + "/available", gw.ws_url} <= {
        word for r in warnings for word in r.getMessage().split()
    }


def test_a_context_without_host_name_checks_warns(
    gw: LocalGateway,
    trusting: ssl.SSLContext,
    clients: Callable[..., Client],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A caller's context with check_hostname off logs a warning on connect."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cadata=trusting.get_ca_certs(binary_form=True)[0])
    client = clients(url=gw.ws_url, ssl_context=context)
    with caplog.at_level(logging.WARNING, logger="hatsu_sync"):
        client.connect(timeout=T)
    assert any("does not check the host name" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("form", ["url-object", "json-string", "plain-text", "http-url"])
def test_https_discovery_naming_plain_ws_is_refused(
    gw: LocalGateway, trusting: ssl.SSLContext, clients: Callable[..., Client], form: str
) -> None:
    """An https:// discovery answer that names a plain ws:// URL, in any form, fails connect()
    with a DiscoveryError saying why, and no websocket connection is made."""
    with LocalGateway() as plain:
        bodies = {
            "url-object": json.dumps({"url": plain.ws_url}),
            "json-string": json.dumps(plain.ws_url),
            "plain-text": plain.ws_url,
            "http-url": plain.ws_url.replace("ws://", "http://"),
        }
        gw.set_discovery_answer(200, bodies[form])
        client = clients(gateway=gw.http_url, ssl_context=trusting)
        with pytest.raises(DiscoveryError, match="session id unencrypted") as caught:
            client.connect(timeout=T)
        assert plain.ws_url in str(caught.value)
        assert "url=" in str(caught.value)
        assert plain.connections == 0
        # Reaching the plain gateway on purpose still works.
        direct = clients(url=plain.ws_url)
        direct.connect(timeout=T)
        assert direct.get_event(timeout=T).name == "HELLO"


def lenient_context(ca: Any) -> ssl.SSLContext:
    """Trusts the test CA, checks no host name, asks for a certificate without requiring it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(context)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def test_check_hostname_off_rules_both_hops_and_the_context_is_unchanged(
    ca: Any, clients: Callable[..., Client]
) -> None:
    """With check_hostname off (and CERT_OPTIONAL), a certificate for another host name is
    accepted by discovery and by the websocket alike, on connect and on reconnect, and the
    caller's context comes back exactly as it was (CERT_OPTIONAL stays CERT_OPTIONAL)."""
    with LocalGateway(ssl_context=server_context(ca, "gateway.example")) as gw:
        context = lenient_context(ca)
        before = trust_settings(context)
        client = clients(gateway=gw.http_url, ssl_context=context)
        client.connect(timeout=T)
        assert [client.get_event(timeout=T).name for _ in range(2)] == ["HELLO", "READY"]
        gw.disconnect(1011)
        assert [client.get_event(timeout=T).name for _ in range(2)] == ["HELLO", "READY"]
        assert gw.discovery_requests == 2
        assert trust_settings(context) == before
        assert context.verify_mode == ssl.CERT_OPTIONAL


@pytest.mark.parametrize("check_hostname", [False, True])
def test_discovery_on_an_ip_address_follows_check_hostname(ca: Any, check_hostname: bool) -> None:
    """discover() to 127.0.0.1 whose certificate names another host succeeds with
    check_hostname off and fails with it on, as the websocket hop does."""

    def port_answer(conn: socket.socket, server: HostileServer) -> None:
        answer(conn, server, "200 OK", b'{"port": 4443}')

    with HostileServer(port_answer, tls=server_context(ca, "gateway.example")) as server:
        context = lenient_context(ca)
        context.check_hostname = check_hostname
        before = trust_settings(context)
        if check_hostname:
            with pytest.raises(DiscoveryError, match="IP address mismatch") as caught:
                discover(server.url("https"), timeout=T, ssl_context=context)
            assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
        else:
            assert discover(server.url("https"), timeout=T, ssl_context=context) == (
                "wss://127.0.0.1:4443"
            )
        assert trust_settings(context) == before
