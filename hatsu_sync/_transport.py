"""The transport: one websocket-client socket per attempt and the supervisor that reconnects.

Threads, and why there are this many:

- ``hatsu-sync-transport`` (one per client while it runs): the supervisor. It runs discovery,
  the handshake and the identify, then reads the connection until it ends, then decides: stop,
  or back off and reconnect. It never runs user code, so pings are always answered.
- ``hatsu-sync-keepalive`` (one per connection, when ``ping_interval`` is set): pings the
  gateway and aborts the socket when nothing arrives within ``ping_timeout`` of a ping. A
  separate thread makes a dead server visible within ``ping_interval + ping_timeout`` even
  though the reader blocks in ``recv`` (websocket-client's own checker only looks at the clock
  when ``select`` wakes up, up to ``ping_timeout`` late).

websocket-client's ``WebSocketApp.run_forever`` is not used: its reconnect is a fixed sleep to a
fixed URL, and it assembles fragmented messages without any size limit. The reader here parses
the frames itself from 64 KiB reads of websocket-client's socket (see ``Connection._read``), so
it can refuse an oversized frame from its header and skip its payload without ever buffering it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Protocol
from urllib.parse import urlsplit

import websocket
from websocket import ABNF

from ._decode import Decoder
from ._discovery import discover, discovery_url
from ._netconfig import open_direct, proxy_auth, proxy_for, shown_proxy, tls_context
from ._state import Deadline, Disconnected, State
from .exceptions import (
    ClientClosed,
    ConnectError,
    DecodeError,
    DiscoveryError,
    GatewayClosed,
    HatsuError,
)
from .models import Event

__all__ = ["Connection", "Ending", "Listener", "Settings", "Supervisor", "backoff_delay"]

log = logging.getLogger("hatsu_sync")

_TEXT = ABNF.OPCODE_TEXT
_BINARY = ABNF.OPCODE_BINARY
_CONT = ABNF.OPCODE_CONT
_CLOSE = ABNF.OPCODE_CLOSE
_PING = ABNF.OPCODE_PING
_PONG = ABNF.OPCODE_PONG

# The reader asks the socket for this much at a time: one system call brings in many frames.
_RECV_SIZE = 1 << 16


def _fill(recv: Callable[[int], bytes], buf: bytes, pos: int, need: int) -> bytes:
    """``buf[pos:]`` topped up from ``recv`` to at least ``need`` bytes (more if it came)."""
    chunks = [buf[pos:]]
    have = len(chunks[0])
    while have < need:
        chunk = recv(max(_RECV_SIZE, min(need - have, 16 * _RECV_SIZE)))
        chunks.append(chunk)
        have += len(chunk)
    return b"".join(chunks)


def _skip(recv: Callable[[int], bytes], buf: bytes, start: int, length: int) -> tuple[bytes, int]:
    """Throw away the ``length``-byte payload that starts at ``buf[start]``, unbuffered.

    Returns the buffer and where the next frame starts in it.
    """
    end = start + length
    if end <= len(buf):
        return buf, end
    remaining = end - len(buf)
    while remaining > 0:  # recv(n) returns at most n bytes: nothing past the frame is read
        remaining -= len(recv(min(remaining, _RECV_SIZE)))
    return b"", 0


@dataclass(frozen=True)
class Settings:
    """Everything a connection attempt needs; built once by the Client."""

    session_id: str = field(repr=False)
    gateway: str
    url: str | None
    encoding: str
    ping_interval: float | None
    ping_timeout: float | None
    reconnect: bool
    max_retries: int | None
    backoff_base: float
    backoff_max: float
    max_message_size: int
    fatal_close_codes: frozenset[int]
    ssl_context: ssl.SSLContext | None
    proxy: str | None

    def identify(self) -> str:
        """The identify message: always plain JSON text, in zlib mode too."""
        return json.dumps({"session_id": self.session_id, "encoding": self.encoding})

    def scrub(self, text: str) -> str:
        """``text`` without the session id (a gateway may echo it in a close reason)."""
        return text.replace(self.session_id, _REDACTED) if self.session_id in text else text

    def scrub_error(self, error: HatsuError) -> HatsuError:
        """``error``, or a copy without the session id if it or its chain quotes it.

        A hostile gateway that knows the session id from an earlier identify may echo it in a
        discovery answer or a handshake response, which the errors quote. The copy has no
        ``__cause__``: a traceback of the original chain would show the secret again.
        """
        if not _chain_mentions(error, self.session_id):
            return error
        message = self.scrub(str(error))
        if isinstance(error, DiscoveryError):
            return DiscoveryError(
                message, url=error.url, status=error.status, excerpt=self.scrub(error.excerpt)
            )
        return type(error)(message)


_REDACTED = "[redacted]"


def _chain_mentions(error: BaseException, secret: str) -> bool:
    """True if ``secret`` shows in ``error`` or anything it chains to."""
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        if secret in str(exc) or any(secret in repr(arg) for arg in exc.args):
            return True
        pending += [exc.__cause__, exc.__context__]
    return False


class Listener(Protocol):
    """What the supervisor reports to; implemented by the client's core."""

    def deliver(self, event: Event) -> None:
        """A decoded event (called on the transport thread, must not block)."""

    def flush(self) -> None:
        """Wake whoever waits for what ``deliver`` queued (called before a read may block)."""

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


