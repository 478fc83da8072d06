"""The state every part of the LocalGateway shares, and the internals its threads call.

:class:`GatewayCore` holds the constructor, the registry of connections and what they
recorded, the discovery answer of the moment, and the process-ownership rule after ``fork()``.
The public surface is assembled in :mod:`._gateway` from this core and the mixins in
:mod:`._observe` (counters and waits) and :mod:`._faults` (misbehaving on demand).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Callable

from ._behaviour import DEFAULT_USER
from ._connection import Connection
from ._discovery import DiscoveryServer
from ._listener import Listener
from ._wire import close_quietly, gateway_numbers, logger

__all__ = ["GatewayCore"]

_GARBAGE_BODY = b"<html><body><h1>It works!</h1></body></html>\n"
_ERROR_BODY = b"Internal Server Error"

# Every gateway of this process, so that a forked child can mark them as its parent's.
_gateways: weakref.WeakSet[GatewayCore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # Runs in the child right after fork(), with no other thread alive: take no lock (a parent
    # thread may have held one at the fork) and touch no socket, only flip a flag.
    for gateway in list(_gateways):
        gateway._inherited = True


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


class GatewayCore:
    """The LocalGateway's constructor, shared state and internals (see :class:`LocalGateway`)."""

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
        self.number = next(gateway_numbers)
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
        self._listener: Listener | None = None
        self._httpd: DiscoveryServer | None = None
        self._http_thread: threading.Thread | None = None
        self._connections: list[Connection] = []
        self._clients: list[Connection] = []
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

        # Messages every client gets right after its READY (set_replay); pre-encoded.
        self._replay: tuple[bytes, ...] = ()
        # The process that created the gateway; set_inherited() marks it in a forked child.
        self._owner_pid = os.getpid()
        self._inherited = False
        _gateways.add(self)

    # -- process ownership ---------------------------------------------------------------------

    def _check_owner(self) -> None:
        """Raise RuntimeError in a child process that inherited this gateway through fork()."""
        if self._inherited:
            raise RuntimeError(
                f"this LocalGateway belongs to the parent process (pid {self._owner_pid}); "
                "start a new LocalGateway in the child process"
            )

    def _release_inherited(self) -> None:
        """In a forked child: close the child's copies of the gateway's descriptors.

        Only close(), never shutdown() or a close frame: the parent holds the same sockets,
        which stay open for it. No lock is taken: a parent thread may have held one at fork.
        """
        sockets: list[socket.socket | None] = []
        listener, httpd = self._listener, self._httpd
        if listener is not None:
            sockets += [listener.sock, listener.wake_r, listener.wake_w]
        if httpd is not None:
            sockets.append(httpd.socket)
            sockets += list(httpd.inherited_requests())
        for conn in list(self._connections):
            sockets += [conn.sock, conn.wake_r, conn.wake_w]
        for sock in sockets:
            close_quietly(sock)
        self._listener = self._httpd = None
        self._connections = []
        self._clients = []

    # -- state read by the connection threads --------------------------------------------------

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`; False in a forked child process."""
        if self._inherited:
            return False
        with self._lock:
            return self._state == "running" and not self._stopping

    @property
    def silent(self) -> bool:
        """True between :meth:`go_silent` and :meth:`resume`."""
        return self._silent

    # -- internals -------------------------------------------------------------------------------

    def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        self._check_owner()
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                if self._stopping or self._state == "stopped":
                    raise RuntimeError(f"the LocalGateway stopped while waiting for {what}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"LocalGateway: no {what} within {timeout:g} s")
                self._cond.wait(remaining)

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
            conn = Connection(self, sock, self._connection_count, listen_port)
            self._connections.append(conn)
            conn.thread.start()
            self._cond.notify_all()

    def _client_identified(self, conn: Connection) -> None:
        with self._cond:
            if conn in self._connections and conn.teardown is None:
                self._clients.append(conn)
                self._cond.notify_all()

    def _client_gone(self, conn: Connection) -> None:
        with self._cond:
            if conn in self._clients:
                self._clients.remove(conn)
                self._cond.notify_all()

    def _connection_ended(self, conn: Connection) -> None:
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
        self, targets: Sequence[Connection], kind: str, deadline: float
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
