"""The transport: one socket per connection attempt, its writes, deadlines and keepalive.

Threads: the supervisor's ``hatsu-sync-transport`` thread (one per client while it runs, see
``_supervisor.py``) runs the handshake and the identify, then reads the connection until it
ends. Keepalive pings, pong deadlines and write deadlines are served by the one timer thread
of the process (``_keepalive.py``), so a connected client costs two threads: the transport
thread and its callback thread.

Writes do not go through websocket-client's ``send``, which holds a lock for the whole write
with no timeout: a gateway that stopped reading would wedge every later writer (pings, pongs,
the close frame). Frames are built by ``_wire.frame`` (masked, as a client must) and written to
the socket under the connection's own write lock; each write has a deadline, and a write still
blocked at its deadline has its socket shut down from the timer thread, which drops the
connection like a dead peer (then the usual reconnect).

Each attempt has one total deadline. The socket is opened by ``_netconfig.open_socket`` (TCP,
the proxy's tunnel, TLS, within the deadline); the websocket handshake runs on it with bounded
response headers (``_handshake.py``); websocket-client only speaks the HTTP upgrade.

The read loop is ``_reader.Reader``, mixed into :class:`Connection`: it feeds 64 KiB reads of
the socket to :mod:`hatsu_sync._frames`, which refuses an oversized frame from its header and
fails the connection on any RFC 6455 violation.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
import time
import weakref
from functools import partial
from typing import Callable
from urllib.parse import urlsplit

import websocket

from . import _keepalive
from ._handshake import BoundedSocket, check_answer
from ._netconfig import open_socket, proxy_for, shown_proxy, tls_context
from ._reader import Ending, Listener, Reader, describe
from ._redact import redact_url
from ._settings import Settings
from ._state import Deadline
from ._wire import CLOSE, PING, PONG, TEXT, frame, shut, writable
from .exceptions import ConnectError

__all__ = [
    "Connection",
    "Ending",
    "Listener",
    "Settings",
    "Supervisor",
    "backoff_delay",
]

log = logging.getLogger("hatsu_sync")

# The reader asks the socket for this much at a time: one system call brings in many frames.
_RECV_SIZE = 1 << 16


def backoff_delay(
    attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with full jitter: uniform in ``[0, min(cap, base * 2**attempt))``."""
    return rand() * min(cap, base * 2.0 ** min(attempt, 64))


class _WebSocket(websocket.WebSocket):
    """websocket-client's WebSocket, for its handshake; any frame it is asked to write goes
    through the connection's writer (its lock and deadline), never through its own ``send``."""

    def __init__(self, write: Callable[[int, bytes], None]) -> None:
        super().__init__(skip_utf8_validation=True)
        # A weak reference: the connection holds this object, which must not hold it back.
        self._write_ref = weakref.WeakMethod(write)

    def send_frame(self, frame: websocket.ABNF) -> int:
        write = self._write_ref()
        if write is None:
            raise websocket.WebSocketConnectionClosedException("the connection is gone")
        data = frame.data if isinstance(frame.data, bytes) else str(frame.data).encode("utf-8")
        write(frame.opcode, data)
        return len(data)


