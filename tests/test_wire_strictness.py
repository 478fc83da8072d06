"""Frames that break RFC 6455, through the real client over loopback: the close code it sends.

A hand-written raw-socket websocket server sends, on the first connection, a valid event and
then the bad bytes, and on every later connection a valid event. The client must answer the
violation with a close frame carrying the RFC's code (1002, 1007, or 1009 for a message over
``max_message_size``), count it in ``stats.decode_errors``, give it to "error" handlers as a
fatal DecodeError with that ``close_code``, and reconnect.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from hatsu_sync import Client, DecodeError, Disconnected, State

from .conftest import SESSION, T, eventually, take_until
from .test_frames import BINARY, CONT, TEXT, VIOLATIONS, frame

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
LIMIT = 1 << 16  # the limit the VIOLATIONS cases are written for


class RawGateway:
    """A websocket server written on raw sockets: it sends exactly the bytes it is given.

    Connection ``i`` gets the handshake, waits for the identify, then gets
    ``scripts[i]`` (or :attr:`later` once the scripts run out). ``flood`` keeps sending
    junk after the first script until the client closes. For every connection it records the
    code of the first close frame the client sent (None when none came before EOF).
    """

    def __init__(self, scripts: list[bytes], later: bytes, flood: bool = False) -> None:
        self.scripts = scripts
        self.later = later
        self.flood = flood
        self.closes: list[int | None] = []
        self.flooded = 0  # junk bytes sent before the client's close frame arrived
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._connections = 0
        self.url = f"ws://127.0.0.1:{self._listener.getsockname()[1]}/"
        self._spawn(self._accept)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        # Polled: closing a listening socket does not wake a thread blocked in accept().
        self._listener.settimeout(0.05)
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.settimeout(None)
            with self._cond:
                number = self._connections
                self._connections += 1
                self._socks.append(sock)
            self._spawn(self._serve, sock, number)

    def _serve(self, sock: socket.socket, number: int) -> None:
        code: int | None = None
        try:
            sock.settimeout(T * 2)
            reader = _ClientFrames(sock)
            request = reader.until(b"\r\n\r\n").decode("latin-1")
            key = next(
                line.split(":", 1)[1].strip()
                for line in request.split("\r\n")
                if line.lower().startswith("sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
            sock.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
            )
            reader.frame()  # the identify
            script = self.scripts[number] if number < len(self.scripts) else self.later
            sock.sendall(script)
            if self.flood and number == 0:
                self._spawn(self._flood, sock)
            while code is None:
                opcode, payload = reader.frame()
                if opcode == 0x8:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                    break
        except (OSError, ConnectionError):
            pass
        finally:
            with self._cond:
                self.closes.append(code)
                self._cond.notify_all()
            # Answer no close frame: the client fails the connection, it does not wait.
            sock.close()

    def _flood(self, sock: socket.socket) -> None:
        junk = b"\x00" * (1 << 16)
        deadline = time.monotonic() + T * 2
        while time.monotonic() < deadline and not self._stopping.is_set():
            with self._cond:
                if self.closes:  # the client's close frame came
                    return
            try:
                sock.sendall(junk)
            except OSError:
                return
            with self._cond:
                self.flooded += len(junk)

    def wait_closes(self, n: int) -> list[int | None]:
        """The close codes of the first ``n`` connections, once they have ended."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.closes) >= n, T):
                pytest.fail(f"only {len(self.closes)} of {n} connections ended")
            return list(self.closes)

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        with self._cond:
            socks = list(self._socks)
        for sock in socks:
            sock.close()
        for thread in self._threads:
            thread.join(T)


