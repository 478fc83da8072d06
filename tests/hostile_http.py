"""Hostile HTTP servers and proxies for the tests: raw sockets on 127.0.0.1, port 0.

A :class:`HostileServer` runs a *script* (a function of the accepted socket) on its own thread
for each connection: answer slowly, answer without end, lie about sizes, compress a bomb. Every
loop here is bounded in count and in time, watches for the client going away (so a test can
check that nothing reads on after the client gave up), and ends when the server stops.
"""

from __future__ import annotations

import contextlib
import gzip
import selectors
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from typing import Callable

# Every wait here scales with the suite's constant.
from .conftest import T

Script = Callable[[socket.socket, "HostileServer"], None]

GIB = 2**30


class HostileServer:
    """A TCP server on loopback running ``script(conn, server)`` for each connection.

    ``tls`` (a server-side context) wraps every accepted connection. ``client_gone`` is set as
    soon as a script sees the client close or reset its connection; ``sent`` counts the bytes
    the scripts sent, ``connections`` the connections accepted, ``requests`` keeps the request
    heads the scripts read.
    """

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.stopping = threading.Event()
        self.client_gone = threading.Event()
        self.sent = 0
        self.connections = 0
        self.requests: list[bytes] = []
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._accepter = threading.Thread(target=self._accept, name="test-hostile-accept")

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> HostileServer:
        self._accepter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop accepting, cut every connection, and wait for every script to end."""
        self.stopping.set()
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", self.port), timeout=T).close()
        self._accepter.join(T)
        self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(T)
        assert not any(t.is_alive() for t in [self._accepter, *self._threads])

    def count(self, n: int) -> None:
        with self._lock:
            self.sent += n

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self.stopping.is_set():
                conn.close()
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), name="test-hostile-conn")
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.add(conn)
        try:
            conn.settimeout(T)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
                with self._lock:
                    self._conns.add(conn)
            self.script(conn, self)
        except (OSError, ValueError):
            self.client_gone.set()
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()


def read_request(conn: socket.socket, server: HostileServer | None = None) -> bytes:
    """The request head, up to its blank line (at most 64 KiB; b"" if the client went away)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            return b""
        data += chunk
    head = data.partition(b"\r\n\r\n")[0]
    if server is not None:
        server.requests.append(head)
    return head


def client_closed(conn: socket.socket, wait: float) -> bool:
    """Whether the client closed or reset the connection, waiting at most ``wait`` seconds."""
    with selectors.DefaultSelector() as selector:
        selector.register(conn, selectors.EVENT_READ)
        if not selector.select(wait):
            return False
    try:
        pending = conn.recv(65536)
    except ssl.SSLWantReadError:
        return False
    except OSError:
        return True
    return not pending


def drip(
    conn: socket.socket,
    server: HostileServer,
    data: bytes,
    interval: float = 0.5,
    repeat_last: bool = True,
    max_seconds: float = 6 * T,
) -> None:
    """Send ``data`` one byte every ``interval`` seconds, then (``repeat_last``) keep sending its
    last byte, until the client goes away, the server stops or ``max_seconds`` pass."""
    ends = time.monotonic() + max_seconds
    index = 0
    while not server.stopping.is_set() and time.monotonic() < ends:
        if index >= len(data) and not repeat_last:
            return
        byte = data[min(index, len(data) - 1) : min(index, len(data) - 1) + 1]
        try:
            conn.sendall(byte)
        except OSError:
            server.client_gone.set()
            return
        server.count(1)
        index += 1
        if client_closed(conn, interval):
            server.client_gone.set()
            return


def flood(
    conn: socket.socket,
    server: HostileServer,
    chunks: Iterable[bytes],
    max_bytes: int = GIB,
    max_seconds: float = 4 * T,
) -> None:
    """Send ``chunks`` until ``max_bytes`` are out, the client goes away, the server stops or
    ``max_seconds`` pass."""
    ends = time.monotonic() + max_seconds
    conn.settimeout(1.0)
    sent = 0
    for chunk in chunks:
        if sent >= max_bytes or server.stopping.is_set() or time.monotonic() > ends:
            return
        try:
            conn.sendall(chunk)
        except socket.timeout:
            continue  # the client is not reading: keep checking the bounds
        except OSError:
            server.client_gone.set()
            return
        sent += len(chunk)
        server.count(len(chunk))


def repeat(chunk: bytes) -> Iterator[bytes]:
    """``chunk`` for ever (``flood`` bounds it)."""
    while True:
        yield chunk


def gzip_bomb(block: int = 2**20) -> Iterator[bytes]:
    """A gzip stream of zeros, made as it is sent: about 1 KiB on the wire per MiB inflated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(block)
    while True:
        out = compressor.compress(zeros) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if out:
            yield out


def gzip_body(data: bytes) -> bytes:
    return gzip.compress(data)


def head(status: str, *headers: str) -> bytes:
    """A response head: ``head("200 OK", "Content-Length: 3")``."""
    return ("\r\n".join([f"HTTP/1.1 {status}", *headers]) + "\r\n\r\n").encode("latin-1")


def answer(
    conn: socket.socket, server: HostileServer, status: str, body: bytes, *headers: str
) -> None:
    """Read the request, then send a complete answer with a Content-Length."""
    if not read_request(conn, server):
        return
    conn.sendall(head(status, f"Content-Length: {len(body)}", *headers) + body)
    client_closed(conn, T)


def relay(a: socket.socket, b: socket.socket, stopping: threading.Event) -> None:
    """Copy bytes both ways until either side closes or ``stopping`` is set."""
    with selectors.DefaultSelector() as selector:
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        while not stopping.is_set():
            for key, _ in selector.select(0.1):
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = source.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                key.data.sendall(data)


def connect_proxy(conn: socket.socket, server: HostileServer) -> None:
    """A well-behaved CONNECT proxy (loopback targets only)."""
    request = read_request(conn, server)
    if not request:
        return
    method, target, _ = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    host, _, port = target.rpartition(":")
    if method != "CONNECT" or host.strip("[]") not in ("127.0.0.1", "localhost", "::1"):
        conn.sendall(head("403 Forbidden", "Content-Length: 0"))
        return
    with socket.create_connection((host.strip("[]"), int(port)), timeout=T) as upstream:
        conn.sendall(head("200 Connection established"))
        relay(conn, upstream, server.stopping)
