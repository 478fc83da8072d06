"""Client frames on the wire: building them, and the socket calls the writer needs."""

from __future__ import annotations

import contextlib
import os
import select
import socket

from websocket import ABNF

__all__ = ["CLOSE", "PING", "PONG", "TEXT", "frame", "shut", "writable"]

TEXT = 0x1
CLOSE = 0x8
PING = 0x9
PONG = 0xA


def frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame: ``opcode`` with ``payload``, masked with a fresh random key."""
    length = len(payload)
    if length < 126:
        head = bytes((0x80 | opcode, 0x80 | length))
    elif length < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    key = os.urandom(4)
    return head + key + ABNF.mask(key, payload)


def writable(sock: socket.socket) -> bool:
    """True if ``sock`` takes a small write at once (poll: works past fd 1024)."""
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLOUT)
            return any(events & select.POLLOUT for _, events in poller.poll(0))
        return bool(select.select([], [sock], [], 0)[1])
    except (OSError, ValueError):  # closed meanwhile
        return False


def shut(sock: socket.socket | None) -> None:
    """Shut ``sock`` down both ways at once, which wakes any thread blocked on it.

    The plain socket's shutdown, also for a TLS socket: ``SSLSocket.shutdown`` would also drop
    its TLS state under a thread that may be reading or writing it.
    """
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed or never connected
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
