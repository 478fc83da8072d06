"""A real hatsu gateway on loopback, for tests, demos and your own test suite.

:class:`LocalGateway` runs both endpoints of the deployed gateway in background threads: the
discovery endpoint (``GET /available`` answers ``{"port": WS_PORT}``) and the websocket endpoint,
which behaves like the deployed server (docs/protocol.rst): it waits for the identify, closes with
4002 / 4004 / 4001 on a bad one, sends HELLO then READY (its ``d`` a JSON document encoded as a
string), encodes in ``json`` (text frames) or ``zlib`` (one deflate stream per connection, full
flushes, fragmented binary messages), answers HEARTBEAT with ACK, fans a client's PRESENCE out
as PRESENCE_UPDATE to every identified client (the sender too) and pings its clients.

On top of that it can misbehave on demand, for testing how a client copes: :meth:`abort`,
:meth:`disconnect`, :meth:`go_silent`, :meth:`fail_discovery`, :meth:`set_discovery_answer`,
:meth:`restart`, :meth:`send_raw`.

Using it in your own test suite (pytest)::

    import pytest

    from hatsu_sync import Client
    from hatsu_sync.testing import LocalGateway


    @pytest.fixture
    def gateway():
        with LocalGateway(session_ids={"test-session"}) as gw:
            yield gw


    def test_my_bot_sees_presence_updates(gateway):
        with Client("test-session", gateway=gateway.http_url) as client:
            gateway.wait_for_clients(1)
            gateway.send({"t": "PRESENCE_UPDATE", "id": "42", "d": {"type": 1}})
            names = [client.get_event(timeout=5).name for _ in range(3)]
        assert names == ["HELLO", "READY", "PRESENCE_UPDATE"]

Everything here binds to 127.0.0.1 on free ports by default, never logs session ids or message
contents, and :meth:`LocalGateway.stop` leaves no thread behind.

Given a server-side ``ssl_context``, both endpoints speak TLS: ``https://`` discovery and
``wss://``, with ``localhost`` as the URLs' host, for instance with a test CA from the
``trustme`` package::

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with LocalGateway(ssl_context=server_context) as gw:
        client = Client("test-session", gateway=gw.http_url, ssl_context=client_context)
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import secrets
import selectors
import socket
import socketserver
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from ._samples import SAMPLE_EVENTS

__all__ = ["DEFAULT_USER", "SAMPLE_EVENTS", "LocalGateway"]

logger = logging.getLogger(__name__)

#: The user that READY carries by default (``session_ids`` is filled in per connection).
DEFAULT_USER: Mapping[str, Any] = {
    "_id": "100000000000000001",
    "username": "local-user",
    "separator": "0001",
    "avatar_url": None,
    "banner_url": None,
    "flags": 0,
    "verified": False,
    "system": False,
}

HELLO_INFO = "Connected to the hatsu gateway (hatsu_sync.testing.LocalGateway)."

_FRAGMENT_SIZE = 1024
# How long a closing connection waits for the client's close frame and TCP close.
_CLOSE_TIMEOUT = 2.0
# send_many() releases a connection's lock after about this many bytes, so that the connection
# thread can answer pings in between.
_SEND_BATCH_BYTES = 256 * 1024
_RECV_SIZE = 64 * 1024
# The longest a gateway thread sleeps without looking at its flags (it is woken before that).
_IDLE_WAKE = 1.0
# What RFC 6455 lets an endpoint put in a close frame.
_SENDABLE_CLOSE_CODES = frozenset(
    [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]
) | frozenset(range(3000, 5000))
_DISCOVERY_PATHS = ("/available", "/port")
_GARBAGE_BODY = b"<html><body><h1>It works!</h1></body></html>\n"
_ERROR_BODY = b"Internal Server Error"
_DISCOVERY_MODES = (None, "500", "garbage", "hang")
_gateway_numbers = itertools.count(1)

if TYPE_CHECKING:
    _LoggerAdapter = logging.LoggerAdapter[logging.Logger]
else:
    _LoggerAdapter = logging.LoggerAdapter


class _ProtocolLogger(_LoggerAdapter):
    """The logger handed to websockets: its DEBUG lines show frame contents (the identify holds
    the session id), so DEBUG is off whatever the configuration."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        pass


_PROTOCOL_LOGGER = _ProtocolLogger(logging.getLogger(__name__ + ".protocol"), {})

# Frame header bits; _RAW_TEXT and _RAW_BINARY are also the opcodes of send_raw() frames.
_FIN, _CONTINUATION, _RAW_TEXT, _RAW_BINARY = 0x80, 0x0, 0x1, 0x2
_TEXT, _BINARY = _RAW_TEXT, _RAW_BINARY
_MESSAGE = -1  # a deliver() kind: a JSON message in the connection's encoding
_EMPTY_FINAL_CONTINUATION = bytes((_FIN | _CONTINUATION, 0))


def _linger_zero() -> bytes:
    # struct linger is two ints on POSIX, two unsigned shorts on Windows.
    return struct.pack("HH" if os.name == "nt" else "ii", 1, 0)


