"""RFC 6455 frames from the server to messages: a parser that does no I/O, no threads.

The transport feeds :meth:`FrameParser.feed` the bytes exactly as the socket gave them, split
anywhere, and gets back, in order, what they completed:

- ``str``: a whole text message, its UTF-8 already checked (json.loads takes it as is);
- ``bytes`` or ``bytearray``: a whole binary message;
- :class:`Ping`, :class:`Pong`, :class:`Close`: control frames;
- :class:`ProtocolError`: the server broke the protocol (or sent a message over the size
  limit); the connection must be failed with its ``code``. It is always the last item: the
  parser reads nothing more after it, nor after a :class:`Close`.

What it refuses (RFC 6455 section 5 and 7.4; no extension is ever negotiated):

- 1002: reserved bits (RSV1-3), reserved opcodes, a masked frame, a control frame that is
  fragmented or over 125 bytes, a continuation with no message open, a new message while one
  is open, a close frame of 1 byte, with an invalid code, or with a reason that is not UTF-8;
- 1007: a text message that is not UTF-8 (strict: encoded surrogates such as ``ed a0 80`` are
  refused), checked once the message is whole, across its fragments;
- 1009: a frame or a fragmented message over ``max_message_size``, refused from the header
  that announces it, before any of its payload is read or buffered.

The 1002 checks come before the size rule: an invalid frame is a protocol error whatever its
size. Memory: at most one frame's bytes are held while it arrives (its header was checked
against the limit first), and a fragmented message is assembled in one ``bytearray``, so a
message of a million tiny fragments costs its bytes, not a million objects.
"""

from __future__ import annotations

from typing import Union

__all__ = ["Close", "FrameParser", "Item", "Ping", "Pong", "ProtocolError"]

_CONT, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# Codes a close frame may carry (RFC 6455 7.4.1 and the IANA registry, as websockets checks
# them): 1004-1006 and 1015 are reserved or local-only, 1016-2999 unassigned; 3000-4999 are
# for libraries and applications. Anything else is a protocol error.
_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


class ProtocolError(Exception):
    """The server broke RFC 6455, or sent a message over the size limit.

    Attributes:
        code: the close code to fail the connection with: 1002 (protocol error), 1007 (a
            text message that is not UTF-8) or 1009 (a message over ``max_message_size``).
        reason: what was wrong, in words; it names sizes and codes, never payload bytes.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.reason} (close code {self.code})"


class Ping:
    """A ping frame; ``data`` is its payload (at most 125 bytes), to echo in the pong."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Ping({len(self.data)} bytes)"


class Pong:
    """A pong frame; ``data`` is its payload (at most 125 bytes)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Pong({len(self.data)} bytes)"


class Close:
    """A valid close frame: ``code`` (None when the frame had no payload) and ``reason``."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int | None, reason: str) -> None:
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return f"Close({self.code!r}, {len(self.reason)} characters)"


Item = Union[str, bytes, bytearray, Ping, Pong, Close, ProtocolError]


