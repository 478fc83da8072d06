"""The LocalGateway's listening websocket socket and the thread that accepts on it."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from typing import TYPE_CHECKING

from ._wire import IDLE_WAKE, close_quietly, logger

if TYPE_CHECKING:
    from ._core import GatewayCore

__all__ = ["Listener"]


class Listener:
    """A listening websocket socket and the thread that accepts on it."""

    def __init__(self, gateway: GatewayCore, sock: socket.socket) -> None:
        self.gateway = gateway
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self.wake_r, self.wake_w = socket.socketpair()
        self.stopping = False
        self.thread = threading.Thread(
            target=self._run,
            name=f"hatsu-gateway-{gateway.number}-accept-{self.port}",
            daemon=True,
        )

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        try:
            selector.register(self.sock, selectors.EVENT_READ)
            selector.register(self.wake_r, selectors.EVENT_READ)
            while not self.stopping:
                for key, _ in selector.select(IDLE_WAKE):
                    if key.fileobj is self.wake_r or self.stopping:
                        continue
                    try:
                        conn_sock, _peer = self.sock.accept()
                    except OSError:
                        continue  # the client gave up meanwhile, or we are stopping
                    self.gateway._add_connection(conn_sock, self.port)
        except Exception:
            logger.exception("gateway: accept loop on port %d failed", self.port)
        finally:
            selector.close()

    def stop(self, timeout: float) -> None:
        self.stopping = True
        with contextlib.suppress(OSError):
            self.wake_w.send(b"\0")
        if self.thread.is_alive():
            self.thread.join(timeout)
        close_quietly(self.sock)
        close_quietly(self.wake_r)
        close_quietly(self.wake_w)