def _close_quietly(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


class _Connection:
    """One websocket connection, run by its own thread over a plain socket (sans-I/O protocol)."""

    def __init__(
        self, gateway: LocalGateway, sock: socket.socket, number: int, listen_port: int
    ) -> None:
        self.gateway = gateway
        self.sock = sock
        self.number = number
        self.listen_port = listen_port
        # Guards the protocol, the compressor, every write to the socket and the state below.
        self.lock = threading.Lock()
        self.protocol = ServerProtocol(max_size=gateway.max_message_size, logger=_PROTOCOL_LOGGER)
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.thread = threading.Thread(
            target=self._run,
            name=f"hatsu-gateway-{gateway.number}-conn-{number}",
            daemon=True,
        )
        self.done = threading.Event()
        # Set (without the lock, then wake()) to make the thread end the connection:
        # "abort" (TCP reset, no close frame) or "stop" (close 1001 when possible).
        self.teardown: str | None = None
        self.stash: list[bytes] = []  # read while silent, processed on resume(); b"" is EOF
        self.opened = False
        self.identified = False
        self.session_id: str | None = None
        self.compressor: Any | None = None
        self.hello_id = secrets.token_hex(8)
        self.ready_at: float | None = None
        self.next_ping_at: float | None = None
        self.ping_payload: bytes | None = None
        self.ping_deadline: float | None = None
        self.closing_deadline: float | None = None
        self.eof_sent = False
        self.peer_eof = False
        self.closed = False
        self.message_opcode: Opcode | None = None
        self.message_parts: list[bytes] = []
        self.client_close: tuple[int | None, str] | None = None
        self.outbox: list[bytes] = []  # frames to write, in order
        self.eof_pending = False  # the protocol asked for EOF once the outbox is written
        # PRESENCE_UPDATEs for the other clients; sent by this thread once it has released
        # self.lock, since delivering takes the other clients' locks.
        self.presence_updates: list[bytes] = []

    # -- called from other threads -------------------------------------------------------------

    def wake(self) -> None:
        # OSError: already woken (the buffer is full) or already closed.
        with contextlib.suppress(OSError):
            self.wake_w.send(b"\0")

    def request_teardown(self, kind: str) -> None:
        if self.teardown is None:
            self.teardown = kind
        self.wake()

    def force_shutdown(self) -> None:
        """Unblock whoever is stuck writing to the socket."""
        with contextlib.suppress(OSError):
            # socket.socket's own shutdown: SSLSocket's drops its SSL object under the reader.
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)

    def deliver(self, kind: int, items: Sequence[bytes]) -> bool:
        """Send ``items`` in order; False if this connection cannot take them (any more)."""
        index = 0
        while index < len(items):
            with self.lock:
                if not self._sendable_locked():
                    return False
                budget = 0
                while index < len(items) and budget < _SEND_BATCH_BYTES:
                    data = items[index]
                    index += 1
                    if kind == _MESSAGE:
                        self._queue_message_locked(data)
                    else:
                        self._queue_raw_locked(kind, data)
                    budget += len(data) + 16
                self._flush_locked()
        return True

    def close_with(self, code: int, reason: str) -> bool:
        with self.lock:
            if self.closed or self.teardown is not None or self.protocol.state is not State.OPEN:
                return False
            self.protocol.send_close(code, reason)
            self._flush_locked()
        self.gateway._client_gone(self)
        self.wake()
        return True

    def reset_keepalive(self) -> None:
        with self.lock:
            self.ping_payload = None
            self.ping_deadline = None
            interval = self.gateway.ping_interval
            if self.opened and interval is not None:
                self.next_ping_at = time.monotonic() + interval
        self.wake()

    # -- the connection thread -----------------------------------------------------------------

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        watching = False
        try:
            if isinstance(self.sock, ssl.SSLSocket) and not self._tls_handshake():
                return
            selector.register(self.wake_r, selectors.EVENT_READ)
            while True:
                with self.lock:
                    if self.teardown is not None or self._finished_locked():
                        break
                    silent = self.gateway.silent
                    if not silent:
                        if self.stash:
                            stash, self.stash = self.stash, []
                            for data in stash:
                                self._receive_locked(data)
                        self._timers_locked(time.monotonic())
                        if self._finished_locked():
                            break
                    timeout = self._timeout_locked(silent, time.monotonic())
                if self.presence_updates:
                    updates, self.presence_updates = self.presence_updates, []
                    with self.gateway._lock:
                        others = [c for c in self.gateway._clients if c is not self]
                    for conn in others:
                        conn.deliver(_MESSAGE, updates)
                want = not silent and not self.peer_eof
                if want != watching:
                    if want:
                        selector.register(self.sock, selectors.EVENT_READ)
                    else:
                        selector.unregister(self.sock)
                    watching = want
                wait = _IDLE_WAKE if timeout is None else min(timeout, _IDLE_WAKE)
                for key, _ in selector.select(wait):
                    if key.fileobj is self.wake_r:
                        self._drain_wake()
                        continue
                    try:
                        data = self._recv()
                    except (BlockingIOError, InterruptedError, socket.timeout):
                        continue
                    except OSError:
                        data = b""
                    with self.lock:
                        if self.gateway.silent:
                            # go_silent() won the race with select(): keep the bytes for later.
                            self.stash.append(data)
                        else:
                            self._receive_locked(data)
        except Exception:
            logger.exception("gateway: connection %d failed", self.number)
        finally:
            selector.close()
            self._end()

    def _tls_handshake(self) -> bool:
        """Complete the server side of the TLS handshake; False (logged) if it failed."""
        sock = self.sock
        try:
            if isinstance(sock, ssl.SSLSocket):
                sock.do_handshake()
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            logger.debug("gateway: connection %d: TLS handshake failed: %s", self.number, exc)
            return False
        return True

    def _recv(self) -> bytes:
        sock = self.sock
        if not isinstance(sock, ssl.SSLSocket):
            return sock.recv(_RECV_SIZE)
        # An SSL object must not read on one thread while another writes: senders hold the lock.
        with self.lock:
            data = sock.recv(_RECV_SIZE)
            while data and sock.pending():
                data += sock.recv(sock.pending())
        return data

    def _drain_wake(self) -> None:
        try:
            while self.wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _end(self) -> None:
        kind = self.teardown
        locked = self.lock.acquire(timeout=0.5)
        if not locked:
            # A sender is stuck in sendall(): unblock it, then take the lock.
            self.force_shutdown()
            locked = self.lock.acquire(timeout=self.gateway.send_timeout + 1.0)
        try:
            if not self.closed:
                if kind == "stop" and self.protocol.state is State.OPEN and not self.gateway.silent:
                    try:
                        self.sock.settimeout(0.2)
                        self.protocol.send_close(1001, "going away")
                        self._flush_locked()
                    except Exception:
                        pass
                if kind == "abort":
                    with contextlib.suppress(OSError):
                        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _linger_zero())
                self.closed = True
                _close_quietly(self.sock)
        finally:
            if locked:
                self.lock.release()
            _close_quietly(self.wake_r)
            _close_quietly(self.wake_w)
            # Unregister before done is set: abort() and stop() return on done.
            self.gateway._connection_ended(self)
            self.done.set()

    # -- protocol handling (self.lock held) ----------------------------------------------------

    def _finished_locked(self) -> bool:
        if self.closed or (self.peer_eof and not self.stash):
            return True
        return self.closing_deadline is not None and time.monotonic() >= self.closing_deadline

    def _timeout_locked(self, silent: bool, now: float) -> float | None:
        deadlines = [self.closing_deadline]
        if not silent:
            deadlines += [self.ready_at, self.ping_deadline]
            if self.ping_payload is None:
                deadlines.append(self.next_ping_at)
        pending = [d for d in deadlines if d is not None]
        return max(0.0, min(pending) - now) if pending else None

    def _receive_locked(self, data: bytes) -> None:
        if data:
            if self.peer_eof:
                return
            self.protocol.receive_data(data)
        else:
            self.peer_eof = True
            self.protocol.receive_eof()
        for event in self.protocol.events_received():
            if isinstance(event, Request):
                self._handshake_locked(event)
            elif isinstance(event, Frame):
                self._frame_locked(event)
        self._flush_locked()

    def _handshake_locked(self, request: Request) -> None:
        self.protocol.send_response(self.protocol.accept(request))
        if self.protocol.state is State.OPEN:
            self.opened = True
            logger.debug("gateway: connection %d opened", self.number)
            interval = self.gateway.ping_interval
            if interval is not None:
                self.next_ping_at = time.monotonic() + interval

    def _frame_locked(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._message_locked(bytes(frame.data))
            else:
                self.message_opcode = opcode
                self.message_parts = [bytes(frame.data)]
        elif opcode is Opcode.CONT:
            self.message_parts.append(bytes(frame.data))
            if frame.fin:
                data = b"".join(self.message_parts)
                self.message_parts = []
                self.message_opcode = None
                self._message_locked(data)
        elif opcode is Opcode.PONG:
            if self.ping_payload is not None and bytes(frame.data) == self.ping_payload:
                self.ping_payload = None
                self.ping_deadline = None
                interval = self.gateway.ping_interval
                if interval is not None:
                    self.next_ping_at = time.monotonic() + interval
        elif opcode is Opcode.CLOSE:
            close = self.protocol.close_rcvd
            self.client_close = (close.code, close.reason) if close is not None else (None, "")

    def _message_locked(self, data: bytes) -> None:
        if self.protocol.state is not State.OPEN:
            return
        if not self.identified:
            self._identify_locked(data)
            return
        value: Any
        try:
            value = json.loads(data)
        except (ValueError, RecursionError):
            value = data
        self.gateway._record_received(value)
        if isinstance(value, dict) and value.get("t") == "HEARTBEAT":
            ack = {"t": "ACK", "_s": self.hello_id, "s": value.get("s"), "d": None}
            self._queue_message_locked(json.dumps(ack).encode())
        elif isinstance(value, dict) and value.get("t") == "PRESENCE":
            update = _presence_update(value, self.gateway.user)
            if update is not None:
                data = json.dumps(update).encode()
                # The sender's copy now, in order with its other answers (the server awaited
                # each send); the others' by _run() on its next turn, outside self.lock.
                self._queue_message_locked(data)
                self.presence_updates.append(data)

    def _identify_locked(self, data: bytes) -> None:
        gateway = self.gateway
        payload: Any
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            payload = None
        if isinstance(payload, dict):
            gateway._record_identify(payload)
        if not isinstance(payload, dict) or not isinstance(payload.get("session_id"), str):
            self._reject_locked(4002, "Invalid Payload Type")
            return
        session_id: str = payload["session_id"]
        if gateway.session_ids is not None and session_id not in gateway.session_ids:
            self._reject_locked(4002, "Invalid authorization")
            return
        encoding = payload.get("encoding", "json")
        if encoding not in ("json", "zlib"):
            self._reject_locked(4004, "Invalid encoding")
            return
        if "presences" in payload and not isinstance(payload["presences"], bool):
            self._reject_locked(4001, "Presence has to be a bool.")
            return
        self.session_id = session_id
        if encoding == "zlib":
            self.compressor = zlib.compressobj()
        hello = {"t": "HELLO", "s": self.hello_id, "d": None, "i": HELLO_INFO}
        self._queue_message_locked(json.dumps(hello).encode())
        if gateway.ready_delay <= 0:
            self._queue_ready_locked()
        else:
            self.ready_at = time.monotonic() + gateway.ready_delay
        # Registered before the flush: once the client has seen HELLO, send() reaches it (a
        # send() from another thread waits for this connection's lock, so it comes after READY).
        if not self.closed and self.teardown is None:
            self.identified = True
            logger.debug("gateway: connection %d identified (%s)", self.number, encoding)
            gateway._client_identified(self)
        self._flush_locked()

    def _reject_locked(self, code: int, reason: str) -> None:
        logger.debug("gateway: connection %d rejected with %d %s", self.number, code, reason)
        self.protocol.send_close(code, reason)

    def _queue_ready_locked(self) -> None:
        user = dict(self.gateway.user)
        user.setdefault("session_ids", [self.session_id])
        ready = {"t": "READY", "s": self.session_id, "d": json.dumps(user), "i": None}
        self._queue_message_locked(json.dumps(ready).encode())

    def _timers_locked(self, now: float) -> None:
        if self.protocol.state is not State.OPEN:
            return
        if self.ready_at is not None and now >= self.ready_at:
            self.ready_at = None
            self._queue_ready_locked()
        if self.ping_payload is None:
            if self.next_ping_at is not None and now >= self.next_ping_at:
                self.next_ping_at = None
                self.ping_payload = secrets.token_bytes(4)
                self.protocol.send_ping(self.ping_payload)
                ping_timeout = self.gateway.ping_timeout
                if ping_timeout is not None:
                    self.ping_deadline = now + ping_timeout
        elif self.ping_deadline is not None and now >= self.ping_deadline:
            logger.debug("gateway: connection %d missed a pong", self.number)
            self.protocol.fail(1011, "keepalive ping timeout")
        self._flush_locked()

    def _sendable_locked(self) -> bool:
        return (
            self.identified
            and not self.closed
            and self.teardown is None
            and self.protocol.state is State.OPEN
        )

    def _queue_message_locked(self, text: bytes) -> None:
        """Queue one gateway message (a JSON document) in this connection's encoding."""
        self._collect_locked()
        if self.compressor is None:
            self.outbox += _frame_header(_FIN | _TEXT, len(text)), text
            return
        data = self.compressor.compress(text) + self.compressor.flush(zlib.Z_FULL_FLUSH)
        # Like the deployed server: 1024-byte fragments, then an empty final continuation.
        outbox = self.outbox
        first = data[:_FRAGMENT_SIZE]
        outbox += _frame_header(_BINARY, len(first)), first
        for start in range(_FRAGMENT_SIZE, len(data), _FRAGMENT_SIZE):
            fragment = data[start : start + _FRAGMENT_SIZE]
            outbox += _frame_header(_CONTINUATION, len(fragment)), fragment
        outbox.append(_EMPTY_FINAL_CONTINUATION)

    def _queue_raw_locked(self, opcode: int, data: bytes) -> None:
        self._collect_locked()
        self.outbox += _frame_header(_FIN | opcode, len(data)), data

    def _collect_locked(self) -> None:
        # Data frames are framed here rather than by the protocol (several times faster for
        # bulk sends); what the protocol queued (handshake, pongs, close) goes first, in order.
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.outbox.append(chunk)
            else:
                self.eof_pending = True

    def _flush_locked(self) -> None:
        self._collect_locked()
        if self.closed:
            self.outbox.clear()
        elif self.outbox or (self.eof_pending and not self.eof_sent):
            data = b"".join(self.outbox)
            self.outbox.clear()
            try:
                if data:
                    self.sock.sendall(data)
                if self.eof_pending and not self.eof_sent:
                    self.eof_sent = True
                    # socket.socket's own: SSLSocket.shutdown would drop the SSL object.
                    socket.socket.shutdown(self.sock, socket.SHUT_WR)
            except OSError:
                logger.debug("gateway: connection %d: write failed", self.number)
                self.request_teardown("abort")
                self.gateway._client_gone(self)
        if self.closing_deadline is None and (self.eof_sent or self.protocol.close_expected()):
            self.closing_deadline = time.monotonic() + _CLOSE_TIMEOUT


def _presence_update(message: dict[str, Any], user: Mapping[str, Any]) -> dict[str, Any] | None:
    """The PRESENCE_UPDATE the deployed server made of a client's PRESENCE, or None when it
    dropped the message (silently, with no answer and no close).

    Like the server: ``type`` must be 1-4 and ``description`` present; an ``embed`` (any truthy
    value) must hold ``name`` and ``description``, and its fields are passed through ``str()``,
    so a missing or null ``banner_url``, ``top_text`` or ``bottom_text`` arrives as "None".
    """
    if message.get("type") not in (1, 2, 3, 4) or "description" not in message:
        return None
    embed: dict[str, Any] | None = None
    source = message.get("embed")
    if source:
        if not isinstance(source, dict) or "name" not in source or "description" not in source:
            return None
        embed = {
            "name": str(source["name"]),
            "description": str(source["description"]),
            "banner_url": str(source.get("banner_url")),
            "text": {"top": str(source.get("top_text")), "bottom": str(source.get("bottom_text"))},
        }
    user_id = user.get("id", user.get("_id"))
    presence = {
        "type": message["type"],
        "description": message["description"],
        "emoji": message.get("emoji"),
        "embed": embed,
    }
    return {"t": "PRESENCE_UPDATE", "id": user_id, "d": presence}


def _frame_header(first_byte: int, length: int) -> bytes:
    """The header of an unmasked (server-to-client) websocket frame."""
    if length < 126:
        return bytes((first_byte, length))
    if length < 65536:
        return struct.pack("!BBH", first_byte, 126, length)
    return struct.pack("!BBQ", first_byte, 127, length)


class _Listener:
    """A listening websocket socket and the thread that accepts on it."""

    def __init__(self, gateway: LocalGateway, sock: socket.socket) -> None:
        self.gateway = gateway
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self.wake_r, self.wake_w = socket.socketpair()
        self.stopping = False
        self.thread = threading.Thread(
            target=self._run,
            name=f"hatsu-gateway-{gateway.number}-accept-{self.port}",
            daemon=True,
        )

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        try:
            selector.register(self.sock, selectors.EVENT_READ)
            selector.register(self.wake_r, selectors.EVENT_READ)
            while not self.stopping:
                for key, _ in selector.select(_IDLE_WAKE):
                    if key.fileobj is self.wake_r or self.stopping:
                        continue
                    try:
                        conn_sock, _peer = self.sock.accept()
                    except OSError:
                        continue  # the client gave up meanwhile, or we are stopping
                    self.gateway._add_connection(conn_sock, self.port)
        except Exception:
            logger.exception("gateway: accept loop on port %d failed", self.port)
        finally:
            selector.close()

    def stop(self, timeout: float) -> None:
        self.stopping = True
        with contextlib.suppress(OSError):
            self.wake_w.send(b"\0")
        if self.thread.is_alive():
            self.thread.join(timeout)
        _close_quietly(self.sock)
        _close_quietly(self.wake_r)
        _close_quietly(self.wake_w)


class _DiscoveryHandler(BaseHTTPRequestHandler):
    server: _DiscoveryServer
    protocol_version = "HTTP/1.0"
    # A socket timeout, so that a client that stops reading cannot hold a thread forever.
    timeout = 10.0

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in _DISCOVERY_PATHS:
            self._answer(404, b"Not Found")
            return
        answer = self.server.gateway._discovery_answer()
        if answer is None:  # the gateway is stopping
            self.close_connection = True
            return
        self._answer(*answer)

    def _answer(self, status: int, body: bytes) -> None:
        # No Content-Type, like the deployed server.
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("gateway discovery: " + format, *args)


class _DiscoveryServer(ThreadingHTTPServer):
    """The discovery endpoint: one named daemon thread per request, all tracked for stop()."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], gateway: LocalGateway) -> None:
        self.gateway = gateway
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._workers_lock = threading.Lock()
        self._workers: dict[threading.Thread, Any] = {}
        self._numbers = itertools.count(1)
        super().__init__(address, _DiscoveryHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind() resolves the host's FQDN, which can be slow: not needed.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def get_request(self) -> tuple[Any, Any]:
        request, client_address = super().get_request()
        context = self.gateway.ssl_context
        if context is not None:
            # No I/O here: the handshake happens on the request's own thread, in _work().
            request = context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        return request, client_address

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._work,
            args=(request, client_address),
            name=f"hatsu-gateway-{self.gateway.number}-http-{next(self._numbers)}",
            daemon=True,
        )
        with self._workers_lock:
            self._workers[thread] = request
            thread.start()

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            if isinstance(request, ssl.SSLSocket):
                request.settimeout(_DiscoveryHandler.timeout)
                request.do_handshake()
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._workers_lock:
                self._workers.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up mid-answer (a huge body cut off) are expected here.
        logger.debug("gateway discovery: a request failed", exc_info=True)

    def drop_workers(self, deadline: float) -> list[threading.Thread]:
        """Unblock and join every request thread by ``deadline``; return the survivors."""
        with self._workers_lock:
            workers = list(self._workers.items())
        for _thread, request in workers:
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)
        for thread, _request in workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [thread for thread, _request in workers if thread.is_alive()]


class LocalGateway:
    """A hatsu gateway on loopback: a discovery endpoint and a websocket endpoint.

    Args:
        session_ids: the session ids accepted in identify; None accepts any. Others are closed
            with 4002 "Invalid authorization".
        host: the address both endpoints bind to.
        http_port: the discovery (HTTP) port; 0 picks a free one.
        ws_port: the websocket port; 0 picks a free one.
        ready_delay: seconds between HELLO and READY (the deployed server took about 9).
        user: the user READY carries (its ``d``, JSON-encoded); :data:`DEFAULT_USER` by
            default. ``session_ids`` is added (the connection's session id) unless present.
        ping_interval: seconds between the gateway's websocket pings (the next ping follows the
            pong by this much); None sends none.
        ping_timeout: seconds to wait for a pong before closing with 1011 "keepalive ping
            timeout"; None waits forever.
        max_message_size: the largest message accepted from a client; a bigger one is closed
            with 1009 (the deployed server's limit: 1 MiB).
        send_timeout: the longest a send to one client may block (a client that stops reading);
            past it, that client's connection is aborted.
        ssl_context: a server-side context (``ssl.create_default_context(ssl.Purpose.
            CLIENT_AUTH)`` with a certificate loaded): both endpoints then speak TLS,
            :attr:`http_url` is ``https://`` and :attr:`ws_url` ``wss://``, and when ``host``
            is a loopback address the URLs name ``localhost`` instead (so the certificate
            must be valid for ``localhost``, or for ``host`` otherwise). Discovery still
            answers ``{"port": WS_PORT}``, which clients map to ``wss://``. None: plain TCP.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`). Every method is
    thread-safe and every wait has a timeout.

    Raises:
        TypeError: ``session_ids`` is a single string rather than a collection.
        ValueError: a negative delay or a non-positive interval, timeout or size, or an
            ``ssl_context`` made for the client side.
    """

    def __init__(
        self,
        session_ids: Collection[str] | None = None,
        *,
        host: str = "127.0.0.1",
        http_port: int = 0,
        ws_port: int = 0,
        ready_delay: float = 0.0,
        user: Mapping[str, Any] | None = None,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        max_message_size: int = 2**20,
        send_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if isinstance(session_ids, (str, bytes)):
            raise TypeError("session_ids must be a collection of session ids, not one string")
        if ready_delay < 0:
            raise ValueError(f"ready_delay must be >= 0, got {ready_delay!r}")
        if ping_interval is not None and not ping_interval > 0:
            raise ValueError(f"ping_interval must be > 0 or None, got {ping_interval!r}")
        if ping_timeout is not None and not ping_timeout > 0:
            raise ValueError(f"ping_timeout must be > 0 or None, got {ping_timeout!r}")
        if max_message_size <= 0:
            raise ValueError(f"max_message_size must be > 0, got {max_message_size!r}")
        if not send_timeout > 0:
            raise ValueError(f"send_timeout must be > 0, got {send_timeout!r}")
        if ssl_context is not None:
            if not isinstance(ssl_context, ssl.SSLContext):
                raise TypeError(f"ssl_context must be an ssl.SSLContext, not {type(ssl_context)}")
            # A client context cannot serve (its check_hostname needs a server_hostname);
            # before Python 3.10 create_default_context() made PROTOCOL_TLS ones.
            if ssl_context.protocol == ssl.PROTOCOL_TLS_CLIENT or ssl_context.check_hostname:
                raise ValueError(
                    "ssl_context is a client-side context; use "
                    "ssl.create_default_context(ssl.Purpose.CLIENT_AUTH) with a certificate"
                )
        #: The accepted session ids (a frozenset), or None for any.
        self.session_ids: frozenset[str] | None = (
            None if session_ids is None else frozenset(session_ids)
        )
        self.host = host
        self.ready_delay = float(ready_delay)
        self.user: Mapping[str, Any] = dict(DEFAULT_USER if user is None else user)
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_message_size = max_message_size
        self.send_timeout = float(send_timeout)
        #: The server-side TLS context, or None for plain TCP.
        self.ssl_context = ssl_context
        self.number = next(_gateway_numbers)
        self._wanted_http_port = http_port
        self._wanted_ws_port = ws_port

        # Guards every field below; _cond signals changes to the counters and lists.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        # Serialises start(), stop() and restart().
        self._lifecycle_lock = threading.Lock()
        self._state = "new"  # new -> running -> stopped
        self._stopping = False
        self._silent = False
        self._http_port: int | None = None
        self._ws_port: int | None = None
        self._listener: _Listener | None = None
        self._httpd: _DiscoveryServer | None = None
        self._http_thread: threading.Thread | None = None
        self._connections: list[_Connection] = []
        self._clients: list[_Connection] = []
        self._connection_count = 0
        self._discovery_requests = 0
        self._discovery_mode: str | None = None
        self._discovery_answer_override: tuple[int, bytes] | None = None
        self._discovery_times_left: int | None = None
        # Bumped by every change of the discovery behaviour; releases hanging requests.
        self._discovery_generation = 0
        self._identifies: list[dict[str, Any]] = []
        self._received: list[Any] = []
        self._closes: list[tuple[int | None, str]] = []

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> LocalGateway:
        """Bind both endpoints and start serving; idempotent while running.

        Returns:
            self.

        Raises:
            RuntimeError: the gateway was stopped (it cannot be started again).
            OSError: a port could not be bound.
        """
        with self._lifecycle_lock:
            if self._state == "running":
                return self
            if self._state == "stopped":
                raise RuntimeError("a stopped LocalGateway cannot be started again")
            listen_sock = self._open_listener(self._wanted_ws_port)
            try:
                httpd = _DiscoveryServer((self.host, self._wanted_http_port), self)
            except BaseException:
                listen_sock.close()
                raise
            listener = _Listener(self, listen_sock)
            http_thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"hatsu-gateway-{self.number}-http",
                daemon=True,
            )
            with self._lock:
                self._listener = listener
                self._ws_port = listener.port
                self._httpd = httpd
                self._http_port = int(httpd.server_address[1])
                self._http_thread = http_thread
                self._state = "running"
            listener.thread.start()
            http_thread.start()
            logger.debug("gateway: started %s", self)
            return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: close every connection and socket, join every thread.

        Idempotent; returns within about ``timeout`` even while silent or while a discovery
        request hangs. Open connections get a 1001 "going away" close frame (none while silent);
        hanging discovery requests are closed unanswered.
        """
        with self._lifecycle_lock:
            if self._state != "running":
                return
            deadline = time.monotonic() + timeout
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
                httpd, http_thread, listener = self._httpd, self._http_thread, self._listener
            survivors: list[threading.Thread] = []
            if httpd is not None:
                if http_thread is not None and http_thread.is_alive():
                    httpd.shutdown()
                survivors += httpd.drop_workers(deadline)
                httpd.server_close()
            if http_thread is not None:
                http_thread.join(max(0.0, deadline - time.monotonic()))
                survivors += [http_thread] if http_thread.is_alive() else []
            if listener is not None:
                listener.stop(max(0.0, deadline - time.monotonic()))
                survivors += [listener.thread] if listener.thread.is_alive() else []
            survivors += self._end_connections("stop", deadline)
            with self._cond:
                self._state = "stopped"
                self._clients.clear()
                self._cond.notify_all()
            if survivors:
                logger.warning(
                    "gateway: %d thread(s) still running after stop(): %s",
                    len(survivors),
                    ", ".join(thread.name for thread in survivors),
                )
            logger.debug("gateway: stopped %s", self)

    def __enter__(self) -> LocalGateway:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        with self._lock:
            state, clients = self._state, len(self._clients)
            http_port, ws_port = self._http_port, self._ws_port
        if http_port is None or ws_port is None:
            return f"<LocalGateway {state}>"
        host = self._url_host()
        http, ws = ("https", "wss") if self.ssl_context is not None else ("http", "ws")
        return (
            f"<LocalGateway {http}://{host}:{http_port} {ws}://{host}:{ws_port} {state}, "
            f"{clients} client(s)>"
        )

    # -- addresses and counters --------------------------------------------------------------

    @property
    def http_url(self) -> str:
        """The discovery base URL, ``http://HOST:PORT`` (pass it as a Client's ``gateway``);
        ``https://`` with an ``ssl_context``.

        Raises:
            RuntimeError: the gateway was never started.
        """
        with self._lock:
            port = self._http_port
        if port is None:
            raise RuntimeError("the LocalGateway is not started")
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self._url_host()}:{port}"

    @property
    def ws_url(self) -> str:
        """The websocket URL, ``ws://HOST:PORT`` (``wss://`` with an ``ssl_context``); it
        changes with :meth:`restart`.

        Raises:
            RuntimeError: the gateway was never started.
        """
        with self._lock:
            port = self._ws_port
        if port is None:
            raise RuntimeError("the LocalGateway is not started")
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://{self._url_host()}:{port}"

    @property
    def http_port(self) -> int:
        """The discovery port. Raises RuntimeError if the gateway was never started."""
        return int(self.http_url.rsplit(":", 1)[1])

    @property
    def ws_port(self) -> int:
        """The websocket port. Raises RuntimeError if the gateway was never started."""
        return int(self.ws_url.rsplit(":", 1)[1])

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        with self._lock:
            return self._state == "running" and not self._stopping

    @property
    def silent(self) -> bool:
        """True between :meth:`go_silent` and :meth:`resume`."""
        return self._silent

    @property
    def clients(self) -> int:
        """The number of identified clients connected now."""
        with self._lock:
            return len(self._clients)

    @property
    def connections(self) -> int:
        """The number of TCP connections accepted on the websocket port(s) so far."""
        with self._lock:
            return self._connection_count

    @property
    def discovery_requests(self) -> int:
        """The number of discovery requests (``GET /available`` or ``/port``) received so far."""
        with self._lock:
            return self._discovery_requests

    @property
    def identifies(self) -> list[dict[str, Any]]:
        """Every identify payload received (JSON objects, rejected ones too), in order; a copy."""
        with self._lock:
            return list(self._identifies)

    @property
    def received(self) -> list[Any]:
        """Every client message received after identify, in order; a copy.

        Each is the decoded JSON value, or the raw bytes when it was not JSON.
        """
        with self._lock:
            return list(self._received)

    @property
    def closes(self) -> list[tuple[int | None, str]]:
        """For every identified connection that ended, in order: ``(code, reason)`` of the
        close frame the client sent (or echoed), ``(None, "")`` when none came; a copy."""
        with self._lock:
            return list(self._closes)

    # -- waiting ---------------------------------------------------------------------------------

    def wait_for_clients(self, n: int = 1, timeout: float = 5.0) -> None:
        """Block until at least ``n`` identified clients are connected at the same time.

        Raises:
            TimeoutError: not reached within ``timeout`` seconds.
            RuntimeError: the gateway stopped meanwhile.
        """
        self._wait(lambda: len(self._clients) >= n, timeout, f"{n} identified client(s)")

    def wait_for_identifies(self, n: int = 1, timeout: float = 5.0) -> None:
        """Block until at least ``n`` identify payloads were received in all (cumulative).

        Raises:
            TimeoutError: not reached within ``timeout`` seconds.
            RuntimeError: the gateway stopped meanwhile.
        """
        self._wait(lambda: len(self._identifies) >= n, timeout, f"{n} identify payload(s)")

    def wait_for_connections(self, n: int = 1, timeout: float = 5.0) -> None:
        """Block until at least ``n`` TCP connections were accepted in all (cumulative).

        Raises:
            TimeoutError: not reached within ``timeout`` seconds.
            RuntimeError: the gateway stopped meanwhile.
        """
        self._wait(lambda: self._connection_count >= n, timeout, f"{n} connection(s)")

    def wait_for_received(self, n: int = 1, timeout: float = 5.0) -> None:
        """Block until at least ``n`` client messages were received after identify, in all.

        Raises:
            TimeoutError: not reached within ``timeout`` seconds.
            RuntimeError: the gateway stopped meanwhile.
        """
        self._wait(lambda: len(self._received) >= n, timeout, f"{n} client message(s)")

    def wait_for_closes(self, n: int = 1, timeout: float = 5.0) -> None:
        """Block until at least ``n`` identified connections have ended, in all (see
        :attr:`closes`).

        Raises:
            TimeoutError: not reached within ``timeout`` seconds.
            RuntimeError: the gateway stopped meanwhile.
        """
        self._wait(lambda: len(self._closes) >= n, timeout, f"{n} ended connection(s)")

    def wait_for_discovery_requests(self, n: int = 1, timeout: float = 5.0) -> None:
        """Block until at least ``n`` discovery requests were received, in all.

        Raises:
            TimeoutError: not reached within ``timeout`` seconds.
            RuntimeError: the gateway stopped meanwhile.
        """
        self._wait(lambda: self._discovery_requests >= n, timeout, f"{n} discovery request(s)")

    def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                if self._stopping or self._state == "stopped":
                    raise RuntimeError(f"the LocalGateway stopped while waiting for {what}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"LocalGateway: no {what} within {timeout:g} s")
                self._cond.wait(remaining)

    # -- sending -----------------------------------------------------------------------------------

    def send(self, payload: Any) -> int:
        """Send one message to every identified client, in its encoding.

        ``payload`` is normally a dict (an event such as ``{"t": "GUILD_CREATE", "d": {...}}``);
        any JSON-serialisable value is sent as is. Messages are sent while silent too.

        Returns:
            The number of clients it was sent to.

        Raises:
            TypeError: ``payload`` is not JSON-serialisable.
        """
        return self.send_many([payload])

    def send_many(self, payloads: Iterable[Any]) -> int:
        """Send many messages to every identified client, in order, batched for speed.

        Each payload is encoded once, then framed (and compressed, for zlib clients) per client.

        Returns:
            The number of clients they were sent to.

        Raises:
            TypeError: a payload is not JSON-serialisable (nothing is sent then).
        """
        items = [json.dumps(payload).encode() for payload in payloads]
        return self._broadcast(_MESSAGE, items)

    def send_raw(self, data: str | bytes) -> int:
        """Send ``data`` as is to every identified client: a str as one TEXT frame, bytes as one
        BINARY frame (no JSON, no compression; for testing how a client copes with junk).

        Returns:
            The number of clients it was sent to.

        Raises:
            TypeError: ``data`` is neither str nor bytes.
        """
        if isinstance(data, str):
            return self._broadcast(_RAW_TEXT, [data.encode()])
        if isinstance(data, (bytes, bytearray, memoryview)):
            return self._broadcast(_RAW_BINARY, [bytes(data)])
        raise TypeError(f"send_raw() takes str or bytes, not {type(data).__name__}")

    def _broadcast(self, kind: int, items: Sequence[bytes]) -> int:
        with self._lock:
            targets = list(self._clients)
        return sum(1 for conn in targets if conn.deliver(kind, items))

    # -- faults ----------------------------------------------------------------------------

    def disconnect(self, code: int = 1011, reason: str = "") -> int:
        """Close every open websocket connection with a close frame ``code``/``reason``.

        The clients stop counting in :attr:`clients` at once; each connection then ends when
        the client answers (or after a short timeout). Returns promptly.

        Returns:
            The number of connections closed.

        Raises:
            ValueError: ``code`` cannot be sent in a close frame (e.g. 1005, 1006) or
                ``reason`` is longer than 123 bytes.
        """
        if code not in _SENDABLE_CLOSE_CODES:
            raise ValueError(f"close code {code!r} cannot be sent in a close frame")
        if len(reason.encode()) > 123:
            raise ValueError("a close reason is at most 123 bytes")
        with self._cond:
            targets = list(self._connections)
            self._clients.clear()
            self._cond.notify_all()
        return sum(1 for conn in targets if conn.close_with(code, reason))

    def abort(self, timeout: float = 2.0) -> int:
        """Drop every client connection at the TCP level, without a close frame.

        The socket is closed with SO_LINGER 0, so the client sees a reset (or EOF). Covers
        connections in any state, identified or not. Returns once the sockets are closed, or
        after ``timeout``.

        Returns:
            The number of connections dropped.
        """
        with self._cond:
            targets = list(self._connections)
            self._clients.clear()
            self._cond.notify_all()
        self._drop(targets, "abort", time.monotonic() + timeout)
        return len(targets)

    def go_silent(self) -> None:
        """Act like a hung server: the sockets stay open, but nothing is read from them, no ping
        is answered and the gateway sends no pings of its own (nor READY) until :meth:`resume`.

        While silent, new TCP connections are still accepted, but their websocket handshake is
        not answered. What the clients send meanwhile waits in the socket buffers and is
        processed on :meth:`resume`. :meth:`send` and the other explicit actions still work.
        Returns once no connection thread can answer anything any more.
        """
        with self._cond:
            self._silent = True
            targets = list(self._connections)
        for conn in targets:
            # A barrier: whatever a connection thread was doing under its lock is over, and it
            # sees the flag from now on.
            if conn.lock.acquire(timeout=1.0):
                conn.lock.release()
            conn.wake()

    def resume(self) -> None:
        """Undo :meth:`go_silent`: read again, answer pings, and restart the gateway's own ping
        schedule (the next ping comes one ``ping_interval`` from now)."""
        with self._cond:
            self._silent = False
            targets = list(self._connections)
        for conn in targets:
            conn.reset_keepalive()

    def fail_discovery(self, mode: str | None, times: int | None = None) -> None:
        """Make the discovery endpoint misbehave.

        Args:
            mode: ``"500"`` answers HTTP 500; ``"garbage"`` answers 200 with a body that says
                nothing about where to connect; ``"hang"`` accepts requests and never answers
                them (until the mode changes again, when they get the answer of the moment, or
                the gateway stops, when they are closed unanswered); None goes back to normal
                (and drops any :meth:`set_discovery_answer`).
            times: with a mode, only the next ``times`` discovery requests misbehave; the
                endpoint is back to normal after them. None: until changed.

        Raises:
            ValueError: an unknown mode, or ``times`` below 1.
        """
        if mode not in _DISCOVERY_MODES:
            raise ValueError(f"unknown discovery mode {mode!r}; expected one of {_DISCOVERY_MODES}")
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1 or None, got {times!r}")
        with self._cond:
            self._discovery_mode = mode
            self._discovery_times_left = None if mode is None else times
            if mode is None:
                self._discovery_answer_override = None
            self._discovery_generation += 1
            self._cond.notify_all()

    def set_discovery_answer(self, status: int, body: bytes | str) -> None:
        """Make every discovery request get exactly this answer (no Content-Type), until
        :meth:`fail_discovery` is called with None. Takes precedence over the other modes,
        "hang" included.

        E.g. ``set_discovery_answer(200, gw.ws_url.replace("ws:", "http:"))`` for the plain-text
        URL form, or ``set_discovery_answer(200, json.dumps({"url": gw.ws_url}))``.

        Raises:
            ValueError: ``status`` is not a 3-digit HTTP status.
        """
        if not 100 <= status <= 599:
            raise ValueError(f"not an HTTP status: {status!r}")
        data = body.encode() if isinstance(body, str) else bytes(body)
        with self._cond:
            self._discovery_answer_override = (status, data)
            self._discovery_generation += 1
            self._cond.notify_all()

    def restart(self, new_port: bool = True, timeout: float = 2.0) -> None:
        """Drop every client (as :meth:`abort`) and, with ``new_port``, move the websocket
        endpoint to a new free port: :attr:`ws_url` and the discovery answer change, and the old
        port refuses connections from then on. Without ``new_port`` the port stays.

        Raises:
            RuntimeError: the gateway is not running.
            OSError: the new port could not be bound.
        """
        with self._lifecycle_lock:
            if not self.running:
                raise RuntimeError("the LocalGateway is not running")
            deadline = time.monotonic() + timeout
            if not new_port:
                self.abort(timeout)
                return
            # Bind the new port while the old one is still held, so that they differ.
            new_listener = _Listener(self, self._open_listener(0))
            with self._cond:
                old_listener = self._listener
                self._listener = new_listener
                self._ws_port = new_listener.port
            new_listener.thread.start()
            old_port = None if old_listener is None else old_listener.port
            if old_listener is not None:
                old_listener.stop(max(0.0, deadline - time.monotonic()))
            with self._cond:
                targets = [c for c in self._connections if c.listen_port == old_port]
                self._clients = [c for c in self._clients if c not in targets]
                self._cond.notify_all()
            self._drop(targets, "abort", deadline)
            logger.debug("gateway: websocket endpoint moved to port %d", new_listener.port)

    # -- internals -------------------------------------------------------------------------------

    def _url_host(self) -> str:
        if self.ssl_context is not None and self.host in ("127.0.0.1", "::1", "localhost"):
            return "localhost"  # a name to verify the certificate against
        return f"[{self.host}]" if ":" in self.host else self.host

    def _open_listener(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if os.name == "posix":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, port))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _add_connection(self, sock: socket.socket, listen_port: int) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self.send_timeout)
            if self.ssl_context is not None:
                # No I/O here: the connection's own thread does the handshake.
                sock = self.ssl_context.wrap_socket(
                    sock, server_side=True, do_handshake_on_connect=False
                )
        except OSError:
            sock.close()
            return
        with self._cond:
            if self._stopping:
                sock.close()
                return
            self._connection_count += 1
            conn = _Connection(self, sock, self._connection_count, listen_port)
            self._connections.append(conn)
            conn.thread.start()
            self._cond.notify_all()

    def _client_identified(self, conn: _Connection) -> None:
        with self._cond:
            if conn in self._connections and conn.teardown is None:
                self._clients.append(conn)
                self._cond.notify_all()

    def _client_gone(self, conn: _Connection) -> None:
        with self._cond:
            if conn in self._clients:
                self._clients.remove(conn)
                self._cond.notify_all()

    def _connection_ended(self, conn: _Connection) -> None:
        with self._cond:
            if conn in self._connections:
                self._connections.remove(conn)
            if conn in self._clients:
                self._clients.remove(conn)
            if conn.identified:
                self._closes.append(conn.client_close or (None, ""))
            self._cond.notify_all()
        logger.debug("gateway: connection %d closed", conn.number)

    def _record_identify(self, payload: dict[str, Any]) -> None:
        with self._cond:
            self._identifies.append(payload)
            self._cond.notify_all()

    def _record_received(self, value: Any) -> None:
        with self._cond:
            self._received.append(value)
            self._cond.notify_all()

    def _end_connections(self, kind: str, deadline: float) -> list[threading.Thread]:
        with self._cond:
            targets = list(self._connections)
        return self._drop(targets, kind, deadline)

    def _drop(
        self, targets: Sequence[_Connection], kind: str, deadline: float
    ) -> list[threading.Thread]:
        """End ``targets`` by ``deadline``; return the threads still running after it."""
        for conn in targets:
            conn.request_teardown(kind)
        # Most end at once; a thread behind a stuck sender is unblocked after a short grace.
        grace = min(deadline, time.monotonic() + 0.5)
        for conn in targets:
            conn.done.wait(max(0.0, grace - time.monotonic()))
        for conn in targets:
            if not conn.done.is_set():
                conn.force_shutdown()
        for conn in targets:
            conn.done.wait(max(0.0, deadline - time.monotonic()))
            if conn.thread.is_alive() and conn.done.is_set():
                conn.thread.join(max(0.0, deadline - time.monotonic()))
        return [conn.thread for conn in targets if conn.thread.is_alive()]

    def _discovery_answer(self) -> tuple[int, bytes] | None:
        """The answer to one discovery request (blocks while "hang"); None when stopping."""
        with self._cond:
            self._discovery_requests += 1
            self._cond.notify_all()
            override = self._discovery_answer_override
            mode = None if override is not None else self._take_discovery_mode()
            while True:
                if self._stopping:
                    return None
                if self._discovery_answer_override is not None:
                    return self._discovery_answer_override
                if mode == "hang":
                    generation = self._discovery_generation
                    while generation == self._discovery_generation and not self._stopping:
                        self._cond.wait(1.0)
                    mode = self._discovery_mode
                    continue
                if mode == "500":
                    return 500, _ERROR_BODY
                if mode == "garbage":
                    return 200, _GARBAGE_BODY
                return 200, json.dumps({"port": self._ws_port}).encode()

    def _take_discovery_mode(self) -> str | None:
        """The mode for one new request, counting it against ``times`` (lock held)."""
        mode = self._discovery_mode
        if mode is not None and self._discovery_times_left is not None:
            self._discovery_times_left -= 1
            if self._discovery_times_left <= 0:
                self._discovery_mode = None
                self._discovery_times_left = None
        return mode
