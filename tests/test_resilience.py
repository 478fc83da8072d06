"""Faults: reconnects, keepalive, fatal closes, stopping, leaks, bad frames, and a stress run."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from typing import Any, Callable

import pytest

from hatsu_sync import (
    Client,
    ClientClosed,
    Connected,
    ConnectError,
    DecodeError,
    Disconnected,
    Event,
    GatewayClosed,
    PresenceUpdate,
    State,
)
from hatsu_sync._transport import backoff_delay
from hatsu_sync.testing import LocalGateway

from .conftest import SESSION, T, client_threads, eventually, take, take_until

MakeClient = Callable[..., Client]


class Lifecycle:
    """Records 'connect' and 'disconnect' notices and lets a test wait for the n-th one."""

    def __init__(self, client: Client) -> None:
        self.items: list[Connected | Disconnected] = []
        self._changed = threading.Condition()
        client.on("connect", self._add)
        client.on("disconnect", self._add)

    def _add(self, item: Connected | Disconnected) -> None:
        with self._changed:
            self.items.append(item)
            self._changed.notify_all()

    def of(self, kind: type[Any]) -> list[Any]:
        with self._changed:
            return [item for item in self.items if isinstance(item, kind)]

    def wait(self, kind: type[Any], n: int, timeout: float = T) -> list[Any]:
        with self._changed:
            ok = self._changed.wait_for(lambda: len(self.of(kind)) >= n, timeout)
        assert ok, f"expected {n} {kind.__name__}, got {self.items!r}"
        return self.of(kind)


# -- backoff


def test_backoff_bounds() -> None:
    """The delay is rand() * min(cap, base * 2**attempt): 0 at rand 0, the bound just under 1."""
    assert backoff_delay(0, 1.0, 60.0, rand=lambda: 0.0) == 0.0
    assert backoff_delay(0, 1.0, 60.0, rand=lambda: 0.5) == 0.5
    assert backoff_delay(3, 1.0, 60.0, rand=lambda: 0.999) == pytest.approx(7.992)
    assert backoff_delay(10, 1.0, 60.0, rand=lambda: 0.5) == 30.0  # capped at backoff_max
    assert backoff_delay(10_000, 1.0, 60.0, rand=lambda: 1.0) == 60.0  # no overflow


def test_backoff_is_full_jitter() -> None:
    """Delays are spread uniformly over [0, bound): mean near bound/2, deciles all populated."""
    rng = random.Random(1234)
    bound = 4.0  # attempt 2, base 1
    delays = [backoff_delay(2, 1.0, 60.0, rand=rng.random) for _ in range(20_000)]
    assert all(0.0 <= d < bound for d in delays)
    assert sum(delays) / len(delays) == pytest.approx(bound / 2, rel=0.03)
    deciles = [0] * 10
    for d in delays:
        deciles[int(d / bound * 10)] += 1
    assert all(abs(count - 2000) < 250 for count in deciles), deciles


# -- unexpected loss -> reconnect


@pytest.mark.parametrize("encoding", ["json", "zlib"])
def test_abort_reconnects_with_fresh_discovery_identify_and_zlib(
    gateway: LocalGateway, make_client: MakeClient, encoding: str
) -> None:
    """After an abort the client runs discovery, identifies again and decodes a new zlib stream."""
    client = make_client(encoding=encoding)
    life = Lifecycle(client)
    client.connect(timeout=T)
    gateway.wait_for_clients(1, timeout=T)  # the gateway has the identify
    gateway.send({"t": "BEFORE", "d": 1})
    assert take_until(client, "BEFORE").data == 1
    requests_before = gateway.discovery_requests

    gateway.abort()
    life.wait(Connected, 2)
    gateway.wait_for_clients(1, timeout=T)
    gateway.send({"t": "AFTER", "d": 2})
    assert [e.name for e in take(client, 3)] == ["HELLO", "READY", "AFTER"]

    disconnected = life.of(Disconnected)[0]
    assert disconnected.code is None
    assert disconnected.reconnecting is True
    assert gateway.discovery_requests == requests_before + 1
    assert [i["session_id"] for i in gateway.identifies] == [SESSION, SESSION]
    assert client.stats.reconnects == 1
    assert client.stats.decode_errors == 0
    assert client.state is State.CONNECTED


def test_close_1011_reconnects(gateway: LocalGateway, make_client: MakeClient) -> None:
    """A 1011 close is not fatal: 'disconnect' says (1011, reason, True), then it reconnects."""
    client = make_client()
    life = Lifecycle(client)
    client.connect(timeout=T)
    gateway.disconnect(1011, "keepalive ping timeout")
    life.wait(Connected, 2)
    assert life.of(Disconnected)[0] == Disconnected(1011, "keepalive ping timeout", True)
    assert [type(i).__name__ for i in life.items] == ["Connected", "Disconnected", "Connected"]


def test_gateway_full_4003_is_retried(gateway: LocalGateway, make_client: MakeClient) -> None:
    """4003 (gateway full) is retried, unlike the fatal codes."""
    client = make_client()
    life = Lifecycle(client)
    client.connect(timeout=T)
    gateway.disconnect(4003, "Too much users on WebSocket")
    life.wait(Connected, 2)
    assert client.stats.reconnects == 1


def test_reconnect_follows_a_port_change(gateway: LocalGateway, make_client: MakeClient) -> None:
    """When the gateway comes back on a new port, discovery leads the client there."""
    client = make_client()
    life = Lifecycle(client)
    client.connect(timeout=T)
    old_url = gateway.ws_url
    gateway.restart(new_port=True)
    assert gateway.ws_url != old_url
    connected = life.wait(Connected, 2)
    assert connected[1].url == gateway.ws_url


def test_attempt_count_resets_after_a_healthy_connection(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """With max_retries=2, one failed attempt per outage never adds up to giving up, when each
    connection was healthy (delivered, and up for ping_interval) before it was lost."""
    interval = 0.2
    client = make_client(max_retries=2, ping_interval=interval, ping_timeout=0.1)
    life = Lifecycle(client)
    client.connect(timeout=T)
    take(client, 2)  # HELLO and READY: the connection has delivered
    for outage in range(1, 4):
        time.sleep(interval * 1.5)  # the stimulus: the connection stays up past ping_interval
        gateway.fail_discovery("500", times=1)  # the first attempt of each outage fails
        gateway.abort()
        life.wait(Connected, outage + 1)
        assert [e.name for e in take(client, 2)] == ["HELLO", "READY"]  # the new connection's
    assert client.state is State.CONNECTED
    assert client.stats.reconnects == 3


# -- fatal closes, reconnect=False, max_retries ---------------------------------------------------


@pytest.mark.parametrize("code", [1002, 1003, 1007, 1008, 4001, 4002, 4004])
def test_fatal_close_codes_stop_the_client(
    gateway: LocalGateway, make_client: MakeClient, code: int
) -> None:
    """Each default fatal close code closes the client with GatewayClosed; no new attempt."""
    client = make_client()
    life = Lifecycle(client)
    client.connect(timeout=T)
    gateway.wait_for_clients(1, timeout=T)  # the gateway has the identify
    gateway.send({"t": "LAST", "d": None})
    take_until(client, "LAST")
    gateway.send({"t": "BUFFERED", "d": None})
    eventually(lambda: client.stats.events_received == 4)
    gateway.disconnect(code, "no")
    with pytest.raises(GatewayClosed) as caught:
        client.wait(T)
    assert (caught.value.code, caught.value.reason) == (code, "no")
    assert client.get_event(timeout=0).name == "BUFFERED"  # buffered events first
    with pytest.raises(GatewayClosed):
        client.get_event(timeout=T)
    with pytest.raises(GatewayClosed):
        list(client.events())
    assert life.wait(Disconnected, 1)[0] == Disconnected(code, "no", False)
    assert gateway.connections == 1
    assert gateway.discovery_requests == 1
    assert len(life.of(Connected)) == 1


def test_custom_fatal_close_codes(gateway: LocalGateway, make_client: MakeClient) -> None:
    """fatal_close_codes replaces the default set."""
    client = make_client(fatal_close_codes={4003})
    client.connect(timeout=T)
    gateway.disconnect(4003, "full")
    with pytest.raises(GatewayClosed) as caught:
        client.wait(T)
    assert caught.value.code == 4003


def test_max_retries_gives_up_with_the_last_error(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """max_retries consecutive failed attempts close the client with ConnectError."""
    client = make_client(max_retries=3)
    life = Lifecycle(client)
    client.connect(timeout=T)
    eventually(lambda: client.stats.events_received == 2, what="HELLO and READY")
    gateway.fail_discovery("500")
    requests_before = gateway.discovery_requests
    gateway.abort()
    with pytest.raises(ConnectError) as caught:
        client.wait(T)
    assert "3 failed attempt" in str(caught.value)
    assert caught.value.__cause__ is not None
    assert "500" in str(caught.value.__cause__)
    # The lost connection was never healthy (not up for ping_interval): it is the first of
    # the three failed attempts, the two failed discoveries the others.
    assert gateway.discovery_requests == requests_before + 2
    names: list[str] = []
    with pytest.raises(ConnectError):
        names.extend(e.name for e in client.events())  # buffered events, then the error
    assert names == ["HELLO", "READY"]
    with pytest.raises(ConnectError):
        client.get_event()
    assert life.wait(Disconnected, 1)[0].reconnecting is True
    assert client.state is State.CLOSED


def test_max_retries_zero_gives_up_at_the_first_loss(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """max_retries=0 never retries: the first loss closes the client with ConnectError."""
    client = make_client(max_retries=0)
    life = Lifecycle(client)
    client.connect(timeout=T)
    gateway.disconnect(1011, "bye")
    with pytest.raises(ConnectError):
        client.wait(T)
    assert life.wait(Disconnected, 1)[0] == Disconnected(1011, "bye", False)
    assert gateway.connections == 1


# -- keepalive


def test_silent_server_is_noticed_then_reconnected(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """A silent server is dropped within ping_interval + ping_timeout, then the client returns."""
    interval, timeout = 0.3, 0.2
    client = make_client(ping_interval=interval, ping_timeout=timeout)
    life = Lifecycle(client)
    client.connect(timeout=1.0)
    take(client, 2)
    gateway.go_silent()
    silent_at = time.monotonic()
    dropped = life.wait(Disconnected, 1)[0]
    noticed = time.monotonic() - silent_at
    assert noticed <= interval + timeout + 0.3, noticed
    assert "keepalive" in dropped.reason
    assert dropped.reconnecting
    gateway.resume()
    life.wait(Connected, 2, timeout=T * 2)
    assert take_until(client, "HELLO")


def test_blocked_callback_costs_nothing(make_client: MakeClient) -> None:
    """A handler blocked far past the gateway's ping deadline: pings answered, events buffered."""
    with LocalGateway(ping_interval=0.1, ping_timeout=0.1) as gw:
        client = make_client(gateway=gw.http_url, ping_interval=0.2, ping_timeout=0.1)
        life = Lifecycle(client)
        entered, release = threading.Event(), threading.Event()

        @client.on("BLOCK")
        def block(event: Event) -> None:
            entered.set()
            release.wait(T)

        client.connect(timeout=T)
        gw.wait_for_clients(1, timeout=T)  # the gateway has the identify
        gw.send({"t": "BLOCK", "d": None})
        assert entered.wait(T)
        # Hold the callback thread for 15 of the gateway's ping deadlines.
        pings_done = threading.Event()
        threading.Timer(1.5, pings_done.set).start()
        sent = 0
        while not pings_done.wait(0.05):
            gw.send({"t": "TICK", "d": sent})
            sent += 1
        release.set()
        ticks = [e.data for e in client.events(timeout=1.0) if e.name == "TICK"]
        assert ticks == list(range(sent))
        assert gw.closes == []
        assert life.of(Disconnected) == []
        assert client.state is State.CONNECTED


