"""Security: the session id never shows, handshake redirects are refused, and a hostile
gateway cannot exhaust the client's memory."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import traceback
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Callable

import pytest

from hatsu_sync import (
    Client,
    ClientClosed,
    Connected,
    ConnectError,
    Disconnected,
    DiscoveryError,
    GatewayClosed,
)
from hatsu_sync.testing import SAMPLE_EVENTS, LocalGateway

from .conftest import SESSION, T, take_until

ROOT = Path(__file__).resolve().parent.parent
# A fragment of SESSION that nothing else contains: a truncated copy counts as a leak too.
FRAGMENT = SESSION[5:16]
LOGGERS = ("", "hatsu_sync", "websocket", "urllib3")
MiB = 2**20


@pytest.fixture(autouse=True)
def no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback is reached directly, whatever proxy the machine's environment names."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


# -- the session id ------------------------------------------------------------------------------


class Haystack:
    """Everything the library showed: log records, reprs, exception messages, warnings."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._texts: list[str] = []

    def add(self, *texts: str) -> None:
        with self._lock:
            self._texts.extend(texts)

    def exception(self, exc: BaseException) -> None:
        """str, repr and the whole formatted traceback, causes and contexts included."""
        chain = traceback.format_exception(type(exc), exc, exc.__traceback__)
        self.add(str(exc), repr(exc), "".join(chain))

    def text(self) -> str:
        with self._lock:
            return "\n".join(self._texts)


class _Handler(logging.Handler):
    def __init__(self, seen: Haystack) -> None:
        super().__init__(logging.DEBUG)
        self.seen = seen
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        # The formatted line carries the traceback of exc_info and any stack_info.
        self.seen.add(self.format(record), repr(record.msg), repr(record.args))


