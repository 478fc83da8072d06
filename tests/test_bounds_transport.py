"""The transport's bounds under hostile gateways: write deadlines, attempt deadlines, header
bounds, refused extensions, the backoff rule, the shared timer thread, and redaction."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

from hatsu_sync import Client, Connected, ConnectError, Disconnected, Event, GatewayClosed
from hatsu_sync._state import Deadline, State
from hatsu_sync._transport import Settings, Supervisor
from hatsu_sync.exceptions import DecodeError, HatsuError
from hatsu_sync.testing import LocalGateway

from .conftest import SESSION, T, client_threads, eventually, take
from .hostile_ws import PING, PONG, HostileServer, Peer, hold
from .test_resilience import Lifecycle

CHILD_ENV = dict(os.environ)  # children import this worktree's hatsu_sync (PYTHONPATH)
BIG = {"x": "a" * 900_000}  # under the 1 MiB send limit; a few of them fill any window


def _quick(**kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("backoff_max", 0.05)
    return kwargs


# -- a gateway that stops reading -----------------------------------------------------------------


def _stalls_first_then_serves(peer: Peer) -> None:
    peer.accept()
    peer.hello()
    if peer.number == 1:
        # Reads nothing more, but keeps talking: only the write deadline can notice.
        while not peer.server.stopped.wait(0.05):
            peer.send_event("TICK")
        return
    peer.serve()


def _send_until_it_fails(client: Client) -> tuple[ConnectError, float]:
    """Send big messages until one raises; return its error and when it started."""
    for _ in range(100):
        started = time.monotonic()
        try:
            client.send(BIG)
        except ConnectError as exc:
            return exc, started
    pytest.fail("every send went through")


def test_stopped_reader_costs_a_send_its_deadline_then_reconnects() -> None:
    """A gateway that stops reading (but keeps sending) makes the blocked send() raise within
    its write deadline (ping_timeout), and the connection is dropped and made again."""
    interval, timeout = 1.0, 0.5
    with HostileServer(_stalls_first_then_serves, rcvbuf=4096) as server:
        client = Client(
            SESSION, url=server.url, **_quick(ping_interval=interval, ping_timeout=timeout)
        )
        life = Lifecycle(client)
        try:
            client.connect(timeout=T)
            caught, started = _send_until_it_fails(client)
            blocked = time.monotonic() - started
            assert blocked < timeout + 0.5, blocked
            assert "still blocked" in str(caught)
            dropped = life.wait(Disconnected, 1)[0]
            assert "still blocked" in dropped.reason
            assert dropped.reconnecting
            life.wait(Connected, 2)
            assert time.monotonic() - started < interval + timeout + 0.5
            client.send({"op": "after"})  # the new connection takes writes
        finally:
            client.close(timeout=T)


def _stalls(peer: Peer) -> None:
    peer.accept()
    peer.hello()
    hold(peer)


class _Pump:
    """Sends big messages from a thread until a send fails; knows how long the current one
    has been blocked."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.since: float | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="test-pump")
        self.thread.start()

    def _run(self) -> None:
        try:
            while True:
                self.since = time.monotonic()
                self.client.send(BIG)
        except HatsuError as exc:
            self.error = exc

    def blocked_for(self) -> float:
        since = self.since
        return 0.0 if since is None else time.monotonic() - since


def test_close_keeps_its_timeout_while_a_write_is_blocked() -> None:
    """close(timeout=1) returns within about 1 s while a send is blocked on a gateway that
    stopped reading (whose write deadline is 20 s away), and the blocked send then raises."""
    with HostileServer(_stalls, rcvbuf=4096) as server:
        client = Client(SESSION, url=server.url, ping_interval=30.0, ping_timeout=20.0)
        client.connect(timeout=T)
        pump = _Pump(client)
        eventually(lambda: pump.blocked_for() > 0.3, what="a send to block")
        started = time.monotonic()
        client.close(timeout=1.0)
        assert time.monotonic() - started < 1.3
        pump.thread.join(T)
        assert not pump.thread.is_alive()
        assert isinstance(pump.error, HatsuError)
        assert client.state is State.CLOSED


