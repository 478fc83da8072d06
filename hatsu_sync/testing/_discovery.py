"""The LocalGateway's discovery endpoint: ``GET /available`` (and ``/port``) over HTTP(S).

What each request is answered is decided by the gateway (its discovery faults); this module
only serves HTTP, one named daemon thread per request, all tracked so that stop() joins them.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import socketserver
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from ._wire import logger

if TYPE_CHECKING:
    from ._core import GatewayCore

__all__ = ["DISCOVERY_PATHS", "DiscoveryServer"]

DISCOVERY_PATHS = ("/available", "/port")


class _DiscoveryHandler(BaseHTTPRequestHandler):
    server: DiscoveryServer
    protocol_version = "HTTP/1.0"
    # A socket timeout, so that a client that stops reading cannot hold a thread forever.
    timeout = 10.0

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in DISCOVERY_PATHS:
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


class DiscoveryServer(ThreadingHTTPServer):
    """The discovery endpoint: one named daemon thread per request, all tracked for stop()."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], gateway: GatewayCore) -> None:
        self.gateway = gateway
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._workers_lock = threading.Lock()
        self._workers: dict[threading.Thread, Any] = {}
        self._numbers = itertools.count(1)
        self._stop_serving = threading.Event()
        super().__init__(address, _DiscoveryHandler)

    def serve(self) -> None:
        """Answer requests until :meth:`stop_serving`, looking every 50 ms.

        Used instead of ``serve_forever()``, whose ``shutdown()`` waits without a deadline for
        the loop to notice: ``stop()`` must return within its timeout whatever happens.
        """
        self.timeout = 0.05
        while not self._stop_serving.is_set():
            self.handle_request()

    def stop_serving(self) -> None:
        """Make :meth:`serve` return within 50 ms, or at once if it has not begun (never
        blocks)."""
        self._stop_serving.set()

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

    def inherited_requests(self) -> list[Any]:
        """The request sockets of the threads that ran at fork() (for a child to close its
        copies); reads without the lock, which a parent thread may have held at the fork."""
        return list(self._workers.values())

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