def backoff_delay(
    attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with full jitter: uniform in ``[0, min(cap, base * 2**attempt))``."""
    return rand() * min(cap, base * 2.0 ** min(attempt, 64))


def _close_args(data: bytes) -> tuple[int | None, str]:
    if len(data) < 2:
        return None, ""
    return int.from_bytes(data[:2], "big"), data[2:].decode("utf-8", "replace")


# A NO_PROXY list that exempts no host ("\0" is in no host name): given an explicit proxy,
# websocket-client still checks NO_PROXY, and reads the environment's when given no list.
_EXEMPT_NOTHING = ["\0"]


def _proxy_options(proxy: str) -> dict[str, Any]:
    """websocket-client's options to connect through ``proxy`` (``http://[user:pass@]host:port``,
    as :func:`~hatsu_sync._netconfig.proxy_for` chose it), whatever the environment says."""
    parts = urlsplit(proxy)
    options: dict[str, Any] = {
        "http_proxy_host": parts.hostname,
        "http_proxy_port": parts.port or 80,
        "proxy_type": "http",
        "http_no_proxy": _EXEMPT_NOTHING,
    }
    auth = proxy_auth(proxy)
    if auth is not None:
        options["http_proxy_auth"] = auth
    return options


class Connection:
    """One websocket connection: handshake, identify, the read loop and its keepalive."""

    def __init__(self, url: str, settings: Settings, listener: Listener) -> None:
        self.url = url
        self._settings = settings
        self._listener = listener
        # Guards _ws, _closing and _aborted: close() and abort() come from other threads.
        self._lock = threading.Lock()
        self._ws: websocket.WebSocket | None = None
        self._closing = False
        self._aborted = False
        self._keepalive_expired = False
        self._opened = False  # set once the identify is sent
        self._last_rx = time.monotonic()
        self._stop_keepalive = threading.Event()
        self._keepalive: threading.Thread | None = None
        self.delivered = 0

    # -- opening -------------------------------------------------------------------------------

    def open(self, deadline: Deadline) -> None:
        """Connect, identify and start the keepalive.

        Raises:
            ConnectError: the handshake or the identify failed, or ``abort()`` was called.
        """
        settings = self._settings
        url = self.url
        try:
            proxy = proxy_for(url, settings.proxy)
            secure = urlsplit(url).scheme.lower() == "wss"
            # Always a context: websocket-client's own default would also honour
            # WEBSOCKET_CLIENT_CA_BUNDLE, trusting what discovery does not.
            context = tls_context(settings.ssl_context, url) if secure else None
        except (ValueError, ssl.SSLError) as exc:
            raise ConnectError(f"could not connect to {url}: {_describe(exc)}") from exc
        via = f" (through the proxy {shown_proxy(proxy)})" if proxy is not None else ""
        ws = websocket.WebSocket(
            sslopt={} if context is None else {"context": context},
            sockopt=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            skip_utf8_validation=True,  # 5x faster; json.loads rejects invalid UTF-8 itself
            enable_multithread=True,  # serialises sends: pings and pongs come from two threads
        )
        with self._lock:
            if self._aborted:
                raise ConnectError(f"connection to {self.url} cancelled")
            self._ws = ws
        try:
            if proxy is not None:
                options = _proxy_options(proxy)
            else:
                # Left to open the socket, websocket-client would apply the environment's
                # proxy rules, which hatsu_sync has already applied its own way.
                options = {"socket": open_direct(url, context, deadline.remaining())}
            ws.connect(  # type: ignore[no-untyped-call, unused-ignore]
                url,
                timeout=deadline.remaining(),
                suppress_origin=True,
                # A redirect could lead the identify (the session id) to another host, or
                # from wss:// to plain ws://: refused, as discovery refuses redirects.
                redirect_limit=0,
                **options,
            )
            status = ws.getstatus()  # type: ignore[no-untyped-call, unused-ignore]
            if status != 101:  # websocket-client 1.9.0 and older take an unfollowed 3xx as success
                raise websocket.WebSocketException(
                    f"the handshake was answered with HTTP {status}: redirects are not followed"
                )
            ws.settimeout(None)  # reads block; the keepalive thread notices a dead server
            ws.send(settings.identify())
            with self._lock:
                self._opened = not self._aborted
            if not self._opened:
                raise ConnectionAbortedError("aborted during the handshake")
        except Exception as exc:
            self._close_socket()
            if self._aborted:
                raise ConnectError(f"connection to {self.url} cancelled") from exc
            raise ConnectError(f"could not connect to {url}{via}: {_describe(exc)}") from exc
        self._last_rx = time.monotonic()
        if settings.ping_interval:
            self._keepalive = threading.Thread(
                target=self._keep_alive, name="hatsu-sync-keepalive", daemon=True
            )
            self._keepalive.start()

    # -- sending and stopping (any thread) -----------------------------------------------------

    def send_text(self, text: str) -> None:
        """Send one text message.

        Raises:
            ConnectError: the connection is closing or the send failed.
        """
        ws = self._ws
        if ws is None or self._closing or self._aborted:
            raise ConnectError(f"not connected to {self.url}")
        try:
            ws.send(text)
        except Exception as exc:
            raise ConnectError(f"sending to {self.url} failed: {_describe(exc)}") from exc

    def close(self, code: int = 1000) -> None:
        """Start the closing handshake (once); the reader ends when the gateway answers."""
        with self._lock:
            if self._closing or self._aborted or self._ws is None:
                return
            if not self._opened:  # mid-handshake there is no closing handshake to wait for
                ws = None
            else:
                self._closing = True
                ws = self._ws
        if ws is None:
            self.abort()
            return
        try:
            ws.send_close(code)
        except Exception as exc:
            log.debug("sending the close frame failed: %s", _describe(exc))
            self.abort()

    def abort(self) -> None:
        """Shut the socket down at once: the reader's blocked ``recv`` returns and it ends."""
        with self._lock:
            self._aborted = True
            ws = self._ws
        sock = ws.sock if ws is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed or never connected
                sock.shutdown(socket.SHUT_RDWR)

    def _close_socket(self) -> None:
        ws = self._ws
        if ws is not None:
            ws.shutdown()  # type: ignore[no-untyped-call, unused-ignore]

    def teardown(self) -> None:
        """Stop the keepalive thread and close the socket (on the transport thread)."""
        self._stop_keepalive.set()
        keepalive = self._keepalive
        if keepalive is not None and keepalive is not threading.current_thread():
            keepalive.join(5.0)
        self._close_socket()

    # -- keepalive -----------------------------------------------------------------------------

    def _keep_alive(self) -> None:
        interval = self._settings.ping_interval
        timeout = self._settings.ping_timeout
        assert interval
        ws = self._ws
        assert ws is not None
        stop = self._stop_keepalive
        next_ping = time.monotonic() + interval
        while not stop.wait(max(0.0, next_ping - time.monotonic())):
            sent = time.monotonic()
            next_ping = sent + interval
            try:
                ws.ping()
            except Exception as exc:
                log.debug("ping failed: %s", _describe(exc))
                return  # the reader sees the same failure and ends the connection
            if timeout is None:
                continue
            if stop.wait(timeout):
                return
            # Any frame counts as a sign of life: under a heavy stream the pong can wait
            # behind buffered data frames, and those prove the gateway is there.
            if self._last_rx < sent:
                log.warning("no answer to a ping within %s s: dropping the connection", timeout)
                self._keepalive_expired = True
                self.abort()
                return

    # -- reading (the transport thread) --------------------------------------------------------

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
            if isinstance(exc, websocket.WebSocketProtocolException):
                self.close(1002)
            return Ending(None, f"connection lost: {_describe(exc)}", exc)

    def _read(self, ws: websocket.WebSocket) -> Ending:
        # A listener may queue events without waking their readers until its flush() (the
        # client's core does: one wake-up per burst rather than one per event). It is called
        # before every read that may block, and when reading ends.
        flush = self._listener.flush
        try:
            return self._read_frames(ws, flush)
        finally:
            flush()

    def _read_frames(self, ws: websocket.WebSocket, flush: Callable[[], None]) -> Ending:
        settings = self._settings
        limit = settings.max_message_size
        zlib_mode = settings.encoding == "zlib"
        decode = Decoder(settings.encoding, limit).decode
        listener = self._listener
        deliver = listener.deliver
        monotonic = time.monotonic
        # Frames are parsed here, from a buffer filled up to 64 KiB at a time. websocket-client's
        # frame_buffer makes one recv call for the header, one for the length and one for the
        # payload: three system calls for a small frame, each of which releases the GIL to
        # whichever thread wants it. The reads still go through websocket-client's own recv, so
        # the end of the stream, TLS and socket errors surface exactly as they did.
        fb: Any = ws.frame_buffer
        socket_recv: Callable[[int], bytes] = fb.recv

        def recv(size: int) -> bytes:
            flush()
            data = socket_recv(size)
            self._last_rx = monotonic()  # any byte from the gateway is a sign of life
            return data

        buf: bytes = b"".join(fb.recv_buffer)  # what websocket-client read ahead, if anything
        fb.recv_buffer = []
        pos = 0  # where the next frame starts in buf
        parts: list[bytes] | None = None  # the fragments of the message being assembled
        size = 0
        binary = False
        discarding = False  # the message being assembled went over the limit

        while True:
            # The header: 2 bytes, then 2 or 8 of extended length, then 4 of mask, if any.
            if len(buf) - pos < 2:
                buf, pos = _fill(recv, buf, pos, 2), 0
            b1 = buf[pos]
            b2 = buf[pos + 1]
            length = b2 & 0x7F
            start = pos + 2
            if length > 125 or b2 & 0x80:
                extra = (2 if length == 126 else 8 if length == 127 else 0) + (
                    4 if b2 & 0x80 else 0
                )
                if len(buf) - start < extra:
                    buf, pos, start = _fill(recv, buf, pos, 2 + extra), 0, 2
                if length == 126:
                    length = int.from_bytes(buf[start : start + 2], "big")
                    start += 2
                elif length == 127:
                    length = int.from_bytes(buf[start : start + 8], "big")
                    start += 8
            fin = b1 & 0x80
            opcode = b1 & 0x0F

            # An oversized frame is refused from its header and its payload skipped unbuffered.
            if length > limit:
                buf, pos = _skip(recv, buf, start + (4 if b2 & 0x80 else 0), length)
                if opcode != _CONT:
                    binary = opcode == _BINARY
                parts, discarding = None, not fin
                if fin:
                    error = self._too_big(limit, fatal=zlib_mode and binary)
                    if error is not None:
                        return error
                continue

            mask = None
            if b2 & 0x80:  # a server must not mask; websocket-client unmasks all the same
                mask = buf[start : start + 4]
                start += 4
            end = start + length
            if len(buf) < end:
                buf, start, end, pos = _fill(recv, buf, pos, end - pos), start - pos, end - pos, 0
            data = buf[start:end]
            pos = end
            if mask is not None:
                data = ABNF.mask(mask, data)
            if b1 & 0x70 or opcode > _BINARY:  # RSV bits, control frames: websocket-client's checks
                ABNF(fin, b1 & 0x40, b1 & 0x20, b1 & 0x10, opcode, 0, data).validate(True)

            if opcode in (_TEXT, _BINARY):
                if parts is not None or discarding:
                    raise websocket.WebSocketProtocolException(
                        "new message inside a fragmented one"
                    )
                binary = opcode == _BINARY
                if not fin:
                    parts, size = [data], len(data)
                    continue
                payload = data
            elif opcode == _CONT:
                if discarding:
                    if fin:
                        discarding = False
                        error = self._too_big(limit, fatal=zlib_mode and binary)
                        if error is not None:
                            return error
                    continue
                if parts is None:
                    raise websocket.WebSocketProtocolException("continuation without a message")
                size += len(data)
                if size > limit:
                    parts, discarding = None, not fin
                    if fin:
                        error = self._too_big(limit, fatal=zlib_mode and binary)
                        if error is not None:
                            return error
                    continue
                if data:  # the deployed server ends each message with an empty fragment
                    parts.append(data)
                if not fin:
                    continue
                payload = parts[0] if len(parts) == 1 else b"".join(parts)
                parts = None
            elif opcode == _PING:
                flush()  # the send may block
                ws.pong(data)
                continue
            elif opcode == _PONG:
                continue
            elif opcode == _CLOSE:
                return self._peer_closed(ws, data)
            else:  # pragma: no cover - validate() refuses unknown opcodes
                raise websocket.WebSocketProtocolException(f"unexpected opcode {opcode}")

            try:
                event = decode(payload, binary)
            except DecodeError as exc:
                listener.decode_failed(exc)
                if exc.fatal:
                    self.close(1007)
                    return Ending(None, f"undecodable zlib stream: {exc}", exc)
                continue
            self.delivered += 1
            deliver(event)

    def _too_big(self, limit: int, *, fatal: bool) -> Ending | None:
        error = DecodeError(f"message over max_message_size ({limit} bytes) discarded", fatal=fatal)
        self._listener.decode_failed(error)
        if not fatal:
            return None
        self.close(1009)
        return Ending(None, "a zlib message over max_message_size broke the stream", error)

    def _peer_closed(self, ws: websocket.WebSocket, data: bytes) -> Ending:
        code, reason = _close_args(data)
        with self._lock:
            answer = not self._closing
            self._closing = True
        if answer:
            try:
                ws.send_close(code if code is not None else 1000)
            except Exception as exc:
                log.debug("answering the close frame failed: %s", _describe(exc))
        elif not reason:
            reason = "closed by the client"
        return Ending(code, reason, None)