# -- stopping


def test_close_during_backoff_returns_at_once(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """close() during a long backoff wait returns at once and no attempt follows."""
    client = make_client(backoff_base=30.0, backoff_max=60.0)
    life = Lifecycle(client)
    client.connect(timeout=T)
    gateway.fail_discovery("500")
    gateway.abort()
    life.wait(Disconnected, 1)
    eventually(lambda: client.state is State.RECONNECTING)
    requests = gateway.discovery_requests
    started = time.monotonic()
    client.close(timeout=T)
    assert time.monotonic() - started < 1.0
    assert not client_threads()
    assert gateway.discovery_requests == requests


def test_close_while_connecting(gateway: LocalGateway, make_client: MakeClient) -> None:
    """close() from another thread while connect() waits on a silent gateway ends both."""
    client = make_client()
    gateway.go_silent()  # TCP accepted, handshake never answered
    outcome: list[BaseException] = []

    def connect() -> None:
        try:
            client.connect(timeout=T * 2)
        except BaseException as exc:
            outcome.append(exc)

    connecting = threading.Thread(target=connect)
    connecting.start()
    eventually(lambda: gateway.connections >= 1, what="the TCP connection")
    started = time.monotonic()
    client.close(timeout=T)
    connecting.join(T)
    assert time.monotonic() - started < 2.0
    assert len(outcome) == 1
    assert isinstance(outcome[0], ClientClosed)
    assert client.state is State.CLOSED


_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from hatsu_sync import Client
    client = Client("s", url=sys.argv[1])
    client.connect(timeout=5)
    what = sys.argv[2]
    try:
        print("ready", flush=True)
        if what == "get_event":
            while True:
                client.get_event()
        elif what == "wait":
            client.wait()
        elif what == "exit":
            client.get_event(timeout=5)  # HELLO: the gateway has taken the identify
            sys.exit(0)  # never closes the client
    except KeyboardInterrupt:
        started = time.monotonic()
        client.close()
        print("interrupted", round(time.monotonic() - started, 3), flush=True)
    """
)


@pytest.mark.parametrize("blocked_in", ["get_event", "wait"])
def test_ctrl_c_interrupts_a_blocked_call(gateway: LocalGateway, blocked_in: str) -> None:
    """Ctrl-C in the main thread interrupts get_event() or wait() promptly."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, gateway.ws_url, blocked_in],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A child still running at the deadline is made to print every thread's stack.
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        gateway.wait_for_clients(1, timeout=T)
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=T)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate(timeout=T)
            raise AssertionError(f"still running {T} s after SIGINT:\n{out}\n{err}") from None
    finally:
        proc.kill()
    assert out.startswith("interrupted"), (out, err)
    assert proc.returncode == 0, (out, err)