@contextlib.contextmanager
def everything_captured(seen: Haystack) -> Iterator[None]:
    """Every log record at DEBUG (the root logger and the libraries'), and every warning."""
    handler = _Handler(seen)
    loggers = [logging.getLogger(name) for name in LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
            gc.collect()
        for warning in caught:
            seen.add(str(warning.message))
    finally:
        logging.getLogger().removeHandler(handler)
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def next_matching(inbox: queue.Queue[Any], predicate: Callable[[Any], bool]) -> Any:
    """The next item of ``inbox`` for which ``predicate`` holds (others are skipped)."""
    while True:
        item = inbox.get(timeout=T)
        if predicate(item):
            return item


def assert_no_session_id(text: str) -> None:
    assert SESSION not in text
    assert FRAGMENT not in text


@pytest.mark.parametrize("encoding", ["json", "zlib"])
def test_session_id_never_shows_through_a_full_cycle(encoding: str) -> None:
    """Through connect, events, bad frames, four kinds of reconnect and a fatal close, no log
    record at DEBUG, repr, exception, lifecycle notice or warning holds the session id."""
    seen = Haystack()
    with (
        everything_captured(seen),
        LocalGateway(session_ids={SESSION}, ping_interval=0.2, ping_timeout=T) as gw,
    ):
        client = Client(
            SESSION,
            gateway=gw.http_url,
            encoding=encoding,
            ping_interval=1.0,
            ping_timeout=0.9,
            backoff_base=0.01,
            backoff_max=0.05,
            max_message_size=64 * 1024,
        )
        connects: queue.Queue[Connected] = queue.Queue()
        disconnects: queue.Queue[Disconnected] = queue.Queue()

        def on_connect(info: Connected) -> None:
            seen.add(str(info), repr(info))
            connects.put(info)

        def on_disconnect(info: Disconnected) -> None:
            seen.add(str(info), repr(info))
            disconnects.put(info)

        def on_guild(event: Any) -> None:
            raise RuntimeError(f"this handler fails on every {event.name}")

        client.on("connect", on_connect)
        client.on("disconnect", on_disconnect)
        client.on("error", seen.exception)
        client.on("GUILD_CREATE", on_guild)
        seen.add(repr(client), repr(client.state))

        client.connect(timeout=T)
        connects.get(timeout=T)
        seen.add(repr(client), repr(client.state), repr(client.stats))
        ready = take_until(client, "READY")
        assert SESSION in ready.user["session_ids"]  # the secret did pass through the client

        # Events, then frames that quote the session id and cannot be delivered.
        gw.send_many(SAMPLE_EVENTS)
        gw.send_raw('{"t": "HELLO", "s": "' + SESSION + '", ')
        gw.send_raw(b'\x00not zlib, not text "' + SESSION.encode() + b'"')
        if encoding == "zlib":  # a corrupt stream: the client reconnects
            next_matching(disconnects, lambda info: "zlib" in info.reason)
            connects.get(timeout=T)
            gw.wait_for_clients(1)
        # Over max_message_size: the client fails the connection with 1009 and reconnects.
        gw.send_raw('{"t": "BIG", "s": "' + SESSION + '", "d": "' + "x" * 70_000 + '"}')
        next_matching(disconnects, lambda info: "1009" in info.reason)
        connects.get(timeout=T)
        gw.wait_for_clients(1)
        gw.send({"t": "MARK"})
        take_until(client, "MARK")
        client.send({"t": "HEARTBEAT", "s": 1})
        take_until(client, "ACK")

        # A close frame, a dropped TCP connection, then a silent gateway: each reconnects.
        gw.disconnect(1011, "restarting")
        next_matching(disconnects, lambda info: info.code == 1011)
        connects.get(timeout=T)
        gw.wait_for_clients(1)
        gw.abort()
        next_matching(disconnects, lambda info: info.code is None)
        connects.get(timeout=T)
        gw.wait_for_clients(1)
        gw.go_silent()
        next_matching(disconnects, lambda info: "keepalive" in info.reason)
        gw.resume()
        connects.get(timeout=T)
        seen.add(repr(client), repr(client.state), repr(client.stats))

        # The fatal close: every way of learning about it.
        gw.wait_for_clients(1)
        gw.disconnect(4002, "Invalid authorization")
        next_matching(disconnects, lambda info: info.code == 4002)
        for action in (
            lambda: [client.get_event(timeout=T) for _ in range(1000)],
            lambda: list(client.events(timeout=T)),
            lambda: client.wait(T),
        ):
            with pytest.raises(GatewayClosed) as fatal:
                action()
            seen.exception(fatal.value)
        for action in (lambda: client.connect(timeout=T), lambda: client.send({"t": "X"})):
            with pytest.raises(ClientClosed) as closed:
                action()
            seen.exception(closed.value)
        client.close()
        seen.add(repr(client), repr(client.state), repr(client.stats), repr(client._settings))

        # Failures before and after connecting, and a client nobody closed.
        other = Client(SESSION, gateway=gw.http_url, max_retries=2, backoff_base=0.01)
        other.connect(timeout=T)
        with pytest.raises(RuntimeError) as again:
            other.connect(timeout=T)
        seen.exception(again.value)
        gw.fail_discovery("500")
        gw.abort()
        with pytest.raises(ConnectError) as gave_up:
            other.wait(T)
        seen.exception(gave_up.value)
        with pytest.raises(DiscoveryError) as discovery:
            Client(SESSION, gateway=gw.http_url).connect(timeout=T)
        seen.exception(discovery.value)
        gw.fail_discovery(None)
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            refused = f"ws://127.0.0.1:{unused.getsockname()[1]}"
            with pytest.raises(ConnectError) as failed:
                Client(SESSION, url=refused).connect(timeout=T)
        seen.exception(failed.value)
        forgotten = Client(SESSION, gateway=gw.http_url)
        forgotten.connect(timeout=T)
        del forgotten

    text = seen.text()
    for expected in ("connected to", "discarded", "4002", "keepalive", "raised", "unclosed"):
        assert expected in text, f"{expected!r} was not captured: the capture is broken"
    assert_no_session_id(text)


class Output:
    """A child process's stdout and stderr, read on threads; wait for what they print."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._cond = threading.Condition()
        self._lines: list[str] = []
        assert proc.stdout is not None
        assert proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (proc.stdout, proc.stderr)
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()

    def wait_for(self, needle: str, count: int = 1) -> None:
        with self._cond:
            found = self._cond.wait_for(
                lambda: sum(needle in line for line in self._lines) >= count, timeout=T
            )
            assert found, f"{needle!r} x{count} not printed: {self._lines[-20:]!r}"

    def text(self) -> str:
        """Everything printed, once the process has ended."""
        for reader in self._readers:
            reader.join(T)
        with self._cond:
            return "".join(self._lines)


@pytest.mark.parametrize("how", ["--session-id", "HATSU_SESSION_ID"])
def test_cli_never_prints_the_session_id(how: str) -> None:
    """`hatsu-sync -v listen` (DEBUG logging on) prints no session id through events, bad
    frames, a reconnect and a fatal close, whichever way the id was given."""
    with LocalGateway(session_ids={SESSION}) as gw:
        args = ["--session-id", SESSION] if how == "--session-id" else []
        proc = subprocess.Popen(
            [sys.executable, "-m", "hatsu_sync", "-v", "listen", "--gateway", gw.http_url, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "HATSU_SESSION_ID": SESSION if how != "--session-id" else ""},
        )
        output = Output(proc)
        try:
            output.wait_for("connected to")
            gw.wait_for_clients(1)
            gw.send_many(SAMPLE_EVENTS)
            gw.send_raw('{"t": "HELLO", "s": "' + SESSION + '", ')
            gw.send({"t": "MARK"})
            output.wait_for("MARK")
            gw.disconnect(1011, "restarting")
            output.wait_for("connected to", count=2)
            gw.wait_for_clients(1)
            gw.disconnect(4002, "Invalid authorization")
            assert proc.wait(T) == 1
        finally:
            proc.kill()
            proc.wait(T)
            text = output.text()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
    for expected in ("READY", "MARK", "discarded", "hatsu_sync._discovery", "4002"):
        assert expected in text, f"{expected!r} was not printed"
    assert_no_session_id(text)


def test_session_id_echoed_in_a_close_reason_is_not_shown() -> None:
    """A gateway that echoes the session id in a close reason does not get it into the
    GatewayClosed message, the disconnect notice or the log."""
    seen = Haystack()
    with everything_captured(seen), LocalGateway() as gw:
        client = Client(SESSION, gateway=gw.http_url)
        client.on("disconnect", lambda info: seen.add(repr(info)))
        client.connect(timeout=T)
        gw.wait_for_clients(1)
        gw.disconnect(4002, f"unknown session {SESSION}")
        with pytest.raises(GatewayClosed) as fatal:
            client.wait(T)
        seen.exception(fatal.value)
        client.close()
    assert_no_session_id(seen.text())


def test_session_id_echoed_in_a_discovery_error_is_not_shown() -> None:
    """A gateway that, once it knows the session id, echoes it in a failing discovery answer
    does not get it into the log or the error that ends the client."""
    seen = Haystack()
    with everything_captured(seen), LocalGateway() as gw:
        client = Client(SESSION, gateway=gw.http_url, max_retries=1)
        client.connect(timeout=T)
        gw.wait_for_clients(1)
        gw.set_discovery_answer(500, f"no such session: {SESSION}")
        gw.abort()
        with pytest.raises(ConnectError) as gave_up:
            client.wait(T)
        seen.exception(gave_up.value)
        client.close()
    assert_no_session_id(seen.text())


def test_discovered_url_holding_the_session_id_is_refused() -> None:
    """A discovery answer whose URL holds the session id (known to the gateway only from an
    earlier identify) is refused: the id never goes into a request line, a Connected notice,
    the log or the client's repr."""
    seen = Haystack()
    with everything_captured(seen), LocalGateway() as gw:
        client = Client(SESSION, gateway=gw.http_url, max_retries=1, backoff_base=0.01)
        connects: list[Connected] = []

        def on_connect(info: Connected) -> None:
            seen.add(repr(info), repr(client))
            connects.append(info)
            if len(connects) > 1:
                client.close()  # it did connect there: end the test at once

        client.on("connect", on_connect)
        client.connect(timeout=T)
        gw.wait_for_clients(1)
        gw.set_discovery_answer(200, json.dumps({"url": f"{gw.ws_url}/?s={SESSION}"}))
        gw.abort()
        with pytest.raises(ConnectError) as gave_up:
            client.wait(T)
        seen.exception(gave_up.value)
        client.close()
    assert len(connects) == 1
    assert_no_session_id(seen.text())


# -- redirects ----------------------------------------------------------------------------------


def test_websocket_handshake_redirect_is_refused() -> None:
    """A 3xx answer to the websocket handshake is a ConnectError: the client never follows it
    (the identify, with the session id, could go to another host or to plain ws://)."""
    with (
        socket.create_server(("127.0.0.1", 0)) as target,
        socket.create_server(("127.0.0.1", 0)) as redirecting,
    ):
        location = f"ws://127.0.0.1:{target.getsockname()[1]}/"

        def answer() -> None:
            conn, _ = redirecting.accept()
            with conn:
                conn.settimeout(T)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                conn.sendall(
                    f"HTTP/1.1 302 Found\r\nLocation: {location}\r\n"
                    "Content-Length: 0\r\n\r\n".encode()
                )

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        url = f"ws://127.0.0.1:{redirecting.getsockname()[1]}"
        with pytest.raises(ConnectError, match=r"[Rr]edirect") as caught:
            Client(SESSION, url=url).connect(timeout=T)
        thread.join(T)
        assert url in str(caught.value)
        target.setblocking(False)
        with pytest.raises(BlockingIOError):
            target.accept()  # nobody came


# -- hostile gateways: memory ---------------------------------------------------------------------

# Runs in a child process, so that its peak RSS is the client's alone.
CLIENT_SCRIPT = r"""
import json, sys
from hatsu_sync import Client

def peak_rss():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024

url, encoding = sys.argv[1:]
client = Client("s", url=url, encoding=encoding, backoff_base=0.01, backoff_max=0.05)
client.connect(timeout=10)
assert [client.get_event(timeout=10).name for _ in range(2)] == ["HELLO", "READY"]
print(json.dumps({"baseline": peak_rss()}), flush=True)
while client.get_event(timeout=30).name != "AFTER":
    pass
stats = client.stats
print(json.dumps({
    "peak": peak_rss(), "decode_errors": stats.decode_errors, "reconnects": stats.reconnects,
    "state": client.state.name,
}), flush=True)
client.close()
"""


class ClientProcess:
    """A Client in a child process that reports its peak RSS before and after an attack."""

    def __init__(self, url: str, encoding: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLIENT_SCRIPT, url, encoding],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.errors: list[str] = []
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines.put)),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.errors.append)),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str], keep: Callable[[str], None]) -> None:
        for line in stream:
            keep(line)

    def report(self) -> dict[str, Any]:
        """The next JSON line the child prints (other lines are skipped)."""
        while True:
            try:
                line = self.lines.get(timeout=T * 6)  # the child itself waits up to 30 s
            except queue.Empty:
                self.proc.kill()
                self.proc.wait(T)
                for reader in self._readers:
                    reader.join(T)
                pytest.fail(f"the client process said nothing more; stderr: {self.stderr()}")
            if line.startswith("{"):
                return dict(json.loads(line))

    def stderr(self) -> str:
        """The end of what the child wrote to stderr so far."""
        return "".join(self.errors)[-2000:]

    def finish(self) -> None:
        """Wait for the child to exit 0; kill it otherwise. Its pipes are closed."""
        try:
            assert self.proc.wait(T * 2) == 0, self.stderr()
        finally:
            self.proc.kill()
            self.proc.wait(T)
            for reader in self._readers:
                reader.join(T)
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()