_EXIT_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    from hatsu_sync import Client

    client = Client("s-exit-test", url=sys.argv[1], ping_interval=30, ping_timeout=20)
    client.connect(timeout=5)
    since = []

    def pump():
        try:
            while True:
                since[:] = [time.monotonic()]
                client.send({"x": "a" * 900_000})
        except Exception:
            pass

    threading.Thread(target=pump, daemon=True).start()
    while not (since and time.monotonic() - since[0] > 0.3):
        time.sleep(0.01)
    print("blocked", flush=True)
    sys.exit(0)  # never closes the client: the atexit hook does, within its 1 s
    """
)


@pytest.mark.parametrize("run", range(3))
def test_interpreter_exits_promptly_with_a_blocked_writer(run: int) -> None:
    """A program whose send is blocked on a gateway that stopped reading still exits within
    the atexit hook's deadline."""
    with HostileServer(_stalls, rcvbuf=4096) as server:
        proc = subprocess.Popen(
            [sys.executable, "-c", _EXIT_SCRIPT, server.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=CHILD_ENV,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "blocked"
            started = time.monotonic()
            proc.wait(timeout=T)
            assert time.monotonic() - started < 2.5
        finally:
            proc.kill()
            proc.communicate()
        assert proc.returncode == 0


# -- the attempt's total deadline -----------------------------------------------------------------


def _drips_headers(peer: Peer) -> None:
    peer.read_request()
    peer.sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\n")
    while not peer.server.stopped.wait(0.1):
        peer.sock.sendall(b"X")  # one byte of a header line every 0.1 s, for ever


def test_dripped_handshake_fails_within_the_connect_timeout() -> None:
    """A handshake answer dripped a byte at a time fails connect(timeout=1) within about 1 s,
    and leaves no thread behind."""
    with HostileServer(_drips_headers) as server:
        client = Client(SESSION, url=server.url)
        started = time.monotonic()
        with pytest.raises(ConnectError) as caught:
            client.connect(timeout=1.0)
        assert time.monotonic() - started < 1.5
        assert server.url in str(caught.value)
        assert not client_threads()
        assert client.state is State.IDLE


def _serves_first_then_drips(peer: Peer) -> None:
    if peer.number == 1:
        peer.accept()
        peer.hello()
        peer.send_close(1011, "restarting")
        peer.serve()
        return
    _drips_headers(peer)


def test_dripped_handshake_on_reconnect_counts_toward_max_retries() -> None:
    """On reconnect a dripped handshake is a failed attempt ended by the attempt's deadline,
    so max_retries is reached instead of stalling for ever."""
    with HostileServer(_serves_first_then_drips) as server:
        client = Client(SESSION, url=server.url, **_quick(max_retries=3))
        try:
            client.connect(timeout=0.5)
            started = time.monotonic()
            with pytest.raises(ConnectError) as caught:
                client.wait(T)
            # The closed connection, then two attempts of 0.5 s each.
            assert time.monotonic() - started < 2 * 0.5 + 1.0
            assert "3 failed attempt" in str(caught.value)
            assert server.connections == 3
        finally:
            client.close(timeout=T)


# -- bounded handshake headers --------------------------------------------------------------------


def _endless_header(peer: Peer) -> None:
    peer.read_request()
    peer.sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nX-Junk: ")
    chunk = b"a" * 65536
    while not peer.server.stopped.is_set():
        peer.sock.sendall(chunk)


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from hatsu_sync import Client, ConnectError

    def kib(field):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])

    client = Client("s-memory-test", url=sys.argv[1])
    before = kib("VmRSS")
    started = time.monotonic()
    try:
        client.connect(timeout=10)
        error = None
    except ConnectError as exc:
        error = str(exc)
    elapsed = time.monotonic() - started
    print(json.dumps({"error": error, "elapsed": elapsed, "growth": kib("VmHWM") - before}))
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_endless_header_line_fails_fast_with_bounded_memory() -> None:
    """One endless handshake header line fails the attempt at once (far within its timeout)
    and the process's peak memory hardly grows."""
    with HostileServer(_endless_header) as server:
        proc = subprocess.run(
            [sys.executable, "-c", _MEMORY_SCRIPT, server.url],
            capture_output=True,
            text=True,
            timeout=T * 2,
            env=CHILD_ENV,
        )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["error"] is not None
    assert "header line over" in result["error"]
    assert result["elapsed"] < 1.0
    assert result["growth"] < 8 * 1024, result  # KiB


def _huge_headers(peer: Peer) -> None:
    peer.read_request()
    line = b"X-Junk: " + b"a" * 1000 + b"\r\n"
    # All at once, then quiet: a server thread that kept sending would only measure the GIL.
    peer.sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\n" + line * 70)
    hold(peer)


def test_too_many_header_bytes_fail_the_attempt() -> None:
    """Handshake headers past 64 KiB in all (each line short) fail the attempt at once."""
    with HostileServer(_huge_headers) as server:
        client = Client(SESSION, url=server.url)
        started = time.monotonic()
        with pytest.raises(ConnectError, match="headers are over 65536 bytes"):
            client.connect(timeout=T * 2)
        assert time.monotonic() - started < T / 2  # the budget ended it, not the deadline


