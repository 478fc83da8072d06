"""The supervisor: the transport thread that connects, reads, and reconnects with backoff.

``hatsu-sync-transport`` (one per client while it runs) runs discovery, the handshake and the
identify, then reads the connection until it ends, then decides: stop, or back off and
reconnect. It never runs user code, so pings are always answered.

The rules it keeps:

- Every attempt (the first and each reconnect) has one total deadline, the timeout of the last
  ``connect()``, for discovery, the handshake and the identify. An attempt that runs out of
  time is a failed attempt.
- ``max_retries`` counts consecutive failed attempts. A connection that ends before it was
  healthy counts as one too: healthy means it delivered an event and stayed up for
  ``Settings.healthy_after`` (one ping interval, or 15 s without client pings). Only a healthy
  connection resets the count, so a gateway that answers HELLO and closes at once gets a
  backoff that grows, and ``max_retries`` ends it.
- With ``retry_first_connect`` the first connection is retried the same way, within the
  ``connect()`` timeout as a whole.
"""

from __future__ import annotations

import logging
import threading
import time

from . import _keepalive
from ._discovery import discover, discovery_url
from ._redact import mentions, redact_url
from ._state import Deadline, Disconnected, State
from ._transport import Connection, Listener, Settings, backoff_delay
from .exceptions import ClientClosed, ConnectError, DiscoveryError, GatewayClosed, HatsuError

__all__ = ["Supervisor"]

log = logging.getLogger("hatsu_sync")