needs_rss = pytest.mark.skipif(
    not (Path("/proc/self/status").exists() or sys.platform == "darwin"),
    reason="peak RSS is read from /proc or getrusage",
)


@needs_rss
def test_50_mb_text_message_fails_the_connection_with_bounded_memory() -> None:
    """A 50 MB text message (the default limit is 16 MiB) is refused from its frame header:
    the client closes with 1009, counts one decode error, reconnects, delivers the next
    event, and its peak RSS grows by far less than the message."""
    with LocalGateway(send_timeout=60) as gw:
        child = ClientProcess(gw.ws_url, "json")
        try:
            baseline = child.report()["baseline"]
            gw.send_raw('{"t": "HUGE", "d": "' + "x" * (50 * 10**6) + '"}')
            gw.wait_for_closes(1, timeout=T * 4)  # the client failed the connection
            gw.wait_for_clients(1, timeout=T * 4)  # and identified again
            gw.send({"t": "AFTER"})
            after = child.report()
        finally:
            child.finish()
    assert gw.closes[0][0] == 1009
    assert (after["state"], after["decode_errors"], after["reconnects"]) == ("CONNECTED", 1, 1), (
        after
    )
    grown = after["peak"] - baseline
    assert grown < 8 * MiB, f"peak RSS grew by {grown / MiB:.1f} MiB"