# -- extensions and subprotocols ------------------------------------------------------------------


def _offers(header: str) -> Any:
    def handler(peer: Peer) -> None:
        peer.accept([header])
        while True:
            peer.recv_frame()  # records whatever the client sends, until it goes

    return handler


@pytest.mark.parametrize(
    ("header", "word"),
    [
        ("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=15", "extension"),
        ("Sec-WebSocket-Protocol: chat", "subprotocol"),
    ],
)
def test_unrequested_extension_or_subprotocol_is_refused_before_identify(
    header: str, word: str
) -> None:
    """A handshake answer that enables an extension or a subprotocol the client never asked
    for fails the attempt with a ConnectError, and no identify reaches the server."""
    with HostileServer(_offers(header)) as server:
        client = Client(SESSION, url=server.url)
        with pytest.raises(ConnectError, match=word):
            client.connect(timeout=T)
        server.wait_for(lambda: server.finished, T)
        assert server.peers[0].frames == []


# -- the backoff rule -----------------------------------------------------------------------------


def _hello_then_close(peer: Peer) -> None:
    peer.accept()
    peer.hello()
    peer.send_close(1011, "bye")
    peer.serve()


def test_hello_then_close_is_a_series_of_failed_attempts() -> None:
    """A gateway that sends HELLO and closes at once never resets the backoff: max_retries
    ends it, and get_event() then raises the ConnectError chained to the last failure."""
    with HostileServer(_hello_then_close) as server:
        client = Client(SESSION, url=server.url, **_quick(max_retries=3))
        try:
            client.connect(timeout=T)
            with pytest.raises(ConnectError) as caught:
                client.wait(T)
            assert "3 failed attempt" in str(caught.value)
            assert isinstance(caught.value.__cause__, GatewayClosed)
            assert server.connections == 3
            with pytest.raises(ConnectError) as pulled:
                for _ in client.events():
                    pass
            assert isinstance(pulled.value.__cause__, GatewayClosed)
            assert pulled.value.__cause__.code == 1011
        finally:
            client.close(timeout=T)


def _pings_then_serves(peer: Peer) -> None:
    peer.accept()
    peer.hello()
    peer.send_frame(PING, b"are you there")
    peer.serve()


def test_server_ping_is_answered() -> None:
    """A server ping is answered with a pong carrying its payload (through the writer)."""
    with HostileServer(_pings_then_serves) as server:
        client = Client(SESSION, url=server.url, ping_interval=None)
        try:
            client.connect(timeout=T)
            server.wait_for(lambda: (PONG, b"are you there") in server.peers[0].frames[1:], T)
        finally:
            client.close(timeout=1.0)  # this server never answers the close frame


# -- threads --------------------------------------------------------------------------------------


def test_connected_clients_share_one_timer_thread(gateway: LocalGateway) -> None:
    """Each connected client costs at most two threads; keepalive runs on one shared timer."""
    clients = [
        Client(f"{SESSION}-{i}", url=gateway.ws_url, ping_interval=5.0, ping_timeout=2.0)
        for i in range(3)
    ]
    try:
        for client in clients:
            client.connect(timeout=T)
        names = [thread.name for thread in client_threads()]
        assert names.count("hatsu-sync-timer") == 1, names
        assert len(names) <= 2 * len(clients) + 1, names
    finally:
        for client in clients:
            client.close(timeout=T)


