"""Constants and small socket helpers shared by the parts of the LocalGateway.

Everything in :mod:`hatsu_sync.testing` logs to the ``hatsu_sync.testing`` logger (whichever
module the line comes from), so that one logger name configures the whole test gateway.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import struct
from typing import TYPE_CHECKING, Any

logger = logging.getLogger("hatsu_sync.testing")

FRAGMENT_SIZE = 1024
# How long a closing connection waits for the client's close frame and TCP close.
CLOSE_TIMEOUT = 2.0
# send_many() releases a connection's lock after about this many bytes, so that the connection
# thread can answer pings in between.
SEND_BATCH_BYTES = 256 * 1024
RECV_SIZE = 64 * 1024
# The longest a gateway thread sleeps without looking at its flags (it is woken before that).
IDLE_WAKE = 1.0
# What RFC 6455 lets an endpoint put in a close frame.
SENDABLE_CLOSE_CODES = frozenset(
    [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]
) | frozenset(range(3000, 5000))
gateway_numbers = itertools.count(1)

if TYPE_CHECKING:
    _LoggerAdapter = logging.LoggerAdapter[logging.Logger]
else:
    _LoggerAdapter = logging.LoggerAdapter


class _ProtocolLogger(_LoggerAdapter):
    """The logger handed to websockets: its DEBUG lines show frame contents (the identify holds
    the session id), so DEBUG is off whatever the configuration."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        pass


PROTOCOL_LOGGER = _ProtocolLogger(logging.getLogger("hatsu_sync.testing.protocol"), {})

# Frame header bits; RAW_TEXT and RAW_BINARY are also the opcodes of send_raw() frames.
FIN, CONTINUATION, RAW_TEXT, RAW_BINARY = 0x80, 0x0, 0x1, 0x2
TEXT, BINARY = RAW_TEXT, RAW_BINARY
MESSAGE = -1  # a deliver() kind: a JSON message in the connection's encoding
EMPTY_FINAL_CONTINUATION = bytes((FIN | CONTINUATION, 0))


def linger_zero() -> bytes:
    """The SO_LINGER value that makes close() send a TCP reset."""
    # struct linger is two ints on POSIX, two unsigned shorts on Windows.
    return struct.pack("HH" if os.name == "nt" else "ii", 1, 0)


def close_quietly(sock: socket.socket | None) -> None:
    """Close ``sock`` (if any), ignoring the OSError of an already broken socket."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


def frame_header(first_byte: int, length: int) -> bytes:
    """The header of an unmasked (server-to-client) websocket frame."""
    if length < 126:
        return bytes((first_byte, length))
    if length < 65536:
        return struct.pack("!BBH", first_byte, 126, length)
    return struct.pack("!BBQ", first_byte, 127, length)
