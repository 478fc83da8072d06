"""The read half of a connection: socket bytes -> frames -> decoded events, until it ends.

:class:`Reader` is mixed into :class:`~hatsu_sync._transport.Connection`, which owns the socket,
the writes and the deadlines; the reader only reads on the transport thread. Parsing is
:mod:`hatsu_sync._frames`' (no I/O) and decoding :mod:`hatsu_sync._decode`'s: here the bytes are
moved between them, and the ways a connection can end are told apart.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable, NamedTuple, Protocol

import websocket

from ._decode import Decoder
from ._frames import Close, FrameParser, Ping, Pong, ProtocolError
from ._settings import Settings
from ._state import Disconnected, State
from .exceptions import DecodeError, HatsuError
from .models import Event

__all__ = ["Ending", "Listener", "Reader", "describe"]

# The reader asks the socket for this much at a time: one system call brings in many frames.
_RECV_SIZE = 1 << 16


class Listener(Protocol):
    """What the supervisor reports to; implemented by the client's core."""

    def deliver(self, event: Event) -> None:
        """A decoded event (called on the transport thread, must not block)."""

    def flush(self) -> None:
        """Pass on what ``deliver`` took and wake whoever waits for it (called before a read
        may block, and when reading ends)."""

    def decode_failed(self, error: DecodeError) -> None:
        """A message that could not be decoded."""

    def connected(self, url: str) -> None:
        """A connection is up and the identify is sent."""

    def disconnected(self, info: Disconnected) -> None:
        """A connection announced by ``connected`` has ended."""

    def state_changed(self, state: State) -> None:
        """The supervisor moved the client to ``state``."""

    def finished(self, error: HatsuError | None) -> None:
        """The supervisor stopped for good: ``error`` says why (None when asked to stop)."""


class Ending(NamedTuple):
    """How one connection ended."""

    code: int | None
    reason: str
    error: BaseException | None = None


class Reader:
    """The read loop of a connection (a mixin of ``Connection``, which sets these attributes)."""

    _settings: Settings
    _listener: Listener
    _lock: threading.RLock
    _ws: websocket.WebSocket | None
    _closing: bool
    _aborted: bool
    _keepalive_expired: bool
    _last_rx: float
    delivered: int

    def send_pong(self, data: bytes) -> None:
        """Answer a ping (the connection's writer, with its deadline)."""
        raise NotImplementedError

    def close(self, code: int = 1000, reason: str = "", *, timeout: float | None = None) -> None:
        """Start the closing handshake (the connection's writer)."""
        raise NotImplementedError

    def run(self) -> Ending:
        """Read and deliver messages until the connection ends; return how it ended."""
        ws = self._ws
        assert ws is not None
        try:
            return self._read(ws)
        except Exception as exc:
            if self._keepalive_expired:
                timeout = self._settings.ping_timeout
                return Ending(None, f"keepalive ping timeout (no answer within {timeout} s)", exc)
            if self._closing and not self._aborted:
                return Ending(None, "closed by the client", None)
            if self._aborted:
                return Ending(None, "connection aborted", exc)
            return Ending(None, f"connection lost: {describe(exc)}", exc)

    def _read(self, ws: websocket.WebSocket) -> Ending:
        # A listener may hold events, and wait to wake their readers, until its flush() (the
        # client's core does: one hand-over and one wake-up per burst rather than per event).
        # It is called before every read that may block, and when reading ends.
        flush = self._listener.flush
        try:
            return self._read_frames(ws, flush)
        finally:
            flush()

    def _read_frames(self, ws: websocket.WebSocket, flush: Callable[[], None]) -> Ending:
        """Read the socket, parse its frames, deliver the messages, answer the control frames.

        Returns how the connection ended: a close frame (answered), or a protocol violation or
        undecodable zlib stream (the client closed the connection; the code is None there, so
        the supervisor reconnects whatever ``fatal_close_codes`` says).

        Raises:
            Exception: whatever the socket raised (OSError, ssl.SSLError), or ConnectionError
                when the gateway ended the TCP stream without a close frame.
        """
        settings = self._settings
        limit = settings.max_message_size
        decode = Decoder(settings.encoding, limit).decode
        feed = FrameParser(limit).feed
        listener = self._listener
        deliver = listener.deliver
        monotonic = time.monotonic
        # Only websocket-client's public socket: the parsing is _frames' (no I/O there), from
        # 64 KiB reads, where websocket-client's own reader makes three system calls for a
        # small frame, each of which releases the GIL. The handshake reads its response one
        # byte at a time, so nothing of the first frames is left in websocket-client.
        sock = ws.sock
        if sock is None:  # closed meanwhile by abort() and teardown
            raise ConnectionError("the socket is closed")
        recv = sock.recv
        timeout = socket.timeout

        while True:
            flush()
            try:
                data = recv(_RECV_SIZE)
            except timeout:  # a socket timeout set for the writes' deadlines: read on
                continue
            if not data:
                raise ConnectionError("the gateway ended the TCP stream without a close frame")
            self._last_rx = monotonic()  # any byte from the gateway is a sign of life
            for item in feed(data):
                kind = item.__class__
                if kind is str:
                    binary = False
                elif kind is bytes or kind is bytearray:
                    binary = True
                elif kind is Ping:
                    flush()  # the send may block
                    self.send_pong(item.data)  # type: ignore[union-attr]
                    continue
                elif kind is Pong:
                    continue
                elif kind is Close:
                    return self._peer_closed(item)  # type: ignore[arg-type]
                else:
                    return self._violated(item)  # type: ignore[arg-type]
                try:
                    event = decode(item, binary)  # type: ignore[arg-type]
                except DecodeError as exc:
                    listener.decode_failed(exc)
                    if exc.fatal:
                        self.close(exc.close_code or 1007)
                        return Ending(None, f"undecodable zlib stream: {exc}", exc)
                    continue
                self.delivered += 1
                deliver(event)

    def _violated(self, violation: ProtocolError) -> Ending:
        """Fail the connection for a frame that breaks RFC 6455 or the size limit.

        The violation is a fatal decode error for the stats and the "error" handlers; the
        close frame carries the RFC's code. The Ending has no code: the code is the client's
        own, so it must not count as a fatal close code received from the gateway.
        """
        code = violation.code
        error = DecodeError(
            f"protocol violation, connection failed with close code {code}: {violation.reason}",
            fatal=True,
            close_code=code,
        )
        self._listener.decode_failed(error)
        self.close(code)
        return Ending(None, f"protocol violation ({violation.reason}): closed with {code}", error)

    def _peer_closed(self, frame: Close) -> Ending:
        """Answer the gateway's close frame (unless it answers ours); say how it ended."""
        code, reason = frame.code, frame.reason
        with self._lock:
            answer = not self._closing
        if answer:
            self.close(code if code is not None else 1000)
        elif not reason:
            reason = "closed by the client"
        return Ending(code, reason, None)


def describe(exc: BaseException) -> str:
    """A short description of a dependency's exception, for messages and logs."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