def test_interpreter_exits_without_close(gateway: LocalGateway) -> None:
    """A script that never calls close() still exits at once, saying goodbye with a close frame."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, gateway.ws_url, "exit"],
        capture_output=True,
        text=True,
        timeout=T * 2,
    )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < T
    gateway.wait_for_closes(1, timeout=T)
    assert gateway.closes[0][0] == 1000


# -- no leaks


def _open_fds() -> int:
    return len(os.listdir(f"/proc/{os.getpid()}/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_connect_close_cycles_leak_nothing(gateway: LocalGateway) -> None:
    """50 connect/close cycles leave threads and file descriptors where they started."""
    Client(SESSION, url=gateway.ws_url)  # warm up imports and caches
    threads, fds = threading.active_count(), _open_fds()
    for _ in range(50):
        client = Client(SESSION, gateway=gateway.http_url)
        client.connect(timeout=T)
        client.get_event(timeout=T)
        client.close(timeout=T)
    eventually(lambda: threading.active_count() == threads, what="threads to return")
    eventually(lambda: _open_fds() <= fds, what="file descriptors to return")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_reconnects_leak_nothing(gateway: LocalGateway, make_client: MakeClient) -> None:
    """50 reconnects of one client leave threads and file descriptors where they started."""
    client = make_client(backoff_base=0.001, backoff_max=0.002)
    life = Lifecycle(client)
    client.connect(timeout=T)
    life.wait(Connected, 1)
    gateway.wait_for_clients(1, timeout=T)
    threads, fds = threading.active_count(), _open_fds()
    for n in range(2, 52):
        gateway.abort()
        life.wait(Connected, n)
        gateway.wait_for_clients(1, timeout=T)
    assert client.stats.reconnects == 50
    eventually(lambda: threading.active_count() == threads, what="threads to return")
    eventually(lambda: _open_fds() <= fds, what="file descriptors to return")


# -- bad frames


def _bomb(size: int) -> bytes:
    """A zlib stream that inflates to ``size`` zero bytes (built without the whole output)."""
    compressor = zlib.compressobj()
    chunk = bytes(1 << 20)
    parts = [compressor.compress(chunk) for _ in range(size >> 20)]
    return b"".join(parts) + compressor.flush(zlib.Z_FULL_FLUSH)


def test_bad_json_frames_are_counted_and_skipped(
    gateway: LocalGateway, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Malformed frames are counted, reported and logged; every valid event arrives in order."""
    client = make_client(max_message_size=64 * 1024)
    errors: list[BaseException] = []
    client.on("error", errors.append)
    client.connect(timeout=T)
    take(client, 2)
    bad: list[Callable[[], Any]] = [
        lambda: gateway.send_raw("{not json"),
        lambda: gateway.send_raw("[1, 2, 3]"),
        lambda: gateway.send_raw('{"d": "no t"}'),
        lambda: gateway.send_raw('{"t": 42, "d": null}'),
        lambda: gateway.send_raw(b'{"t": "BINARY_IN_JSON_MODE"}'),
        lambda: gateway.send_raw(b"\xff\xfe not utf-8"),
        # A message over max_message_size fails the connection (1009) since the second
        # release: tests/test_wire_strictness.py covers it.
    ]
    with caplog.at_level(logging.WARNING, logger="hatsu_sync"):
        for seq, send_bad in enumerate(bad):
            gateway.send({"t": "SEQ", "d": seq})
            send_bad()
        gateway.send({"t": "SEQ", "d": len(bad)})
        # Wrong field types are not errors: the event arrives, as a base Event.
        gateway.send({"t": "PRESENCE_UPDATE", "id": "1", "d": ["not", "an", "object"]})
        events = take(client, len(bad) + 2)
    assert [e.data for e in events[:-1]] == list(range(len(bad) + 1))
    assert type(events[-1]) is Event
    assert not isinstance(events[-1], PresenceUpdate)
    assert client.stats.decode_errors == len(bad)
    eventually(lambda: len(errors) == len(bad))
    assert all(isinstance(e, DecodeError) for e in errors)
    assert len([r for r in caplog.records if "discarded" in r.getMessage()]) == len(bad)
    assert client.stats.reconnects == 0
    assert client.state is State.CONNECTED


