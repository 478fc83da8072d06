"""Opening a websocket's socket within one total deadline and a byte budget.

websocket-client's handshake reads the response headers one byte at a time with no limit and
a timeout per read, so a gateway that drips its headers, or sends one endless line, holds an
attempt for as long as it likes and grows its memory. Here the socket is opened (TCP, the
proxy's CONNECT tunnel, TLS) by hatsu_sync, and websocket-client's handshake is given a
:class:`BoundedSocket` (``WebSocket.connect(socket=...)``, its public surface) that refuses to
read past :data:`MAX_HEAD_BYTES` of status line and headers, or a line over
:data:`MAX_LINE_BYTES`, and gives every read and write only what is left of the deadline.
The caller also shuts the socket down at the deadline from the shared timer, which bounds the
TLS handshake too. Once the handshake is done, the connection uses the socket itself again.
"""

from __future__ import annotations

import base64
import socket
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ._state import Deadline

__all__ = [
    "MAX_HEAD_BYTES",
    "MAX_LINE_BYTES",
    "BoundedSocket",
    "HandshakeRefused",
    "check_answer",
    "connect_tcp",
    "tunnel",
]

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

    def read_head(self) -> tuple[int, list[str]]:
        """Read an HTTP response head (a proxy's answer), one byte at a time so as to take
        nothing past it; return the status and the header lines.

        Raises:
            HandshakeRefused: over the bounds, or not an HTTP response.
            OSError: the connection failed or the deadline passed.
        """
        lines: list[bytes] = []
        line = bytearray()
        while True:
            byte = self.recv(1)
            if not byte:
                raise ConnectionError("the connection closed before the answer's headers ended")
            line += byte
            if byte == b"\n":
                if not line.strip():
                    break
                lines.append(bytes(line))
                line = bytearray()
        status_line = lines[0].decode("latin-1").split() if lines else []
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/"):
            raise HandshakeRefused("the answer is not an HTTP response")
        try:
            status = int(status_line[1])
        except ValueError:
            raise HandshakeRefused("the answer's status line has no status code") from None
        return status, [line.decode("latin-1").strip() for line in lines[1:]]


def connect_tcp(host: str, port: int, deadline: Deadline) -> socket.socket:
    """A TCP connection to ``host:port`` opened within ``deadline``.

    Raises:
        OSError: the connection failed or timed out.
    """
    sock = socket.create_connection((host, port), deadline.remaining())
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def tunnel(
    sock: socket.socket, host: str, port: int, auth: tuple[str, str] | None, deadline: Deadline
) -> None:
    """Ask the HTTP proxy at the other end of ``sock`` for a tunnel to ``host:port``.

    Raises:
        HandshakeRefused: the proxy did not answer 200, or its answer was out of bounds.
        OSError: the connection failed or the deadline passed.
    """
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        request += f"Proxy-Authorization: Basic {token}\r\n"
    bounded = BoundedSocket(sock, deadline)
    bounded.send((request + "\r\n").encode("utf-8"))
    status, _ = bounded.read_head()
    if status != 200:
        raise HandshakeRefused(f"the proxy refused the tunnel: HTTP {status}")


def wrap_tls(
    sock: socket.socket, context: ssl.SSLContext, host: str, deadline: Deadline
) -> ssl.SSLSocket:
    """``sock`` after a TLS handshake with ``host`` (each read bounded by what is left of
    ``deadline``; the caller's timer bounds the whole).

    Raises:
        ssl.SSLError: the handshake or the verification failed.
        OSError: the connection failed or the deadline passed.
    """
    remaining = deadline.remaining()
    if remaining is not None and remaining <= 0:
        raise socket.timeout("the connection attempt ran out of time")
    sock.settimeout(remaining)
    return context.wrap_socket(sock, server_hostname=host)


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


def target_of(url: str) -> tuple[str, int, bool]:
    """The host, port and whether TLS is needed, for a ws:// or wss:// URL.

    Raises:
        ValueError: the URL has no host.
    """
    parts = urlsplit(url)
    secure = parts.scheme.lower() == "wss"
    host = parts.hostname
    if not host:
        raise ValueError("the websocket URL has no host")
    return host, parts.port or (443 if secure else 80), secure
