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
fixed URL, and it assembles fragmented messages without any size limit. The reader here feeds
64 KiB reads of websocket-client's socket to :mod:`hatsu_sync._frames` (see
``Connection._read``), which refuses an oversized frame from its header and fails the
connection on any RFC 6455 violation.
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

from ._decode import Decoder
from ._discovery import discover, discovery_url
from ._frames import Close, FrameParser, Ping, Pong, ProtocolError
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

# The reader asks the socket for this much at a time: one system call brings in many frames.
_RECV_SIZE = 1 << 16


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

    def send_pong(self, data: bytes) -> None:
        """Answer a ping with ``data``.

        Raises:
            Exception: websocket-client's or the socket's error when the send fails.
        """
        ws = self._ws
        if ws is not None:
            ws.pong(data)

    def close(self, code: int = 1000, reason: str = "") -> None:
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
            ws.send_close(code, reason.encode())
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