_FORK_SCRIPT = textwrap.dedent(
    """
    import os, sys, threading
    from hatsu_sync import Client

    url = sys.argv[1]
    parent = Client("s-parent-test", url=url, ping_interval=0.3, ping_timeout=0.2)
    parent.connect(timeout=5)
    parent.get_event(timeout=5)
    pid = os.fork()
    if pid == 0:
        child = Client("s-child-test", url=url, ping_interval=0.3, ping_timeout=0.2)
        child.connect(timeout=5)
        child.get_event(timeout=5)
        timers = [t for t in threading.enumerate() if t.name == "hatsu-sync-timer"]
        # Several ping intervals: the child's keepalive must work, and leave the parent alone.
        ok = child.wait(1.0) is False and len(timers) == 1 and child.stats.reconnects == 0
        child.close(timeout=2)
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode")
          else status >> 8, parent.state.value, parent.stats.reconnects, flush=True)
    parent.close(timeout=2)
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_timer_works_in_a_forked_child_and_spares_the_parent(gateway: LocalGateway) -> None:
    """After fork, a client created in the child gets a working timer thread of its own, and
    the parent's connection goes on undisturbed."""
    proc = subprocess.run(
        [sys.executable, "-c", _FORK_SCRIPT, gateway.ws_url],
        capture_output=True,
        text=True,
        timeout=T * 3,
        env=CHILD_ENV,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "connected", "0"], (proc.stdout, proc.stderr)


# -- retry_first_connect (through the Supervisor: the Client keyword comes with the client) -----


class _Recorder:
    """A Listener that records what the supervisor reports."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.outcome: list[HatsuError | None] = []

    def deliver(self, event: Event) -> None:
        pass

    def flush(self) -> None:
        pass

    def decode_failed(self, error: DecodeError) -> None:
        pass

    def connected(self, url: str) -> None:
        self.urls.append(url)

    def disconnected(self, info: Disconnected) -> None:
        pass

    def state_changed(self, state: State) -> None:
        pass

    def finished(self, error: HatsuError | None) -> None:
        self.outcome.append(error)


def _settings(url: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "session_id": SESSION,
        "gateway": "http://127.0.0.1:9",
        "url": url,
        "encoding": "json",
        "ping_interval": None,
        "ping_timeout": None,
        "reconnect": True,
        "max_retries": None,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "max_message_size": 2**20,
        "fatal_close_codes": frozenset(),
        "ssl_context": None,
        "proxy": None,
    }
    values.update(changes)
    return Settings(**values)


def _refuses_first_two(peer: Peer) -> None:
    if peer.number <= 2:
        peer.sock.close()  # the handshake fails
        return
    peer.accept()
    peer.hello()
    peer.serve()


@pytest.mark.parametrize("retry", [False, True])
def test_retry_first_connect(retry: bool) -> None:
    """With retry_first_connect, failed first attempts are retried under the backoff policy
    until one connects; without it, the first failure is raised."""
    with HostileServer(_refuses_first_two) as server:
        recorder = _Recorder()
        supervisor = Supervisor(_settings(server.url, retry_first_connect=retry), recorder)
        try:
            if retry:
                supervisor.start(T)
                assert recorder.urls == [server.url]
                assert server.connections == 3
            else:
                with pytest.raises(ConnectError):
                    supervisor.start(T)
                assert server.connections == 1
        finally:
            supervisor.stop(Deadline(T))


def _refuses(peer: Peer) -> None:
    peer.sock.close()


def test_retry_first_connect_is_bounded_by_the_connect_timeout() -> None:
    """retry_first_connect gives up within the connect timeout, with a ConnectError chained to
    the last failure, after more than one attempt."""
    with HostileServer(_refuses) as server:
        supervisor = Supervisor(
            _settings(server.url, retry_first_connect=True, backoff_base=0.05), _Recorder()
        )
        started = time.monotonic()
        with pytest.raises(ConnectError) as caught:
            supervisor.start(1.0)
        assert time.monotonic() - started < 1.5
        assert caught.value.__cause__ is not None
        assert server.connections >= 2
        supervisor.stop(Deadline(T))


# -- redaction ------------------------------------------------------------------------------------


def test_short_session_id_connects_and_does_not_garble(gateway: LocalGateway) -> None:
    """Session id "1" connects through discovery to a 127.0.0.1 gateway, and a short id is
    redacted as a token only, never inside other words."""
    client = Client("1", gateway=gateway.http_url, **_quick())
    life = Lifecycle(client)
    try:
        client.connect(timeout=T)
        assert [e.name for e in take(client, 2)] == ["HELLO", "READY"]
        gateway.wait_for_clients(1, timeout=T)
        gateway.disconnect(1011, "box 1 of 1.5")
        assert life.wait(Disconnected, 1)[0].reason == "box [redacted] of 1.5"
    finally:
        client.close(timeout=T)


def test_url_passwords_are_never_shown(
    gateway: LocalGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """A password in the websocket or proxy URL shows in neither Connected.url, the logs, nor
    the client's settings (vars(client))."""
    caplog.set_level(logging.DEBUG, logger="hatsu_sync")
    url = gateway.ws_url.replace("://", "://user:hunter2@")
    client = Client(SESSION, url=url, **_quick())
    life = Lifecycle(client)
    try:
        client.connect(timeout=T)
        assert life.wait(Connected, 1)[0].url == gateway.ws_url.replace(
            "://", "://user:[redacted]@"
        )
        gateway.abort()
        life.wait(Connected, 2)
        shown = repr(vars(client)) + repr(client) + caplog.text
        assert "hunter2" not in shown
        assert SESSION not in shown
    finally:
        client.close(timeout=T)
    proxied = Client(SESSION, url=gateway.ws_url, proxy="http://bob:hunter2@127.0.0.1:3128")
    assert "hunter2" not in repr(vars(proxied))
    assert SESSION not in repr(vars(proxied))
