"""A load generator on loopback that speaks just enough websocket to flood a client.

Run it as its own process (``python benchmarks/loadgen.py``), so that it never competes with
the client under test for the GIL: it prints its port on one line, serves connections until its
standard input closes, then exits. ``benchmarks/run.py`` starts and stops it.

It does the websocket handshake itself on a raw socket, reads the client's first message (the
identify), then writes server frames (unmasked) that were built before the connection came:
in ``flood`` mode in batches of about 256 KiB, as fast as the socket takes them, so the server
is never the bottleneck. What a connection gets is chosen by the query string of its URL::

    ws://127.0.0.1:PORT/?mode=flood&kind=presence&encoding=zlib&count=100000

- ``mode``: ``flood`` (``count`` messages as fast as possible, then a close frame 1000),
  ``rate`` (``count`` messages at ``rate`` per second, each carrying ``"ts"``, the
  ``time.monotonic()`` of its sending: CLOCK_MONOTONIC is system-wide on Linux, so a client in
  another process can subtract it from its own clock), or ``idle`` (nothing; pings are
  answered, and the connection lasts until the client closes or the load generator stops),
  ``burst`` (``count`` messages as in ``flood``, then idle as in ``idle``: the client closes
  a connection that is still open) or ``silent`` (a dead peer: after the identify nothing is
  answered, not even pings or a close frame, until the client drops the connection).
- ``kind``: ``presence``, ``guild_init`` or ``notification`` (see ``payloads.py``).
- ``encoding``: ``json`` (one text frame per message) or ``zlib`` (the deployed server's way,
  docs/protocol.rst: one zlib stream per connection, ``Z_FULL_FLUSH`` after each message, each
  message a binary message fragmented into 1024-byte frames, then an empty final continuation).

Only loopback addresses are served; every connection thread ends with its connection, and the
process ends within a second of its standard input closing.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import resource
import socket
import struct
import sys
import threading
import time
import zlib
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import payloads

__all__ = ["Stream", "build_stream", "frame", "main", "raise_fd_limit"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _BINARY, _CONT, _CLOSE, _PING, _PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
_FRAGMENT = 1024
_BATCH_BYTES = 256 * 1024
# A client that stops reading for this long is gone: the connection is dropped.
_IO_TIMEOUT = 30.0
_MAX_REQUEST = 16 * 1024
_SNDBUF = 1 << 20


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One unmasked server frame."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, 126, n)
    else:
        header = struct.pack("!BBQ", first, 127, n)
    return header + payload


def _zlib_message(compressed: bytes) -> bytes:
    """A compressed message as the deployed server sent it: 1024-byte fragments + empty final."""
    chunks = [compressed[i : i + _FRAGMENT] for i in range(0, len(compressed), _FRAGMENT)]
    frames = [frame(_BINARY if i == 0 else _CONT, c, fin=False) for i, c in enumerate(chunks)]
    frames.append(frame(_CONT, b"", fin=True))
    return b"".join(frames)


class Stream:
    """The pre-built frames of one (kind, encoding) stream.

    Attributes:
        first: the frames of the connection's first message (in zlib mode it alone carries the
            zlib header).
        cycle: the frames of the following messages, one bytes per message, cycled through.
    """

    def __init__(self, first: bytes, cycle: list[bytes]) -> None:
        self.first = first
        self.cycle = cycle

    def batch(self, start: int, count: int) -> bytes:
        """The frames of messages ``start .. start + count - 1`` (message 0 is ``first``)."""
        cycle = self.cycle
        parts = [self.first] if start == 0 else []
        begin = max(start, 1)
        parts.extend(cycle[i % len(cycle)] for i in range(begin, start + count))
        return b"".join(parts)


def build_stream(kind: str, encoding: str) -> Stream:
    """Encode the variants of ``kind`` once, as a connection of ``encoding`` sends them."""
    if encoding == "json":
        frames = [frame(_TEXT, payloads.encode(m)) for m in payloads.messages(kind)]
        return Stream(frames[0], frames)
    first, cycle = payloads.compressed(kind)
    return Stream(_zlib_message(first), [_zlib_message(c) for c in cycle])


class _Reader:
    """Reads the client's frames (masked) from a blocking socket."""

    def __init__(self, sock: socket.socket, initial: bytes = b"") -> None:
        self.sock = sock
        self.buf = initial

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_frame(self) -> tuple[int, bytes]:
        """The next frame's opcode and unmasked payload.

        Raises:
            EOFError: the client closed the connection.
        """
        b1, b2 = self._need(2)
        n = b2 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._need(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._need(8))
        mask = self._need(4) if b2 & 0x80 else b""
        data = self._need(n)
        if mask:
            key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
            data = (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")
        return b1 & 0x0F, data


def _handshake(sock: socket.socket) -> tuple[str, bytes]:
    """Answer the client's upgrade request; return its request target and any extra bytes."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk or len(buf) > _MAX_REQUEST:
            raise EOFError
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    target = lines[0].split(" ")[1]
    key = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
    sock.sendall(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode()
    )
    return target, rest


def _drain(
    reader: _Reader, sock: socket.socket, lock: threading.Lock, closing: threading.Event
) -> None:
    """Answer pings, and the client's close unless ours went first, until the client is done."""
    while True:
        opcode, data = reader.read_frame()
        if opcode == _PING:
            with lock:
                sock.sendall(frame(_PONG, data))
        elif opcode == _CLOSE:
            with lock:
                if not closing.is_set():
                    sock.sendall(frame(_CLOSE, data[:2]))
            return


def _flood(sock: socket.socket, lock: threading.Lock, stream: Stream, count: int) -> None:
    """``count`` messages in batches of about 256 KiB, as fast as the socket takes them."""
    per_batch = max(1, _BATCH_BYTES // len(stream.cycle[0]))
    steady = stream.batch(1, per_batch) if count > per_batch else b""
    sent = 0
    while sent < count:
        n = min(per_batch, count - sent)
        data = steady if sent > 0 and n == per_batch else stream.batch(sent, n)
        with lock:  # a pong from the drain thread must not land inside a batch
            sock.sendall(data)
        sent += n


def _paced(
    sock: socket.socket, lock: threading.Lock, kind: str, encoding: str, count: int, rate: float
) -> None:
    """``count`` messages at ``rate`` per second, each stamped with its send time ``ts``."""
    templates = payloads.messages(kind)
    compressor = zlib.compressobj() if encoding == "zlib" else None
    monotonic = time.monotonic
    start = monotonic()
    for i in range(count):
        delay = start + i / rate - monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing the stream, not synchronising
        message = dict(templates[i % len(templates)])
        message["ts"] = monotonic()
        text = json.dumps(message).encode()
        if compressor is None:
            data = frame(_TEXT, text)
        else:
            data = _zlib_message(compressor.compress(text) + compressor.flush(zlib.Z_FULL_FLUSH))
        with lock:
            sock.sendall(data)


class _Server:
    def __init__(self, host: str) -> None:
        # A benchmark connects up to a thousand idle clients, one after the other.
        self.listener = socket.create_server((host, 0), backlog=1024)
        self.port: int = self.listener.getsockname()[1]
        self.streams: dict[tuple[str, str], Stream] = {}
        self.streams_lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.stopping = False

    def stream(self, kind: str, encoding: str) -> Stream:
        with self.streams_lock:
            key = (kind, encoding)
            if key not in self.streams:
                self.streams[key] = build_stream(kind, encoding)
            return self.streams[key]

    def serve(self) -> None:
        self.listener.settimeout(0.5)
        while not self.stopping:
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self.handle, args=(sock,), daemon=True)
            thread.start()
            self.threads = [t for t in self.threads if t.is_alive()]
            self.threads.append(thread)

    def handle(self, sock: socket.socket) -> None:
        lock = threading.Lock()  # serialises writes: the drain answers pings during a flood
        closing = threading.Event()  # our close frame is sent (or being sent)
        try:
            sock.settimeout(_IO_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
            target, rest = _handshake(sock)
            query = {k: v[-1] for k, v in parse_qs(urlsplit(target).query).items()}
            mode = query.get("mode", "flood")
            kind = query.get("kind", "presence")
            encoding = query.get("encoding", "json")
            count = int(query.get("count", "0"))
            reader = _Reader(sock, rest)
            reader.read_frame()  # the identify
            if mode in ("idle", "burst", "silent"):
                if mode == "burst":
                    _flood(sock, lock, self.stream(kind, encoding), count)
                sock.settimeout(None)  # the client pings every ping_interval, and closes
                if mode == "silent":
                    # Read, so that the client's writes go through, and never answer.
                    while sock.recv(65536):
                        pass
                else:
                    _drain(reader, sock, lock, closing)
                return
            if mode == "flood":
                stream = self.stream(kind, encoding)
                work: Callable[[], None] = functools.partial(_flood, sock, lock, stream, count)
            else:
                rate = float(query.get("rate", "1000"))
                work = functools.partial(_paced, sock, lock, kind, encoding, count, rate)
            drain = threading.Thread(
                target=_quiet, args=(_drain, reader, sock, lock, closing), daemon=True
            )
            drain.start()
            work()
            with lock:
                closing.set()
                sock.sendall(frame(_CLOSE, struct.pack("!H", 1000)))
            drain.join(_IO_TIMEOUT)
        except (OSError, EOFError, ValueError):
            pass  # the client went away, or the benchmark is over
        finally:
            sock.close()

    def stop(self) -> None:
        self.stopping = True
        self.listener.close()


def raise_fd_limit() -> int:
    """Raise this process's limit of open files to its hard limit; return the new soft limit.

    Each idle client holds a socket on both sides; the usual soft limit of 1024 would stop a
    benchmark of a thousand clients short of it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _quiet(function: Callable[..., None], *args: object) -> None:
    with contextlib.suppress(OSError, EOFError):
        function(*args)


def main() -> None:
    """Serve on 127.0.0.1 until standard input closes; print the port first."""
    raise_fd_limit()
    server = _Server("127.0.0.1")
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    print(server.port, flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or dies)
    server.stop()
    thread.join(2.0)


if __name__ == "__main__":
    main()