class Connection(Reader):
    """One websocket connection: handshake, identify, writes, keepalive and the read loop."""

    def __init__(
        self,
        url: str,
        settings: Settings,
        listener: Listener,
        write_timeout: float | None = None,
    ) -> None:
        self.url = url
        self.shown_url = redact_url(url)
        """The URL for messages and logs: its password, if any, redacted."""
        self._settings = settings
        self._listener = listener
        # A write that cannot finish within this drops the connection: the same patience as
        # for a pong, or the connect timeout when pongs are not waited for.
        self._write_timeout = write_timeout or settings.ping_timeout or 10.0
        # Guards _ws, _sock, _closing, _aborted, _opened and _timers. Re-entrant: close() may
        # come from a signal handler that interrupted a close() or abort() of the same thread.
        self._lock = threading.RLock()
        # Serialises whole frames on the socket; held by a write for at most its deadline.
        self._write_lock = threading.Lock()
        self._ws: websocket.WebSocket | None = None
        self._sock: socket.socket | None = None
        self._generation = _keepalive.generation()  # a child process must not touch the socket
        self._closing = False
        self._aborted = False
        self._keepalive_expired = False
        self._opened = False  # set once the identify is sent
        self._registered = False  # with the process's timer
        self._timers: dict[str, _keepalive.Handle] = {}
        self._ended = False  # torn down: schedule nothing more
        self._writing = 0  # the number of the write in progress (0: none)
        self._writes = 0
        self._attempt_late = False
        self._last_rx = time.monotonic()
        self.opened_at = 0.0
        self.dropped: str | None = None
        """Why the client dropped the connection itself, when it did (a blocked write)."""
        self.delivered = 0

    # -- opening -------------------------------------------------------------------------------

    def open(self, deadline: Deadline) -> None:
        """Connect, identify and start the keepalive, all within ``deadline``.

        Raises:
            ConnectError: the handshake or the identify failed, ran out of time, or ``abort()``
                was called.
        """
        settings = self._settings
        shown = self.shown_url
        try:
            proxy = proxy_for(self.url, settings.proxy)
            secure = urlsplit(self.url).scheme.lower() == "wss"
            # Always a context: websocket-client's own default would also honour
            # WEBSOCKET_CLIENT_CA_BUNDLE, trusting what discovery does not.
            context = tls_context(settings.ssl_context, self.url) if secure else None
        except (ValueError, ssl.SSLError) as exc:
            raise ConnectError(f"could not connect to {shown}: {describe(exc)}") from exc
        via = f" (through the proxy {shown_proxy(proxy)})" if proxy is not None else ""
        ws = _WebSocket(self._write_frame)
        with self._lock:
            if self._aborted:
                raise ConnectError(f"connection to {shown} cancelled")
            self._ws = ws
        try:
            self._handshake(ws, proxy, context, deadline)
            self._write(frame(TEXT, settings.identify().encode("utf-8")), deadline.remaining())
            with self._lock:
                self._opened = not self._aborted
                if self._opened:
                    _keepalive.timer.cancel(self._timers.pop("attempt", None))
            if not self._opened:
                raise ConnectionAbortedError("aborted during the handshake")
        except Exception as exc:
            self._end()
            if self._attempt_late:
                raise ConnectError(
                    f"could not connect to {shown}{via}: no connection within the attempt's "
                    "deadline"
                ) from exc
            if self._aborted:
                raise ConnectError(f"connection to {shown} cancelled") from exc
            raise ConnectError(f"could not connect to {shown}{via}: {describe(exc)}") from exc
        self._last_rx = self.opened_at = time.monotonic()
        interval = settings.ping_interval
        if interval:
            self._schedule("ping", self.opened_at + interval, self._ping)

    def _handshake(
        self,
        ws: websocket.WebSocket,
        proxy: str | None,
        context: ssl.SSLContext | None,
        deadline: Deadline,
    ) -> None:
        """Open the socket (through ``proxy`` if any, TLS if ``context``) and run the HTTP
        upgrade on it, within ``deadline`` and the header bounds."""
        # The TCP connection, the proxy's tunnel and TLS, bounded by the deadline as a whole.
        sock = open_socket(self.url, proxy, context, deadline.remaining())
        self._adopt(sock, deadline)
        ws.connect(  # type: ignore[no-untyped-call, unused-ignore]
            self.url,
            socket=BoundedSocket(sock, deadline),
            suppress_origin=True,
            # A redirect could lead the identify (the session id) to another host, or
            # from wss:// to plain ws://: refused, as discovery refuses redirects.
            redirect_limit=0,
        )
        status = ws.getstatus()  # type: ignore[no-untyped-call, unused-ignore]
        check_answer(status or 0, ws.getheaders())  # type: ignore[no-untyped-call, unused-ignore]
        ws.sock = sock  # from now on the socket itself: no bounds, no extra layer
        sock.settimeout(None)  # reads block; the timer notices a dead gateway

    def _adopt(self, sock: socket.socket, deadline: Deadline) -> None:
        """Make ``sock`` this connection's (abort() reaches it) and shut it down at the
        attempt's deadline, whatever step is blocked then (TLS, the tunnel, the upgrade)."""
        with self._lock:
            self._sock = sock
            aborted = self._aborted
        _keepalive.timer.register()
        self._registered = True
        if aborted:
            raise ConnectionAbortedError("aborted during the handshake")
        remaining = deadline.remaining()
        if remaining is not None:
            self._schedule("attempt", time.monotonic() + remaining, self._attempt_overdue)

    def _attempt_overdue(self) -> None:
        with self._lock:
            if self._opened or self._ended:
                return
            self._attempt_late = True
        self.abort()

    # -- writing (any thread) ------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        """Send one text message within the write deadline.

        Raises:
            ConnectError: the connection is closing, the write failed or missed its deadline
                (the connection is then dropped and the client reconnects).
        """
        if self._closing or self._aborted or not self._opened:
            raise ConnectError(f"not connected to {self.shown_url}")
        self._write(frame(TEXT, text.encode("utf-8")))

    def send_pong(self, data: bytes) -> None:
        """Answer a ping with ``data`` (called by the reader).

        Raises:
            ConnectError: the write failed or missed its deadline.
        """
        self._write(frame(PONG, data))

    def _write_frame(self, opcode: int, data: bytes) -> None:
        self._write(frame(opcode, data))

    def _write(self, data: bytes, timeout: float | None = None) -> None:
        """Write ``data`` (whole frames) under the write lock, within the write deadline (or
        ``timeout``, if shorter). A write still blocked at its deadline has its socket shut
        down by the timer thread: the connection ends as with a dead peer.

        Raises:
            ConnectError: not connected, or the write failed or missed its deadline.
        """
        limit = self._write_timeout if timeout is None else min(timeout, self._write_timeout)
        if self._generation != _keepalive.generation():
            raise ConnectError("this connection belongs to the parent process")
        started = time.monotonic()
        if not self._write_lock.acquire(timeout=limit):
            # The write that holds the lock is shut down at its own deadline.
            raise ConnectError(
                f"sending to {self.shown_url} failed: an earlier write was still blocked "
                f"after {limit:g} s"
            )
        try:
            sock = self._sock
            if sock is None or self._aborted:
                raise ConnectError(f"not connected to {self.shown_url}")
            self._writes += 1
            number = self._writing = self._writes
            handle = _keepalive.timer.call_at(
                started + limit, partial(self._write_overdue, number, limit)
            )
            try:
                sock.sendall(data)
            finally:
                self._writing = 0
                _keepalive.timer.cancel(handle)
        except OSError as exc:
            if self.dropped is not None:
                raise ConnectError(f"sending to {self.shown_url} failed: {self.dropped}") from exc
            raise ConnectError(f"sending to {self.shown_url} failed: {describe(exc)}") from exc
        finally:
            self._write_lock.release()

    def _write_overdue(self, number: int, limit: float) -> None:
        """On the timer thread: the write ``number`` is still blocked at its deadline."""
        if self._writing != number:
            return
        self.dropped = f"a write was still blocked after {limit:g} s (the gateway stopped reading)"
        log.warning("dropping the connection to %s: %s", self.shown_url, self.dropped)
        self.abort()

    # -- stopping (any thread) -----------------------------------------------------------------

    def close(self, code: int = 1000, reason: str = "", *, timeout: float | None = None) -> None:
        """Start the closing handshake (once): send a close frame within the write deadline (or
        ``timeout``, if shorter); the reader ends when the gateway answers. A close frame that
        cannot be sent aborts the connection instead. Mid-handshake, aborts."""
        with self._lock:
            if self._closing or self._aborted:
                return
            opened = self._opened
            if opened:
                self._closing = True
        if not opened:  # mid-handshake there is no closing handshake to wait for
            self.abort()
            return
        # At most 123 bytes of reason (a control frame carries 125), cut between characters.
        shown = reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
        payload = code.to_bytes(2, "big") + shown
        try:
            self._write(frame(CLOSE, payload), timeout)
        except ConnectError as exc:
            log.debug("sending the close frame failed: %s", exc)
            self.abort()

    def abort(self) -> None:
        """Shut the socket down at once: a blocked read or write returns and the reader ends.
        In a child process after ``fork()``, the parent's socket is left alone."""
        with self._lock:
            self._aborted = True
            sock = self._sock
        if self._generation == _keepalive.generation():
            shut(sock)

    def teardown(self) -> None:
        """Stop the keepalive and close the socket (on the transport thread)."""
        self._end()

    def _end(self) -> None:
        """Cancel the timers, leave the timer, close the socket (once the writer is out)."""
        with self._lock:
            self._ended = True
            timers = list(self._timers.values())
            self._timers.clear()
            sock = self._sock
            ws = self._ws
        if ws is not None:
            # websocket-client's WebSocket and its frame_buffer refer to each other (through a
            # bound method): unlinked, a closed client is freed by reference counting.
            ws.frame_buffer = None  # type: ignore[assignment, unused-ignore]
        for handle in timers:
            _keepalive.timer.cancel(handle)
        if self._registered:
            self._registered = False
            _keepalive.timer.unregister()
        if sock is None or self._generation != _keepalive.generation():
            return
        shut(sock)  # a write still in progress fails at once
        got = self._write_lock.acquire(timeout=1.0)
        try:
            sock.close()
        finally:
            if got:
                self._write_lock.release()

    # -- keepalive (on the timer thread) ---------------------------------------------------------

    def _schedule(self, name: str, when: float, callback: Callable[[], None]) -> None:
        with self._lock:
            if self._ended:
                return
            self._timers[name] = _keepalive.timer.call_at(when, callback)

    def _ping(self) -> None:
        """Ping, and check at ``ping_timeout`` that something arrived since. The ping is
        skipped when a write is in progress or the socket cannot take it at once (the timer
        thread must never block); that write's own deadline covers that case."""
        settings = self._settings
        sent = time.monotonic()
        assert settings.ping_interval
        if self._ended:
            return
        self._schedule("ping", sent + settings.ping_interval, self._ping)
        if settings.ping_timeout is not None:
            self._schedule("pong", sent + settings.ping_timeout, partial(self._pong_due, sent))
        if not self._write_lock.acquire(blocking=False):
            return
        try:
            sock = self._sock
            if sock is not None and not self._aborted and writable(sock):
                sock.sendall(frame(PING, b""))
        except OSError as exc:
            log.debug("ping failed: %s", describe(exc))  # the reader sees the same failure
        finally:
            self._write_lock.release()

    def _pong_due(self, sent: float) -> None:
        # Any frame counts as a sign of life: under a heavy stream the pong can wait
        # behind buffered data frames, and those prove the gateway is there.
        if self._last_rx >= sent or self._ended:
            return
        timeout = self._settings.ping_timeout
        log.warning("no answer to a ping within %s s: dropping the connection", timeout)
        self._keepalive_expired = True
        self.abort()


# The supervisor lives in its own module; it is imported from here too (it needs this module).
from ._supervisor import Supervisor  # noqa: E402
