"""Gateway messages to events: size limits, the zlib stream, JSON, the model. No I/O, no threads.

The transport hands :meth:`Decoder.decode` each complete websocket message (fragments already
joined) and gets an :class:`~hatsu_sync.models.Event` back, or a
:class:`~hatsu_sync.exceptions.DecodeError` that says whether the connection can go on.

In ``zlib`` mode the whole connection is one zlib stream: the server flushes each message with
``Z_FULL_FLUSH`` (so each ends in ``00 00 ff ff``) and only the first one carries the zlib
header, so messages are inflated by one decompressor, in order. Servers that compress each
message as a complete zlib stream of its own are accepted too: when a stream ends, the next
message starts a new one. Text messages are plain JSON in both modes.

Error messages name what failed and the sizes, never the content: the gateway echoes the
session id inside messages (HELLO, READY, ACK), and these messages end up in logs.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from typing import Any

from .exceptions import DecodeError
from .models import Event, event_from_message

__all__ = ["Decoder"]

_loads = json.loads
_raw_decode = json.JSONDecoder().raw_decode  # what json.loads runs, without its wrapping


def _parse(document: bytes | bytearray | str) -> Any:
    """``json.loads(document)``, about a third faster for the usual message.

    The shortcut takes UTF-8 text holding one JSON value from its first character to its last;
    anything else (leading or trailing whitespace, a BOM, UTF-16, an error) goes to
    ``json.loads`` itself, so results and errors are exactly json.loads's.
    """
    try:
        # json.loads decodes bytes with "surrogatepass" too.
        text = document if isinstance(document, str) else document.decode("utf-8", "surrogatepass")
        value, end = _raw_decode(text)
        if end == len(text):
            return value
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        pass
    return _loads(document)


class Decoder:
    """Decodes the messages of ONE connection (make a new one per connection).

    A decoder holds the connection's zlib state, so messages must be passed in the order they
    arrived, from one thread at a time. After a fatal :class:`DecodeError` (corrupt zlib data,
    or a message inflating past the limit) the stream cannot be resumed: every later binary
    message raises a fatal error too, and the caller should reconnect with a new decoder.

    Attributes:
        encoding: ``"json"`` or ``"zlib"``, as sent in the identify.
        max_message_size: the largest message accepted, in bytes, as received for text and
            after inflating for zlib.
    """

    def __init__(self, encoding: str = "json", max_message_size: int = 16 * 2**20) -> None:
        """Prepare to decode one connection's messages.

        Raises:
            ValueError: ``encoding`` is not ``"json"`` or ``"zlib"``, or ``max_message_size``
                is not a positive integer.
        """
        if encoding not in ("json", "zlib"):
            raise ValueError(f"encoding must be 'json' or 'zlib', not {encoding!r}")
        if type(max_message_size) is not int or max_message_size < 1:
            raise ValueError(
                f"max_message_size must be a positive integer, not {max_message_size!r}"
            )
        self.encoding = encoding
        self.max_message_size = max_message_size
        self._inflater = zlib.decompressobj() if encoding == "zlib" else None
        self._broken = False

    def __repr__(self) -> str:
        state = " broken" if self._broken else ""
        return (
            f"<Decoder encoding={self.encoding!r} max_message_size={self.max_message_size}{state}>"
        )

    def decode(self, payload: bytes | bytearray | str, binary: bool) -> Event:
        """Decode one complete websocket message into an event.

        Args:
            payload: the whole message, fragments joined: the undecoded UTF-8 bytes of a text
                message (a str is accepted too), or the bytes of a binary message.
            binary: whether it arrived as a binary message.

        Returns:
            The event: the model registered for its ``t``, or a base :class:`Event` (see
            :func:`~hatsu_sync.models.event_from_message`). A ``d`` that is a string holding a
            JSON object or array has been decoded again.

        Raises:
            DecodeError: the message is not a JSON object with a string ``t``, is too big,
                is a binary message on a json connection, or its zlib data is corrupt.
                ``fatal`` is True when the zlib stream cannot be resumed (corrupt data, or a
                message inflating past ``max_message_size``): the connection must be
                replaced. The message has the sizes, never the content; the cause is chained.
        """
        limit = self.max_message_size
        if binary:
            document: bytes | bytearray | str = self._inflate(payload)
        else:
            document = payload
            if len(payload) > limit or (
                # A str is measured in characters. Only one that might exceed the limit once
                # encoded (up to 4 bytes a character) is worth encoding to measure.
                type(payload) is str and len(payload) * 4 > limit and _size(payload) > limit
            ):
                size = _size(payload)
                raise DecodeError(
                    f"a {size}-byte text message exceeds max_message_size ({limit} bytes)",
                    size=size,
                )
        try:
            msg = _parse(document)
        except (ValueError, RecursionError) as exc:
            # ValueError covers json.JSONDecodeError and UnicodeDecodeError (json.loads decodes
            # bytes itself); a document nested too deeply raises RecursionError.
            raise DecodeError(
                f"{_describe(payload, document, binary)} is not valid JSON: {_why(exc)}",
                size=_size(payload),
            ) from exc
        if type(msg) is not dict:
            raise DecodeError(
                f"{_describe(payload, document, binary)} is a JSON {_json_type(msg)}, "
                "not a JSON object",
                size=_size(payload),
            )
        name = msg.get("t")
        if type(name) is not str:
            got = "no 't'" if name is None else f"a 't' that is a JSON {_json_type(name)}"
            raise DecodeError(
                f"no event name: {_describe(payload, document, binary)} has {got}",
                size=_size(payload),
            )
        data = msg.get("d")
        if type(data) is str and data.lstrip()[:1] in ("{", "["):
            # READY's `d` is a JSON document encoded as a string. If it does not parse, the
            # string is kept as sent: the event is still delivered.
            with contextlib.suppress(ValueError, RecursionError):
                return event_from_message(msg, _loads(data))
        return event_from_message(msg, data)

    def _inflate(self, payload: bytes | bytearray | str) -> bytes:
        """Inflate one binary message, stopping at ``max_message_size``."""
        size = len(payload)
        inflater = self._inflater
        if inflater is None:
            raise DecodeError(
                f"a {size}-byte binary message arrived on a json connection, "
                "which only takes text messages",
                size=size,
            )
        if self._broken:
            raise DecodeError(
                f"a {size}-byte binary message arrived after the zlib stream broke; "
                "it cannot be inflated on this connection",
                fatal=True,
                size=size,
                close_code=1007,
            )
        if isinstance(payload, str):
            raise TypeError("a binary message must be bytes, not str")
        limit = self.max_message_size
        try:
            # max_length bounds the output: a small message that would inflate to gigabytes
            # (a zlib bomb) stops one byte past the limit, and the rest stays unconsumed.
            document = inflater.decompress(payload, limit + 1)
        except zlib.error as exc:
            # zlib's messages are fixed texts ("invalid distance too far back"): no content.
            self._broken = True
            raise DecodeError(
                f"a {size}-byte binary message holds corrupt zlib data ({exc})",
                fatal=True,
                size=size,
                close_code=1007,
            ) from exc
        if len(document) > limit or inflater.unconsumed_tail:
            self._broken = True
            raise DecodeError(
                f"a {size}-byte binary message inflates to more than max_message_size "
                f"({limit} bytes); inflating stopped there",
                fatal=True,
                size=size,
                close_code=1009,
            )
        if inflater.eof:
            # The message was a complete zlib stream of its own: the next one starts another.
            trailing = len(inflater.unused_data)
            self._inflater = zlib.decompressobj()
            if trailing:
                raise DecodeError(
                    f"a {size}-byte binary message has {trailing} bytes after the end of its "
                    "zlib stream",
                    size=size,
                )
        return document


def _size(payload: bytes | bytearray | str) -> int:
    """The size in bytes of a message as received."""
    if type(payload) is str:
        # surrogatepass: a str with lone surrogates still has a size.
        return len(payload.encode("utf-8", "surrogatepass"))
    return len(payload)


def _describe(
    payload: bytes | bytearray | str, document: bytes | bytearray | str, binary: bool
) -> str:
    """Names a message by its kind and sizes, for error messages: never by its content."""
    if binary:
        return f"a {len(payload)}-byte binary message ({len(document)} bytes inflated)"
    return f"a {_size(payload)}-byte text message"


def _why(exc: BaseException) -> str:
    """Why JSON decoding failed, without quoting the document."""
    if isinstance(exc, json.JSONDecodeError):
        # `msg` is one of the parser's fixed texts; str(exc) would be the same plus positions.
        return f"{exc.msg} at character {exc.pos}"
    if isinstance(exc, UnicodeDecodeError):
        # Not str(exc): it quotes the offending byte.
        return f"invalid UTF-8 at byte {exc.start} ({exc.reason})"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    # E.g. an integer longer than sys.get_int_max_str_digits(): the text could quote it.
    return type(exc).__name__


_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)
