"""One websocket connection of the LocalGateway, run by its own thread (sans-I/O protocol).

The connection thread reads the socket, feeds websockets' server protocol, answers what the
deployed server answers (HELLO/READY after identify, ACK, PRESENCE_UPDATE) and keeps the
gateway's keepalive; other threads queue messages with :meth:`Connection.deliver`.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import selectors
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from ._behaviour import HELLO_INFO, presence_update
from ._wire import (
    BINARY,
    CLOSE_TIMEOUT,
    CONTINUATION,
    EMPTY_FINAL_CONTINUATION,
    FIN,
    FRAGMENT_SIZE,
    IDLE_WAKE,
    MESSAGE,
    PROTOCOL_LOGGER,
    RECV_SIZE,
    SEND_BATCH_BYTES,
    TEXT,
    close_quietly,
    frame_header,
    linger_zero,
    logger,
)

if TYPE_CHECKING:
    from ._core import GatewayCore

__all__ = ["Connection"]


class Connection:
    """One websocket connection, run by its own thread over a plain socket (sans-I/O protocol)."""

    def __init__(
        self, gateway: GatewayCore, sock: socket.socket, number: int, listen_port: int
    ) -> None:
        self.gateway = gateway
        self.sock = sock
        self.number = number
        self.listen_port = listen_port
        # Guards the protocol, the compressor, every write to the socket and the state below.
        self.lock = threading.Lock()
        self.protocol = ServerProtocol(max_size=gateway.max_message_size, logger=PROTOCOL_LOGGER)
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
                while index < len(items) and budget < SEND_BATCH_BYTES:
                    data = items[index]
                    index += 1
                    if kind == MESSAGE:
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
                        conn.deliver(MESSAGE, updates)
                want = not silent and not self.peer_eof
                if want != watching:
                    if want:
                        selector.register(self.sock, selectors.EVENT_READ)
                    else:
                        selector.unregister(self.sock)
                    watching = want
                wait = IDLE_WAKE if timeout is None else min(timeout, IDLE_WAKE)
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
            return sock.recv(RECV_SIZE)
        # An SSL object must not read on one thread while another writes: senders hold the lock.
        with self.lock:
            data = sock.recv(RECV_SIZE)
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
                        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_zero())
                self.closed = True
                close_quietly(self.sock)
        finally:
            if locked:
                self.lock.release()
            close_quietly(self.wake_r)
            close_quietly(self.wake_w)
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
        # A message read in the same chunk as the client's close frame comes after the
        # protocol has seen that close (CLOSING): it was sent before it, so it is recorded,
        # but no longer answered.
        state = self.protocol.state
        if state is State.CLOSED:
            return
        if not self.identified:
            if state is State.OPEN:
                self._identify_locked(data)
            return
        value: Any
        try:
            value = json.loads(data)
        except (ValueError, RecursionError):
            value = data
        self.gateway._record_received(value)
        if state is not State.OPEN:
            return
        if isinstance(value, dict) and value.get("t") == "HEARTBEAT":
            ack = {"t": "ACK", "_s": self.hello_id, "s": value.get("s"), "d": None}
            self._queue_message_locked(json.dumps(ack).encode())
        elif isinstance(value, dict) and value.get("t") == "PRESENCE":
            update = presence_update(value, self.gateway.user)
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
        for data in self.gateway._replay:
            self._queue_message_locked(data)

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
            self.outbox += frame_header(FIN | TEXT, len(text)), text
            return
        data = self.compressor.compress(text) + self.compressor.flush(zlib.Z_FULL_FLUSH)
        # Like the deployed server: 1024-byte fragments, then an empty final continuation.
        outbox = self.outbox
        first = data[:FRAGMENT_SIZE]
        outbox += frame_header(BINARY, len(first)), first
        for start in range(FRAGMENT_SIZE, len(data), FRAGMENT_SIZE):
            fragment = data[start : start + FRAGMENT_SIZE]
            outbox += frame_header(CONTINUATION, len(fragment)), fragment
        outbox.append(EMPTY_FINAL_CONTINUATION)

    def _queue_raw_locked(self, opcode: int, data: bytes) -> None:
        self._collect_locked()
        self.outbox += frame_header(FIN | opcode, len(data)), data

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
            self.closing_deadline = time.monotonic() + CLOSE_TIMEOUT