@pytest.mark.parametrize(
    "garbage",
    [b"\x00\x01garbage that is not deflate\x00\x00\xff\xff", _bomb(64 << 20)],
    ids=["corrupt", "bomb"],
)
def test_broken_zlib_stream_reconnects(
    gateway: LocalGateway, make_client: MakeClient, garbage: bytes
) -> None:
    """A corrupt zlib message or a bomb is a decode error; the client reconnects and goes on."""
    client = make_client(encoding="zlib", max_message_size=1 << 20)
    life = Lifecycle(client)
    errors: list[BaseException] = []
    client.on("error", errors.append)
    client.connect(timeout=T)
    gateway.wait_for_clients(1, timeout=T)  # the gateway has the identify
    gateway.send({"t": "SEQ", "d": 0})
    assert take_until(client, "SEQ").data == 0
    gateway.send_raw(garbage)
    life.wait(Connected, 2)
    gateway.wait_for_clients(1, timeout=T)
    gateway.send({"t": "SEQ", "d": 1})
    assert take_until(client, "SEQ").data == 1
    assert client.stats.decode_errors == 1
    assert client.stats.reconnects == 1
    eventually(lambda: errors)
    assert isinstance(errors[0], DecodeError)
    assert errors[0].fatal


def test_text_in_zlib_mode_is_plain_json(gateway: LocalGateway, make_client: MakeClient) -> None:
    """A text message in zlib mode is read as plain JSON, between compressed ones."""
    client = make_client(encoding="zlib")
    client.connect(timeout=T)
    take(client, 2)
    gateway.send({"t": "SEQ", "d": 0})
    gateway.send_raw('{"t": "SEQ", "d": 1}')
    gateway.send({"t": "SEQ", "d": 2})
    assert [e.data for e in take(client, 3)] == [0, 1, 2]