class _ClientFrames:
    """Reads the client's (masked) frames from a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("EOF")
        self.buf += data

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(marker, 1)
        return head

    def take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def frame(self) -> tuple[int, bytes]:
        b1, b2 = self.take(2)
        length = b2 & 0x7F
        if length == 126:
            length = int.from_bytes(self.take(2), "big")
        elif length == 127:
            length = int.from_bytes(self.take(8), "big")
        mask = self.take(4) if b2 & 0x80 else b"\x00" * 4
        payload = self.take(length)
        return b1 & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def event(name: str) -> bytes:
    return frame(TEXT, json.dumps({"t": name, "d": None}).encode())


@pytest.fixture
def run_client() -> Iterator[Any]:
    """Runs one client against a RawGateway; both are stopped at teardown."""
    made: list[tuple[Client, RawGateway]] = []

    def run(
        bad: bytes, *, encoding: str = "json", flood: bool = False
    ) -> tuple[Client, RawGateway, list[BaseException], list[Disconnected]]:
        gateway = RawGateway([event("FIRST") + bad], event("BACK"), flood=flood)
        client = Client(
            SESSION,
            url=gateway.url,
            encoding=encoding,
            ping_interval=None,
            max_message_size=LIMIT,
            backoff_base=0.01,
            backoff_max=0.05,
        )
        made.append((client, gateway))
        errors: list[BaseException] = []
        disconnects: list[Disconnected] = []
        client.on("error", errors.append)
        client.on("disconnect", disconnects.append)
        client.connect(timeout=T)
        assert take_until(client, "FIRST").name == "FIRST"
        assert take_until(client, "BACK").name == "BACK"  # reconnected after the violation
        return client, gateway, errors, disconnects

    yield run
    for client, gateway in made:
        client.close(timeout=T)
        gateway.stop()


def check_failed_with(
    code: int,
    client: Client,
    gateway: RawGateway,
    errors: list[BaseException],
    disconnects: list[Disconnected],
) -> None:
    """The client closed the first connection with ``code``, counted and reported it as a
    fatal DecodeError with that close_code, and reconnected."""
    assert gateway.wait_closes(1)[0] == code
    assert client.stats.decode_errors == 1
    assert client.stats.reconnects == 1
    assert client.state is State.CONNECTED
    eventually(lambda: errors and disconnects, what="the error and disconnect callbacks")
    [error] = errors
    assert isinstance(error, DecodeError)
    assert (error.fatal, error.close_code) == (True, code)
    assert SESSION not in str(error)
    assert disconnects[0].reconnecting
    assert disconnects[0].code is None  # the code is the client's own, never a fatal one


@pytest.mark.parametrize(
    ("bad", "code"), [c[1:] for c in VIOLATIONS], ids=[c[0] for c in VIOLATIONS]
)
def test_violation_fails_the_connection_with_its_code(
    run_client: Any, bad: bytes, code: int
) -> None:
    """Each raw violation makes the real client send a close frame with the RFC's code,
    count it, report it to "error" handlers, and reconnect."""
    check_failed_with(code, *run_client(bad))


@pytest.mark.parametrize("encoding", ["json", "zlib"])
def test_oversized_message_fails_with_1009_in_both_modes(run_client: Any, encoding: str) -> None:
    """A binary or text message over max_message_size fails the connection with 1009 and the
    client reconnects, in json and zlib mode alike."""
    big = frame(BINARY, b"\x00" * (LIMIT + 1))
    check_failed_with(1009, *run_client(big, encoding=encoding))


def test_fragmented_message_over_the_limit_fails_with_1009(run_client: Any) -> None:
    """A fragmented text message whose fragments pass max_message_size fails with 1009."""
    half = b"x" * (LIMIT // 2 + 1)
    bad = frame(TEXT, b'{"t": "X", "d": "' + half, fin=False) + frame(CONT, half + b'"}')
    check_failed_with(1009, *run_client(bad))


def test_inflated_zlib_message_over_the_limit_fails_with_1009(run_client: Any) -> None:
    """A small zlib message inflating past max_message_size fails the connection with 1009."""
    compressor = zlib.compressobj()
    bomb = compressor.compress(bytes(LIMIT * 4)) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert len(bomb) < LIMIT
    check_failed_with(1009, *run_client(frame(BINARY, bomb), encoding="zlib"))


def test_corrupt_zlib_stream_fails_with_1007(run_client: Any) -> None:
    """Corrupt zlib data fails the connection with 1007 and reports that close code."""
    bad = frame(BINARY, b"\x00\x01 not deflate \x00\x00\xff\xff")
    check_failed_with(1007, *run_client(bad, encoding="zlib"))


def test_endless_frame_is_refused_while_junk_flows(run_client: Any) -> None:
    """A frame announcing 2^63-1 bytes followed by an endless flow of junk is refused from
    its header: the client closes with 1009 after reading at most a few reads of junk."""
    header = frame(BINARY, b"", length=2**63 - 1)
    client, gateway, errors, disconnects = run_client(header, flood=True)
    check_failed_with(1009, client, gateway, errors, disconnects)
    # The client stopped at once: the junk did not flow for the flood's whole 10 s.
    assert gateway.flooded < 256 << 20


def test_valid_tricky_traffic_goes_on(run_client: Any) -> None:
    """Valid but unusual framing (a split multi-byte character across fragments, pings and
    an empty final continuation) is delivered and the connection goes on."""
    text = json.dumps({"t": "SPLIT", "d": "日本"}, ensure_ascii=False).encode()
    cut = text.index("本".encode()) + 1
    stream = (
        frame(TEXT, text[:cut], fin=False)
        + frame(0x9, b"ping")
        + frame(CONT, text[cut:], fin=False)
        + frame(CONT)
    )
    gateway = RawGateway([event("FIRST") + stream + event("LAST")], event("BACK"))
    client = Client(SESSION, url=gateway.url, ping_interval=None, max_message_size=LIMIT)
    try:
        client.connect(timeout=T)
        names = [client.get_event(timeout=T) for _ in range(3)]
        assert [e.name for e in names] == ["FIRST", "SPLIT", "LAST"]
        assert names[1].data == "日本"
        assert client.stats.decode_errors == 0
        assert client.stats.reconnects == 0
    finally:
        client.close(timeout=T)
        gateway.stop()
