"""The LocalGateway's faults on demand: drops, close codes, silence, broken discovery, moves."""

from __future__ import annotations

import time

from ._core import GatewayCore
from ._listener import Listener
from ._wire import SENDABLE_CLOSE_CODES, logger

__all__ = ["DISCOVERY_MODES", "FaultControls"]

DISCOVERY_MODES = (None, "500", "garbage", "hang")


class FaultControls(GatewayCore):
    """Ways to make the gateway misbehave, for testing how a client copes."""

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
        self._check_owner()
        if code not in SENDABLE_CLOSE_CODES:
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
        self._check_owner()
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
        self._check_owner()
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
        self._check_owner()
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
        self._check_owner()
        if mode not in DISCOVERY_MODES:
            raise ValueError(f"unknown discovery mode {mode!r}; expected one of {DISCOVERY_MODES}")
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
        self._check_owner()
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
        self._check_owner()
        with self._lifecycle_lock:
            if not self.running:
                raise RuntimeError("the LocalGateway is not running")
            deadline = time.monotonic() + timeout
            if not new_port:
                self.abort(timeout)
                return
            # Bind the new port while the old one is still held, so that they differ.
            new_listener = Listener(self, self._open_listener(0))
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
