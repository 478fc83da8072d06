"""The LocalGateway's counters and records, and the ``wait_for_*`` family that waits on them."""

from __future__ import annotations

from typing import Any

from ._core import GatewayCore

__all__ = ["Observations"]


class Observations(GatewayCore):
    """What the gateway saw (identifies, messages, closes...) and how to wait for it."""

    # -- counters and records --------------------------------------------------------------------

    @property
    def clients(self) -> int:
        """The number of identified clients connected now."""
        self._check_owner()
        with self._lock:
            return len(self._clients)

    @property
    def connections(self) -> int:
        """The number of TCP connections accepted on the websocket port(s) so far."""
        self._check_owner()
        with self._lock:
            return self._connection_count

    @property
    def discovery_requests(self) -> int:
        """The number of discovery requests (``GET /available`` or ``/port``) received so far."""
        self._check_owner()
        with self._lock:
            return self._discovery_requests

    @property
    def identifies(self) -> list[dict[str, Any]]:
        """Every identify payload received (JSON objects, rejected ones too), in order; a copy."""
        self._check_owner()
        with self._lock:
            return list(self._identifies)

    @property
    def received(self) -> list[Any]:
        """Every client message received after identify, in order; a copy.

        Each is the decoded JSON value, or the raw bytes when it was not JSON.
        """
        self._check_owner()
        with self._lock:
            return list(self._received)

    @property
    def closes(self) -> list[tuple[int | None, str]]:
        """For every identified connection that ended, in order: ``(code, reason)`` of the
        close frame the client sent (or echoed), ``(None, "")`` when none came; a copy."""
        self._check_owner()
        with self._lock:
            return list(self._closes)

    # -- waiting ---------------------------------------------------------------------------------

    def wait_for_clients(self, n: int = 1, timeout: float = 5.0) -> None:
        """Block until at least ``n`` identified clients are connected at the same time.

        Raises:
            TimeoutError: not reached within ``timeout`` seconds.
            RuntimeError: the gateway stopped meanwhile, or belongs to the parent process.
        """
        self._wait(lambda: len(self._clients) >= n, timeout, f"{n} identified client(s)")

    def wait_for_identifies(self, n: int = 1, timeout: float = 5.0) -> None:
        """Block until at least ``n`` identify payloads were received in all (cumulative).

        Raises:
            TimeoutError: not reached within ``timeout`` seconds.
            RuntimeError: the gateway stopped meanwhile, or belongs to the parent process.
        """
        self._wait(lambda: len(self._identifies) >= n, timeout, f"{n} identify payload(s)")

    def wait_for_connections(self, n: int = 1, timeout: float = 5.0) -> None:
        """Block until at least ``n`` TCP connections were accepted in all (cumulative).

        Raises:
            TimeoutError: not reached within ``timeout`` seconds.
            RuntimeError: the gateway stopped meanwhile, or belongs to the parent process.
        """
        self._wait(lambda: self._connection_count >= n, timeout, f"{n} connection(s)")

    def wait_for_received(self, n: int = 1, timeout: float = 5.0) -> None:
        """Block until at least ``n`` client messages were received after identify, in all.

        Raises:
            TimeoutError: not reached within ``timeout`` seconds.
            RuntimeError: the gateway stopped meanwhile, or belongs to the parent process.
        """
        self._wait(lambda: len(self._received) >= n, timeout, f"{n} client message(s)")

    def wait_for_closes(self, n: int = 1, timeout: float = 5.0) -> None:
        """Block until at least ``n`` identified connections have ended, in all (see
        :attr:`closes`).

        Raises:
            TimeoutError: not reached within ``timeout`` seconds.
            RuntimeError: the gateway stopped meanwhile, or belongs to the parent process.
        """
        self._wait(lambda: len(self._closes) >= n, timeout, f"{n} ended connection(s)")

    def wait_for_discovery_requests(self, n: int = 1, timeout: float = 5.0) -> None:
        """Block until at least ``n`` discovery requests were received, in all.

        Raises:
            TimeoutError: not reached within ``timeout`` seconds.
            RuntimeError: the gateway stopped meanwhile, or belongs to the parent process.
        """
        self._wait(lambda: self._discovery_requests >= n, timeout, f"{n} discovery request(s)")
