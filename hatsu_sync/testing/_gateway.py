""":class:`LocalGateway`: the public face of the test gateway, assembled from its parts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ._discovery import DiscoveryServer
from ._faults import FaultControls
from ._listener import Listener
from ._observe import Observations
from ._wire import MESSAGE, RAW_BINARY, RAW_TEXT, logger

__all__ = ["LocalGateway"]


class LocalGateway(FaultControls, Observations):
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

    After ``os.fork()`` the child process's copy is inert: :attr:`http_url`, :attr:`ws_url`
    and the ports stay readable (a child may connect its own Client to the parent's gateway),
    :attr:`running` is False, :meth:`stop` only closes the child's copies of the descriptors
    (no shutdown, no close frame: the parent's connections are untouched), and every other
    method raises RuntimeError saying the gateway belongs to the parent process. The parent's
    gateway goes on undisturbed.

    Raises:
        TypeError: ``session_ids`` is a single string rather than a collection.
        ValueError: a negative delay or a non-positive interval, timeout or size, or an
            ``ssl_context`` made for the client side.
    """

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> LocalGateway:
        """Bind both endpoints and start serving; idempotent while running.

        Returns:
            self.

        Raises:
            RuntimeError: the gateway was stopped (it cannot be started again).
            OSError: a port could not be bound.
        """
        self._check_owner()
        with self._lifecycle_lock:
            if self._state == "running":
                return self
            if self._state == "stopped":
                raise RuntimeError("a stopped LocalGateway cannot be started again")
            listen_sock = self._open_listener(self._wanted_ws_port)
            try:
                httpd = DiscoveryServer((self.host, self._wanted_http_port), self)
            except BaseException:
                listen_sock.close()
                raise
            listener = Listener(self, listen_sock)
            http_thread = threading.Thread(
                target=httpd.serve,
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

        In a child process that inherited the gateway through ``fork()``, only closes the
        child's copies of its descriptors (the parent's gateway goes on undisturbed).
        """
        if self._inherited:
            self._release_inherited()
            return
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
                httpd.stop_serving()
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
        if self._inherited:
            return f"<LocalGateway of process {self._owner_pid}, inert in this child process>"
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
        port = self._http_port  # one read: no lock, which also keeps it usable after fork
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
        port = self._ws_port  # one read: no lock, which also keeps it usable after fork
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
        self._check_owner()
        return self.send_many([payload])

    def send_many(self, payloads: Iterable[Any]) -> int:
        """Send many messages to every identified client, in order, batched for speed.

        Each payload is encoded once, then framed (and compressed, for zlib clients) per client.

        Returns:
            The number of clients they were sent to.

        Raises:
            TypeError: a payload is not JSON-serialisable (nothing is sent then).
        """
        self._check_owner()
        items = [json.dumps(payload).encode() for payload in payloads]
        return self._broadcast(MESSAGE, items)

    def send_raw(self, data: str | bytes) -> int:
        """Send ``data`` as is to every identified client: a str as one TEXT frame, bytes as one
        BINARY frame (no JSON, no compression; for testing how a client copes with junk).

        Returns:
            The number of clients it was sent to.

        Raises:
            TypeError: ``data`` is neither str nor bytes.
        """
        self._check_owner()
        if isinstance(data, str):
            return self._broadcast(RAW_TEXT, [data.encode()])
        if isinstance(data, (bytes, bytearray, memoryview)):
            return self._broadcast(RAW_BINARY, [bytes(data)])
        raise TypeError(f"send_raw() takes str or bytes, not {type(data).__name__}")

    def set_replay(self, payloads: Iterable[Any] | None) -> None:
        """Give every client that identifies from now on these messages, in order, right after
        its READY (and to that client only): a recording to play back, as ``hatsu-sync gateway
        --replay`` does. Clients already connected get nothing. None or an empty iterable ends
        the replay.

        Raises:
            TypeError: a payload is not JSON-serialisable (the replay is not changed then).
        """
        self._check_owner()
        encoded = tuple(json.dumps(payload).encode() for payload in payloads or ())
        # One tuple, swapped whole: a connection reads it once, under its own lock.
        self._replay = encoded

    def _broadcast(self, kind: int, items: Sequence[bytes]) -> int:
        with self._lock:
            targets = list(self._clients)
        return sum(1 for conn in targets if conn.deliver(kind, items))
