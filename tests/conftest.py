"""Shared fixtures: a LocalGateway on loopback, clients that are always closed, leak checks."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from hatsu_sync import Client, _redact
from hatsu_sync.testing import LocalGateway

# Every wait in the tests scales with this one constant.
T = 5.0

SESSION = "sess-8c1f-SECRET-do-not-leak"


def eventually(predicate: Callable[[], Any], timeout: float = T, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


def client_threads() -> list[threading.Thread]:
    """The threads a hatsu_sync Client owns that are alive now."""
    return [t for t in threading.enumerate() if t.name.startswith("hatsu-sync")]


@pytest.fixture(autouse=True)
def registered_secrets_stay_in_their_test() -> Iterator[None]:
    """Every Client registers its session id for redaction, process-wide and for good; a test's
    short ids (session id "1") must not redact the next test's output ("1 reconnect")."""
    saved = _redact._known
    yield
    _redact._known = saved


@pytest.fixture(autouse=True)
def no_thread_left() -> Iterator[None]:
    """Every test must end with no client thread running."""
    yield
    eventually(lambda: not client_threads(), what="client threads to end")


@pytest.fixture
def gateway() -> Iterator[LocalGateway]:
    with LocalGateway() as gw:
        yield gw


@pytest.fixture
def make_client(gateway: LocalGateway) -> Iterator[Callable[..., Client]]:
    """Build clients pointed at the gateway's discovery URL; all are closed at teardown."""
    clients: list[Client] = []

    def make(session_id: str = SESSION, **kwargs: Any) -> Client:
        kwargs.setdefault("gateway", gateway.http_url)
        kwargs.setdefault("backoff_base", 0.01)
        kwargs.setdefault("backoff_max", 0.05)
        client = Client(session_id, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=T)


def take(client: Client, n: int, timeout: float = T) -> list[Any]:
    """The next ``n`` events of ``client``."""
    return [client.get_event(timeout=timeout) for _ in range(n)]


def take_until(client: Client, name: str, timeout: float = T) -> Any:
    """Skip events until one named ``name``; return it."""
    while True:
        event = client.get_event(timeout=timeout)
        if event.name == name:
            return event


def trust_settings(context: ssl.SSLContext) -> tuple[Any, ...]:
    """Everything about a context that deciding trust could change."""
    return (
        context.verify_mode,
        context.check_hostname,
        context.options,
        context.verify_flags,
        context.minimum_version,
        context.cert_store_stats(),
        len(context.get_ca_certs()),
    )
