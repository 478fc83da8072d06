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

import json
import threading
import zlib
from collections import deque
from typing import Any, Callable

from ._build import decoded_event, parse
from .exceptions import DecodeError
from .models import Event

__all__ = ["Decoder", "revive"]

# The recent window (see Decoder): how many of the latest events may stay built, and how many
# bytes of messages at most. A reader that keeps up reads events well inside it (the
# transport hands the GIL over at each read from the socket: a few hundred events at most);
# one that falls behind finds older events holding their text only, and parses it on first
# read. A message over _HOT_MESSAGE bytes is never built in advance: its objects can take 20
# times its text.
_HOT_EVENTS = 512
_HOT_BYTES = 256 * 1024
_HOT_MESSAGE = 64 * 1024


class Decoder:
    """Decodes the messages of ONE connection (make a new one per connection).

    A decoder holds the connection's zlib state, so messages must be passed in the order they
    arrived, from one thread at a time. After a fatal :class:`DecodeError` (corrupt zlib data,
    or a message inflating past the limit) the stream cannot be resumed: every later binary
    message raises a fatal error too, and the caller should fail the connection with the
    error's ``close_code`` and reconnect with a new decoder.

    Events keep the message text, and their fields are built once. While the reader keeps up,
    the decoder builds them at once for the latest events (up to 512 of them and 256 KiB of
    messages), and undoes it for one that leaves that window unread; from then on (the reader
    is behind) events are built on their first read, until one is read while still recent.
    So an unread backlog costs its messages' text, and a reader that keeps up parses once.

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
        self._recent: deque[Event] = deque()  # the latest events, oldest first
        self._recent_bytes = 0
        self._behind = False  # an event left the window unread: build on first read only

    def __repr__(self) -> str:
        state = " broken" if self._broken else ""
        return (
            f"<Decoder encoding={self.encoding!r} max_message_size={self.max_message_size}{state}>"
        )

    def decode(self, payload: bytes | bytearray | str, binary: bool) -> Event:
        """Decode one complete websocket message into an event.

        Args:
            payload: the whole message, fragments joined: a text message as str (already
                checked to be UTF-8) or as its undecoded UTF-8 bytes, or the bytes of a
                binary message. Kept by the event as is when it is bytes or an ASCII str (not
                copied): the caller must not change it afterwards.
            binary: whether it arrived as a binary message.

        Returns:
            The event: the model registered for its ``t``, or a base :class:`Event` (see
            :func:`~hatsu_sync.models.event_from_message`), holding the message's text (after
            inflating) and its size in bytes as ``_nbytes``; ``data``, ``raw`` and the typed
            fields are built on first read. A ``d`` that is a string holding a JSON object or
            array is decoded again.

        Raises:
            DecodeError: the message is not a JSON object with a string ``t``, is too big,
                is a binary message on a json connection, or its zlib data is corrupt.
                ``fatal`` is True when the connection must be failed: a message over
                ``max_message_size`` (``close_code`` 1009, text or inflated; inflating stops
                at the limit), or a zlib stream that cannot be resumed (``close_code`` 1007).
                The message has the sizes, never the content; the cause is chained.
        """
        limit = self.max_message_size
        # `text` is what the event keeps: UTF-8 bytes, or a str if all ASCII (one character
        # outside ASCII can make a str take two or four bytes for every character).
        if binary:
            inflated = self._inflate(payload)
            document: bytes | bytearray | str = inflated
            text: bytes | str = inflated
        elif isinstance(payload, str):
            document = payload
            # A character is at least one byte: only a str that might fit is worth encoding.
            if payload.isascii() or len(payload) > limit:
                text = payload
            else:
                text = payload.encode("utf-8", "surrogatepass")
        else:
            document = text = payload if type(payload) is bytes else bytes(payload)
        nbytes = len(text)
        if nbytes > limit and not binary:
            size = _size(payload)
            raise DecodeError(
                f"a {size}-byte text message exceeds max_message_size ({limit} bytes)",
                fatal=True,
                size=size,
                close_code=1009,
            )
        try:
            msg = parse(document)
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
        if nbytes > _HOT_MESSAGE:
            return decoded_event(msg, text, nbytes, False)
        # Build now only while the reader keeps up: for one that is behind, the building
        # would be undone before it reads the event.
        event = decoded_event(msg, text, nbytes, not self._behind)
        recent = self._recent
        recent.append(event)
        self._recent_bytes += nbytes
        if len(recent) > _HOT_EVENTS or self._recent_bytes > _HOT_BYTES:
            self._cool()
        return event

    def _cool(self) -> None:
        """Take the oldest events out of the recent window, undoing the building of those
        nobody read, and note whether the reader keeps up."""
        recent = self._recent
        while len(recent) > _HOT_EVENTS or self._recent_bytes > _HOT_BYTES:
            old = recent.popleft()
            self._recent_bytes -= old._nbytes
            if not old._lazy:
                self._behind = False  # read while still recent
            else:
                self._behind = True
                if old._hot:
                    old._unbuild()

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


def revive(text: bytes | str) -> Event:
    """The event a message that :meth:`Decoder.decode` accepted decodes to, decoded again.

    For an event that went to the callbacks, ``get_event()``'s buffer keeps only the message
    text (see ``Core.deliver``), and this builds get_event()'s own, equal event from it when it
    is taken: every field built at once, as whoever takes an event reads it.

    Raises:
        Nothing the decoder did not already raise for this text: a message parsed on the
        socket thread may be nested too deeply to parse at the caller's depth, and is then
        parsed on a thread of its own.
    """
    try:
        return _revive(text)
    except RecursionError:
        return _on_fresh_stack(lambda: _revive(text))


def _revive(text: bytes | str) -> Event:
    return decoded_event(parse(text), text, len(text), True)


def _on_fresh_stack(function: Callable[[], Event]) -> Event:
    """``function()`` run on a new thread, whose stack is as shallow as the socket thread's."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(function())
        except BaseException as exc:  # handed to the caller, not to threading.excepthook
            outcome.append(exc)

    thread = threading.Thread(target=run, name="hatsu-sync-revive", daemon=True)
    thread.start()
    # No timeout: the thread only repeats a parse the socket thread finished, and whatever
    # it raises comes back here.
    thread.join()
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result  # type: ignore[no-any-return]


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