def zlib_bomb_for_a_stream(inflated: int = 2**30) -> bytes:
    """About 1 MB of deflate blocks that inflate to ``inflated`` zero bytes and continue any
    zlib stream that sits at a full-flush boundary (as the gateway's does between messages)."""
    compressor, zeros = zlib.compressobj(), bytes(MiB)
    compressor.compress(zeros)
    compressor.flush(zlib.Z_FULL_FLUSH)  # the header and first block: not part of the bomb
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * (inflated // MiB)


@needs_rss
def test_zlib_bomb_is_stopped_with_bounded_memory() -> None:
    """A 1 MB zlib message inflating to 1 GiB is stopped at the 16 MiB limit: the client
    reconnects with a fresh stream, delivers the next event, and its peak RSS stays far
    below what the bomb holds."""
    bomb = zlib_bomb_for_a_stream()
    assert len(bomb) < 2 * MiB
    with LocalGateway(send_timeout=60) as gw:
        child = ClientProcess(gw.ws_url, "zlib")
        try:
            baseline = child.report()["baseline"]
            gw.send_raw(bomb)
            gw.wait_for_closes(1)  # the client dropped the broken stream
            gw.wait_for_clients(1)  # and identified again
            gw.send({"t": "AFTER"})
            after = child.report()
        finally:
            child.finish()
    assert (after["state"], after["decode_errors"], after["reconnects"]) == ("CONNECTED", 1, 1), (
        after
    )
    grown = after["peak"] - baseline
    # Inflating stops one byte past the limit (16 MiB), in a buffer zlib grows by copying, so
    # up to about twice the limit is expected; the bomb holds 1 GiB.
    assert grown < 48 * MiB, f"peak RSS grew by {grown / MiB:.1f} MiB"


# -- hostile gateways: discovery ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('{"port": 0}', "out of range 1-65535"),
        ('{"port": 65536}', "out of range 1-65535"),
        ('"ftp://127.0.0.1:21"', "unsupported scheme 'ftp'"),
        ('{"url": "file:///etc/passwd"}', "unsupported scheme 'file'"),
    ],
)
def test_unusable_discovery_answer_stops_before_any_websocket(body: str, problem: str) -> None:
    """A port outside 1-65535 or a URL of another scheme fails connect() with a
    DiscoveryError that says why, and no websocket connection is attempted."""
    with LocalGateway() as gw:
        gw.set_discovery_answer(200, body)
        with pytest.raises(DiscoveryError, match=problem):
            Client(SESSION, gateway=gw.http_url).connect(timeout=T)
        assert gw.connections == 0
