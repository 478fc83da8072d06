"""Hand-written hostile websocket servers on 127.0.0.1 (raw sockets), for the transport's bounds.

A :class:`HostileServer` accepts connections on an ephemeral port and runs a handler for each in
its own thread; the handler gets a :class:`Peer`, with the pieces of a websocket server that a
test needs to misbehave in one chosen way (drip the handshake, stop reading, offer an extension,
close right after HELLO...). Every thread ends at :meth:`HostileServer.stop`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import struct
import threading
from collections.abc import Iterable
from typing import Any, Callable

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


class PeerGone(Exception):
    """The client closed the connection (or the server is stopping)."""


class Peer:
    """One accepted connection, seen from the server."""

    def __init__(self, server: HostileServer, sock: socket.socket, number: int) -> None:
        self.server = server
        self.sock = sock
        self.number = number  # 1 for the first connection
        self.request = b""
        self.frames: list[tuple[int, bytes]] = []  # what the client sent after the handshake

    # -- handshake --------------------------------------------------------------------------------

    def read_request(self) -> dict[str, str]:
        """Read the client's upgrade request; return its headers (lower-case names)."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise PeerGone
            data += chunk
        self.request = data
        headers = {}
        for line in data.decode("latin-1").split("\r\n")[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        return headers

    def answer_head(self, headers: dict[str, str], extra: Iterable[str] = ()) -> bytes:
        """The 101 answer to ``headers``, with ``extra`` header lines."""
        accept = base64.b64encode(
            hashlib.sha1((headers["sec-websocket-key"] + _GUID).encode()).digest()
        ).decode()
        lines = [
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {accept}",
            *extra,
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def accept(self, extra: Iterable[str] = ()) -> None:
        """Read the request and answer 101 (with ``extra`` header lines)."""
        self.sock.sendall(self.answer_head(self.read_request(), extra))

    # -- frames -----------------------------------------------------------------------------------

    def send_frame(self, opcode: int, payload: bytes) -> None:
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", 0x80 | opcode, length)
        elif length < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 126, length)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 127, length)
        self.sock.sendall(head + payload)

    def send_event(self, name: str, data: Any = None) -> None:
        self.send_frame(TEXT, json.dumps({"t": name, "d": data}).encode())

    def send_close(self, code: int, reason: str = "") -> None:
        self.send_frame(CLOSE, struct.pack("!H", code) + reason.encode())

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise PeerGone
            data += chunk
        return data

    def recv_frame(self) -> tuple[int, bytes]:
        """The client's next frame, unmasked (recorded in ``frames``)."""
        b1, b2 = self._exactly(2)
        length = b2 & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._exactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._exactly(8))[0]
        key = self._exactly(4) if b2 & 0x80 else b"\0\0\0\0"
        data = self._exactly(length)
        payload = bytes(byte ^ key[i % 4] for i, byte in enumerate(data))
        opcode = b1 & 0x0F
        with self.server._changed:  # wakes a test's wait_for() on what the client sent
            self.frames.append((opcode, payload))
            self.server._changed.notify_all()
        return opcode, payload

    def serve(self) -> None:
        """Behave: answer pings and the close frame, until the client goes."""
        while True:
            opcode, payload = self.recv_frame()
            if opcode == PING:
                self.send_frame(PONG, payload)
            elif opcode == CLOSE:
                self.send_frame(CLOSE, payload[:2])
                return

    def hello(self) -> None:
        """Read the identify, then send HELLO and READY, as the gateway does."""
        self.recv_frame()
        self.send_event("HELLO", {"heartbeat_interval": 41250})
        self.send_event("READY", {"session_id": "hidden"})


Handler = Callable[[Peer], None]


class HostileServer:
    """A TCP server on 127.0.0.1 that runs ``handler(peer)`` for each connection."""

    def __init__(self, handler: Handler, *, rcvbuf: int | None = None) -> None:
        self._handler = handler
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # inherited by accepted sockets: a window that fills at once
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        self._changed = threading.Condition()
        self.peers: list[Peer] = []
        self.finished: list[Peer] = []  # peers whose handler returned
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self.stopped = threading.Event()  # set by stop(): handlers that wait end then
        self._accepter = threading.Thread(target=self._accept, name="hostile-accept", daemon=True)

    def __enter__(self) -> HostileServer:
        self._accepter.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def connections(self) -> int:
        with self._changed:
            return len(self.peers)

    def wait_for(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """Wait until ``predicate()`` (called under the server's lock) is true; fail after
        ``timeout``."""
        with self._changed:
            ok = self._changed.wait_for(predicate, timeout)
        assert ok, "the hostile server did not see what the test waited for"
        return ok

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return  # stopped
            with self._changed:
                if self._stopping:
                    sock.close()
                    return
                peer = Peer(self, sock, len(self.peers) + 1)
                self.peers.append(peer)
                thread = threading.Thread(
                    target=self._run, args=(peer,), name="hostile-peer", daemon=True
                )
                self._threads.append(thread)
                self._changed.notify_all()
            thread.start()

    def _run(self, peer: Peer) -> None:
        try:
            self._handler(peer)
        except (PeerGone, OSError):
            pass
        finally:
            with self._changed:
                self.finished.append(peer)
                self._changed.notify_all()

    def stop(self) -> None:
        """Close every socket and join every thread."""
        with self._changed:
            self._stopping = True
            peers = list(self.peers)
        self.stopped.set()
        with contextlib.suppress(OSError):  # wakes accept(); close() alone does not
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for peer in peers:
            with contextlib.suppress(OSError):
                peer.sock.shutdown(socket.SHUT_RDWR)
            peer.sock.close()
        self._accepter.join(5.0)
        for thread in self._threads:
            thread.join(5.0)
        assert not any(t.is_alive() for t in [self._accepter, *self._threads])


def hold(peer: Peer, seconds: float = 30.0) -> None:
    """Keep the connection open, reading nothing, until the server stops (at most ``seconds``)."""
    peer.server.stopped.wait(seconds)
