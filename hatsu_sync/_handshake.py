"""The websocket handshake within the attempt's deadline and a byte budget, and its checks.

websocket-client's handshake reads the response headers one byte at a time with no limit and
a timeout per read, so a gateway that drips its headers, or sends one endless line, holds an
attempt for as long as it likes and grows its memory. The socket is opened by hatsu_sync
(``_netconfig.open_socket``: TCP, the proxy's tunnel, TLS, within the deadline), and
websocket-client's handshake is given a :class:`BoundedSocket` (``WebSocket.connect(socket=
...)``, its public surface) that refuses to read past :data:`MAX_HEAD_BYTES` of status line and
headers, or a line over :data:`MAX_LINE_BYTES`, and checks the deadline before every read and
write. The caller also shuts the socket down at the deadline from the shared timer, which ends
a read blocked past it. Once the handshake is done, the connection uses the socket itself.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from ._state import Deadline

__all__ = ["MAX_HEAD_BYTES", "MAX_LINE_BYTES", "BoundedSocket", "HandshakeRefused", "check_answer"]

MAX_HEAD_BYTES = 64 * 1024
"""The most a handshake answer's status line and headers may take, all together."""
MAX_LINE_BYTES = 8 * 1024
"""The longest status or header line accepted (as for http.client and websockets)."""


class HandshakeRefused(Exception):
    """A handshake answer the client will not go on with (too big, too slow, wrong)."""


class BoundedSocket:
    """A socket's stand-in for a handshake: reads within a byte budget, I/O within a deadline.

    It has what websocket-client's handshake uses of a socket (``recv``, ``send``,
    ``gettimeout``, ``fileno``, ``close``...); anything else is the socket's own.
    """

    def __init__(
        self,
        sock: socket.socket,
        deadline: Deadline,
        budget: int = MAX_HEAD_BYTES,
        line_limit: int = MAX_LINE_BYTES,
    ) -> None:
        self._sock = sock
        self._deadline = deadline
        self._left = budget
        self._budget = budget
        self._line_limit = line_limit
        self._line = 0  # bytes of the current line so far
        # Set once: websocket-client reads headers a byte at a time, and settimeout costs a
        # system call. Each read checks the deadline; one blocked past it is ended by the
        # caller's timer, which shuts the socket down at the deadline.
        self._arm()
        sock.settimeout(deadline.remaining())

    def _arm(self) -> None:
        remaining = self._deadline.remaining()
        if remaining is not None and remaining <= 0:
            raise socket.timeout("the connection attempt ran out of time")

    def recv(self, size: int) -> bytes:
        """Read at most ``size`` bytes within the budget and the deadline.

        Raises:
            HandshakeRefused: the answer went over the byte budget or the line limit.
            socket.timeout: the deadline passed.
        """
        if self._left <= 0:
            raise HandshakeRefused(f"the handshake answer's headers are over {self._budget} bytes")
        self._arm()
        data = self._sock.recv(min(size, self._left))
        self._left -= len(data)
        newline = data.rfind(b"\n")
        self._line = len(data) - newline - 1 if newline >= 0 else self._line + len(data)
        if self._line > self._line_limit:
            raise HandshakeRefused(
                f"the handshake answer has a header line over {self._line_limit} bytes"
            )
        return data

    def send(self, data: bytes) -> int:
        """Write all of ``data`` within the deadline (websocket-client ignores partial sends)."""
        self._arm()
        self._sock.sendall(data)
        return len(data)

    def gettimeout(self) -> float | None:
        return self._sock.gettimeout()

    def settimeout(self, timeout: float | None) -> None:
        """Ignored: the deadline decides."""

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def check_answer(status: int, headers: Mapping[str, str] | None) -> None:
    """Refuse a handshake answer the client cannot speak to: not 101, or one that turns on
    an extension or a subprotocol (the client asks for neither, so frames would be misread).

    Raises:
        HandshakeRefused: with what was wrong.
    """
    if status != 101:  # websocket-client 1.9.0 and older take an unfollowed 3xx as success
        raise HandshakeRefused(
            f"the handshake was answered with HTTP {status}: redirects are not followed"
        )
    headers = headers or {}
    extensions = headers.get("sec-websocket-extensions", "").strip()
    if extensions:
        name = extensions.split(";", 1)[0].split(",", 1)[0].strip()[:64]
        raise HandshakeRefused(
            f"the gateway enabled the extension {name!r}, which the client did not ask for"
        )
    protocol = headers.get("sec-websocket-protocol", "").strip()
    if protocol:
        raise HandshakeRefused(
            f"the gateway chose the subprotocol {protocol[:64]!r}, which the client did not offer"
        )