# -- stress


def test_stress_100k_events_across_10_reconnects(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """100,000 numbered events, 10 forced reconnects: each event sent while connected arrives
    exactly once and in order; the ones sent while away are counted separately."""
    client = make_client(max_queue=200_000, backoff_base=0.001, backoff_max=0.01)
    life = Lifecycle(client)
    client.connect(timeout=T)
    received: list[int] = []

    def consume() -> None:
        for event in client.events(timeout=T):
            if event.name == "SEQ":
                received.append(event.data)
                if event.data == 99_999:
                    return

    consumer = threading.Thread(target=consume)
    consumer.start()
    delivered: list[int] = []
    missed = 0
    gateway.wait_for_clients(1, timeout=T)
    for seq in range(100_000):
        if gateway.send({"t": "SEQ", "d": seq}):
            delivered.append(seq)
        else:
            missed += 1
        if seq % 10_000 == 5_000:
            gateway.disconnect(1011, "forced")
        elif seq % 10_000 == 7_500 or seq == 99_998:
            gateway.wait_for_clients(1, timeout=T)  # sends resume to a connected client
    consumer.join(T * 4)
    assert not consumer.is_alive()
    assert received == delivered
    assert len(delivered) + missed == 100_000
    assert len(life.wait(Connected, 11)) == 11
    assert client.stats.events_dropped == 0
    assert client.stats.decode_errors == 0