class Supervisor:
    """Owns the transport thread: connect, read, and reconnect with backoff, until stopped."""

    def __init__(self, settings: Settings, listener: Listener) -> None:
        self._settings = settings
        self._listener = listener
        self._stop = threading.Event()  # set by stop(): no new attempt, ends a backoff wait
        self._lock = threading.Lock()  # guards _conn
        self._conn: Connection | None = None
        self._thread = threading.Thread(target=self._run, name="hatsu-sync-transport", daemon=True)
        self._first_done = threading.Event()
        self._first_error: HatsuError | None = None
        self._timeout = 10.0

    @property
    def thread(self) -> threading.Thread:
        """The transport thread."""
        return self._thread

    def start(self, timeout: float) -> None:
        """Start the transport thread and wait until the first connection is identified.

        Raises:
            ConnectError: the first connection failed (the thread has then ended).
            ClientClosed: ``stop()`` was called meanwhile.
        """
        self._timeout = timeout
        self._thread.start()
        try:
            # The attempt enforces ``timeout`` itself; the margin only guards against a bug.
            finished = self._first_done.wait(timeout + 5.0)
        except BaseException:  # Ctrl-C while connecting: cancel the attempt, then re-raise
            self.stop(Deadline(2.0))
            raise
        if not finished:
            self.stop(Deadline(2.0))
            raise ConnectError(f"connecting timed out after {timeout} s")
        if self._first_error is not None:
            self._thread.join(5.0)
            raise self._first_error

    def current(self) -> Connection | None:
        """The live connection, if any."""
        return self._conn

    def stop(self, deadline: Deadline) -> bool:
        """Stop reconnecting, close the connection politely, then abort it at ``deadline``.

        Returns True once the transport thread has ended.
        """
        self._stop.set()
        with self._lock:
            conn = self._conn
        if conn is not None:
            conn.close()
        if self._thread is threading.current_thread() or not self._thread.is_alive():
            return not self._thread.is_alive()
        # Give the gateway half the time to answer the close frame, then pull the plug.
        remaining = deadline.remaining()
        self._thread.join(None if remaining is None else remaining / 2)
        if self._thread.is_alive():
            with self._lock:
                conn = self._conn
            if conn is not None:
                conn.abort()
            self._thread.join(deadline.remaining())
        return not self._thread.is_alive()

    def _establish(self) -> Connection:
        try:
            return self._attempt()
        except HatsuError as exc:
            error = self._settings.scrub_error(exc)
            if error is exc:
                raise
        raise error  # out of the except block, so the original is not chained as its context

    def _attempt(self) -> Connection:
        settings = self._settings
        deadline = Deadline(self._timeout)
        url = settings.url
        if url is None:
            url = discover(
                settings.gateway,
                timeout=self._timeout,
                ssl_context=settings.ssl_context,
                proxy=settings.proxy,
            )
            if settings.session_id in url:
                # Only a gateway that saw an earlier identify can know it: never send the
                # credential in a request line (any proxy reads it) or show it as a URL.
                raise DiscoveryError(
                    f"discovery failed: GET {discovery_url(settings.gateway)} answered a URL "
                    "that holds the session id: refused",
                    url=discovery_url(settings.gateway),
                )
        conn = Connection(url, settings, self._listener)
        with self._lock:
            if self._stop.is_set():
                raise ClientClosed("the client was closed while connecting")
            self._conn = conn
        try:
            conn.open(deadline)
        except BaseException:
            with self._lock:
                self._conn = None
            raise
        return conn

    def _run(self) -> None:
        settings = self._settings
        listener = self._listener
        failures = 0  # consecutive failed attempts since the last healthy connection
        first = True
        outcome: HatsuError | None = None
        try:
            while not self._stop.is_set():
                try:
                    conn = self._establish()
                except HatsuError as exc:
                    if first:
                        self._first_error = None if self._stop.is_set() else exc
                        return
                    if self._stop.is_set():
                        return
                    failures += 1
                    log.warning("reconnect attempt %d failed: %s", failures, exc)
                    if settings.max_retries is not None and failures >= settings.max_retries:
                        outcome = _gave_up(failures, exc)
                        return
                    if not self._back_off(failures):
                        return
                    continue

                if first:
                    first = False
                    self._first_done.set()
                listener.state_changed(State.CONNECTED)
                listener.connected(conn.url)
                log.info("connected to %s", conn.url)

                code, reason, _ = conn.run()
                reason = settings.scrub(reason)
                conn.teardown()
                with self._lock:
                    self._conn = None
                failures = 0 if conn.delivered else failures + 1

                if self._stop.is_set():
                    listener.disconnected(Disconnected(code, reason, False))
                    return
                fatal = not settings.reconnect or code in settings.fatal_close_codes
                gave_up = (
                    not fatal
                    and settings.max_retries is not None
                    and failures >= settings.max_retries
                )
                listener.disconnected(Disconnected(code, reason, not (fatal or gave_up)))
                if fatal:
                    log.warning(
                        "connection to %s ended for good (%s)", conn.url, _how(code, reason)
                    )
                    outcome = GatewayClosed(code, reason)
                    return
                if gave_up:
                    outcome = _gave_up(failures, GatewayClosed(code, reason))
                    return
                log.warning(
                    "connection to %s lost (%s): reconnecting", conn.url, _how(code, reason)
                )
                listener.state_changed(State.RECONNECTING)
                if not self._back_off(failures):
                    return
        except BaseException as exc:  # a bug: report it rather than die silently
            log.exception("the transport thread failed")
            outcome = ConnectError(f"internal error in the transport thread: {exc!r}")
            outcome.__cause__ = exc
        finally:
            if first:  # connect() is waiting: it raises this error, the client stays usable
                if self._first_error is None:
                    self._first_error = outcome or ClientClosed(
                        "the client was closed while connecting"
                    )
                self._first_done.set()
            else:
                listener.finished(outcome)

    def _back_off(self, attempt: int) -> bool:
        """Sleep before the next attempt; False if stopped meanwhile."""
        settings = self._settings
        delay = backoff_delay(attempt, settings.backoff_base, settings.backoff_max)
        log.info("next connection attempt in %.2f s", delay)
        return not self._stop.wait(delay)


def _gave_up(failures: int, last: HatsuError) -> ConnectError:
    error = ConnectError(f"gave up reconnecting after {failures} failed attempt(s): {last}")
    error.__cause__ = last
    return error


def _how(code: int | None, reason: str) -> str:
    """How a connection ended, for the log: the close code and reason, whichever there are."""
    if code is None:
        return reason or "no close frame"
    return f"code {code}: {reason}" if reason else f"code {code}"


def _describe(exc: BaseException) -> str:
    """A short description of a dependency's exception, for messages and logs."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