class FrameParser:
    """Parses the frames of ONE connection, from the server's side (no masks expected).

    Attributes:
        max_message_size: the largest message accepted, in bytes of payload (fragments
            summed); a bigger one is a :class:`ProtocolError` with code 1009.
        finished: True once a :class:`Close` or a :class:`ProtocolError` came out; later
            bytes are ignored.
    """

    __slots__ = ("_frag", "_have", "_need", "_pending", "_text", "finished", "max_message_size")

    def __init__(self, max_message_size: int) -> None:
        """Prepare to parse a new connection's frames.

        Raises:
            ValueError: ``max_message_size`` is not a positive integer.
        """
        if type(max_message_size) is not int or max_message_size < 1:
            raise ValueError(
                f"max_message_size must be a positive integer, not {max_message_size!r}"
            )
        self.max_message_size = max_message_size
        self.finished = False
        # The start of a frame that is not complete yet, in the pieces it came in: they are
        # joined once, when ``_have`` reaches ``_need`` (the bytes that frame needs to make
        # progress), so a big frame costs one copy however many reads bring it.
        self._pending: list[bytes] = []
        self._have = 0
        self._need = 0
        # The fragmented message being assembled (None: no message open). A single fragment
        # is kept as the bytes it came in; a second one moves it all into a bytearray.
        self._frag: bytes | bytearray | None = None
        self._text = False

    def __repr__(self) -> str:
        open_message = "" if self._frag is None else f" assembling={len(self._frag)}"
        done = " finished" if self.finished else ""
        return f"<FrameParser max_message_size={self.max_message_size}{open_message}{done}>"

    def feed(self, data: bytes) -> list[Item]:
        """Take the next bytes from the socket; return what they completed, in order.

        Returns:
            Messages and control frames (see the module's docstring), possibly none; a
            :class:`ProtocolError` is returned, not raised, as the last item, after the
            messages that came before it. After it, or after a :class:`Close`, every call
            returns an empty list.
        """
        if self.finished or not data:
            return []
        if self._have:
            pending = self._pending
            pending.append(data)
            self._have += len(data)
            if self._have < self._need:
                return []
            buf = b"".join(pending)
        else:
            buf = data
        out: list[Item] = []
        append = out.append
        limit = self.max_message_size
        fast = min(limit, 125)  # short frames at most this long need no size check
        frag = self._frag
        n = len(buf)
        pos = 0
        need = 0
        error: ProtocolError | None = None
        closed = False
        while True:
            avail = n - pos
            if avail < 2:
                need = 2
                break
            b1 = buf[pos]
            b2 = buf[pos + 1]
            # The usual frame first: a whole unmasked text or binary message up to 125 bytes.
            if b2 <= fast and frag is None and (b1 == 0x81 or b1 == 0x82):
                end = pos + 2 + b2
                if end > n:
                    need = 2 + b2
                    break
                if b1 == 0x81:
                    try:
                        append(buf[pos + 2 : end].decode())
                    except UnicodeDecodeError as exc:
                        error = _not_utf8(exc)
                        break
                else:
                    append(buf[pos + 2 : end])
                pos = end
                continue

            opcode = b1 & 0x0F
            # The checks that need only the first two bytes, before the size rule.
            if b1 & 0x70:
                error = ProtocolError(1002, "reserved bits (RSV1-3) set, but no extension")
                break
            if b2 & 0x80:
                error = ProtocolError(1002, "masked frame from the server")
                break
            if opcode >= _CLOSE:
                if opcode > _PONG:
                    error = ProtocolError(1002, f"reserved opcode {opcode:#x}")
                    break
                if not b1 & 0x80:
                    error = ProtocolError(1002, "fragmented control frame")
                    break
                if b2 > 125:
                    error = ProtocolError(1002, "control frame over 125 bytes")
                    break
            elif opcode > _BINARY:
                error = ProtocolError(1002, f"reserved opcode {opcode:#x}")
                break
            elif opcode == _CONT:
                if frag is None:
                    error = ProtocolError(1002, "continuation frame without a message")
                    break
            elif frag is not None:
                error = ProtocolError(1002, "new message inside a fragmented one")
                break

            length = b2
            start = pos + 2
            if length == 126:
                if avail < 4:
                    need = 4
                    break
                length = buf[pos + 2] << 8 | buf[pos + 3]
                start += 2
            elif length == 127:
                if avail < 10:
                    need = 10
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start += 8
            # The size rule, from the header: nothing of an oversized message is read.
            if opcode < _CLOSE:
                total = length if frag is None else len(frag) + length
                if total > limit:
                    error = _too_big(length, total, limit, frag is not None or not b1 & 0x80)
                    break
            end = start + length
            if end > n:
                need = end - pos
                break
            pos = end

            if opcode == _CONT:
                if length:
                    assert frag is not None
                    if type(frag) is bytes:
                        frag = bytearray(frag)
                    frag += buf[start:end]
                if b1 & 0x80:
                    assert frag is not None
                    if self._text:
                        try:
                            append(frag.decode())
                        except UnicodeDecodeError as exc:
                            error = _not_utf8(exc)
                            break
                    else:
                        append(frag)
                    frag = None
            elif opcode != _CLOSE and opcode >= _PING:
                append((Ping if opcode == _PING else Pong)(buf[start:end]))
            elif opcode == _CLOSE:
                item = _close(buf[start:end])
                if isinstance(item, ProtocolError):
                    error = item
                else:
                    append(item)
                    closed = True
                break
            elif b1 & 0x80:  # a whole text or binary message in one frame
                if opcode == _TEXT:
                    try:
                        append(buf[start:end].decode())
                    except UnicodeDecodeError as exc:
                        error = _not_utf8(exc)
                        break
                else:
                    append(buf[start:end])
            else:  # the first fragment of a message
                frag = buf[start:end]
                self._text = opcode == _TEXT

        if error is not None or closed:
            if error is not None:
                append(error)
            self.finished = True
            self._frag = None
            self._pending = []
            self._have = 0
            return out
        self._frag = frag
        if pos < n:
            self._pending = [buf[pos:]] if pos else [buf]
            self._have = n - pos
            self._need = need
        else:
            self._pending = []
            self._have = 0
        return out


def _not_utf8(exc: UnicodeDecodeError) -> ProtocolError:
    """The 1007 error for a text message; it says where, never which bytes."""
    return ProtocolError(1007, f"text message is not UTF-8 at byte {exc.start} ({exc.reason})")


def _too_big(length: int, total: int, limit: int, fragmented: bool) -> ProtocolError:
    """The 1009 error for a frame, or a fragmented message, over ``limit``."""
    if fragmented and total != length:
        what = f"a fragmented message reaches {total} bytes"
    else:
        what = f"a frame announces {length} bytes"
    return ProtocolError(1009, f"{what}, over max_message_size ({limit} bytes)")


def _close(payload: bytes) -> Close | ProtocolError:
    """The close frame ``payload`` holds, or why it is invalid."""
    if not payload:
        return Close(None, "")
    if len(payload) == 1:
        return ProtocolError(1002, "close frame with a 1-byte payload")
    code = payload[0] << 8 | payload[1]
    if code not in _CLOSE_CODES and not 3000 <= code < 5000:
        return ProtocolError(1002, f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        return ProtocolError(1002, "close reason is not UTF-8")
    return Close(code, reason)