class Supervisor:
    """Owns the transport thread: connect, read, and reconnect with backoff, until stopped."""

    def __init__(self, settings: Settings, listener: Listener) -> None:
        self._settings = settings
        self._listener = listener
        self._stop = threading.Event()  # set by stop(): no new attempt, ends a backoff wait
        self._lock = threading.RLock()  # guards _conn; re-entrant for signal handlers
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
            ConnectError: the first connection failed (the thread has then ended); chained to
                the last failure when ``retry_first_connect`` retried it.
            ClientClosed: ``stop()`` was called meanwhile.
        """
        self._timeout = timeout
        self._thread.start()
        try:
            # The attempts enforce ``timeout`` themselves; the margin only guards against a bug.
            finished = self._first_done.wait(timeout + 5.0)
        except BaseException:  # Ctrl-C while connecting: cancel the attempt, then re-raise
            self.stop(Deadline(2.0))
            raise
        if not finished:
            self.stop(Deadline(2.0))
            raise ConnectError(f"connecting timed out after {timeout} s")
        if self._first_error is not None:
            self._thread.join(5.0)
            _keepalive.timer.settle(1.0)  # connect() promises no thread left behind
            # Not kept: raised, it would hold this frame (and self) through its traceback.
            error, self._first_error = self._first_error, None
            try:
                raise error
            finally:
                del error

    def current(self) -> Connection | None:
        """The live connection, if any."""
        return self._conn

    def stop(self, deadline: Deadline) -> bool:
        """Stop reconnecting, close the connection politely, then abort it at ``deadline``.

        Returns True once the transport thread has ended.
        """
        self._stop.set()
        remaining = deadline.remaining()
        half = None if remaining is None else remaining / 2
        with self._lock:
            conn = self._conn
        if conn is not None:
            conn.close(timeout=half)  # bounded: a gateway that stopped reading costs `half`
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
        if not self._thread.is_alive():
            remaining = deadline.remaining()
            _keepalive.timer.settle(0.5 if remaining is None else min(0.5, remaining))
        return not self._thread.is_alive()

    # -- attempts ---------------------------------------------------------------------------------

    def _establish(self, deadline: Deadline) -> Connection:
        try:
            return self._attempt(deadline)
        except HatsuError as exc:
            error = self._settings.scrub_error(exc)
            if error is exc:
                del error  # a frame holding its own exception would be a reference cycle
                raise
        try:
            raise error  # out of the except block, so the original is not chained as its context
        finally:
            del error

    def _attempt(self, deadline: Deadline) -> Connection:
        """One attempt, all within ``deadline``: discovery, the handshake, the identify.

        Raises:
            DiscoveryError, ConnectError: the attempt failed or ran out of time.
            ClientClosed: ``stop()`` was called.
        """
        settings = self._settings
        url = settings.url
        if url is None:
            remaining = deadline.remaining()
            url = discover(
                settings.gateway,
                timeout=self._timeout if remaining is None else remaining,
                ssl_context=settings.ssl_context,
                proxy=settings.proxy,
            )
            if mentions(url, settings.session_id):
                # Only a gateway that saw an earlier identify can know it: never send the
                # credential in a request line (any proxy reads it) or show it as a URL.
                where = redact_url(discovery_url(settings.gateway))
                raise DiscoveryError(
                    f"discovery failed: GET {where} answered a URL that holds the session id: "
                    "refused",
                    url=where,
                )
        if deadline.remaining() == 0:
            raise ConnectError(
                f"could not connect to {redact_url(url)}: the attempt ran out of time "
                f"({self._timeout:g} s)"
            )
        write_timeout = settings.ping_timeout or self._timeout
        conn = Connection(url, settings, self._listener, write_timeout)
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

    # -- the transport thread ---------------------------------------------------------------------

    def _run(self) -> None:
        settings = self._settings
        listener = self._listener
        failures = 0  # consecutive failed attempts since the last healthy connection
        first = True
        first_deadline = Deadline(self._timeout)  # retry_first_connect's bound
        outcome: HatsuError | None = None
        try:
            while not self._stop.is_set():
                if first:
                    deadline = Deadline(first_deadline.remaining())
                else:
                    deadline = Deadline(self._timeout)
                try:
                    conn = self._establish(deadline)
                except HatsuError as exc:
                    if self._stop.is_set():
                        return
                    failures += 1
                    if first:
                        if not self._retry_first(failures, exc, first_deadline):
                            return
                        continue
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
                listener.connected(conn.shown_url)
                log.info("connected to %s", conn.shown_url)

                code, reason, _ = conn.run()
                reason = settings.scrub(conn.dropped or reason)
                conn.teardown()
                with self._lock:
                    self._conn = None
                up = time.monotonic() - conn.opened_at
                healthy = conn.delivered > 0 and up >= settings.healthy_after
                failures = 0 if healthy else failures + 1

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
                        "connection to %s ended for good (%s)", conn.shown_url, _how(code, reason)
                    )
                    outcome = GatewayClosed(code, reason)
                    return
                if gave_up:
                    outcome = _gave_up(failures, GatewayClosed(code, reason))
                    return
                log.warning(
                    "connection to %s lost (%s): reconnecting", conn.shown_url, _how(code, reason)
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

    def _retry_first(self, failures: int, error: HatsuError, deadline: Deadline) -> bool:
        """After the ``failures``-th failed first attempt: back off and return True to try
        again (``retry_first_connect``, within ``deadline`` and ``max_retries``), or set the
        error ``connect()`` raises and return False."""
        settings = self._settings
        if not settings.retry_first_connect:
            self._first_error = error
            return False
        retries = failures - 1  # the first attempt is not a retry
        remaining = deadline.remaining() or 0.0
        delay = backoff_delay(failures, settings.backoff_base, settings.backoff_max)
        if (settings.max_retries is not None and retries >= settings.max_retries) or (
            delay >= remaining
        ):
            self._first_error = _first_failed(failures, self._timeout, error)
            return False
        log.warning("connection attempt %d failed: %s", failures, error)
        log.info("next connection attempt in %.2f s", delay)
        if self._stop.wait(delay):
            self._first_error = ClientClosed("the client was closed while connecting")
            return False
        return True

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


def _first_failed(failures: int, timeout: float, last: HatsuError) -> ConnectError:
    error = ConnectError(
        f"could not connect within {timeout:g} s ({failures} failed attempt(s)): {last}"
    )
    error.__cause__ = last
    return error


def _how(code: int | None, reason: str) -> str:
    """How a connection ended, for the log: the close code and reason, whichever there are."""
    if code is None:
        return reason or "no close frame"
    return f"code {code}: {reason}" if reason else f"code {code}"
