"""HTTP/1.x answers read from bytes, with no I/O: the head, then the body, each within a budget.

Used for the two small HTTP exchanges hatsu_sync makes itself (the discovery request, and a
proxy's answer to ``CONNECT``), where a hostile or broken server must cost a bounded number of
bytes whatever it sends:

- :class:`HeadReader` collects the status line and headers, skipping interim ``1xx`` answers;
  all of them together may take at most ``limit`` bytes (64 KiB by default).
- :class:`BodyReader` undoes the framing (``Content-Length``, ``chunked``, or up to the end of
  the connection) and the content coding (``gzip``/``deflate``, inflated with a bounded
  ``zlib`` call, so that a small compressed body cannot turn into gigabytes), and keeps at most
  ``limit`` bytes of decoded body: one more byte marks the body as truncated and ends reading.

Both are fed the bytes as they arrive, so they can be tested byte by byte without a socket.
"""

from __future__ import annotations

import re
import zlib
from typing import NamedTuple

__all__ = ["MAX_HEAD", "BodyReader", "Head", "HeadReader", "ResponseError", "printable"]

MAX_HEAD = 64 * 1024
"""The most bytes a response head (with its interim answers) may take."""

# A chunk-size line is a hex number and optional extensions: anything longer is not a real one.
_MAX_CHUNK_LINE = 4096
_STATUS_LINE = re.compile(rb"HTTP/1\.[0-9] ([0-9]{3})(?: (.*))?")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_NO_BODY = (204, 304)


class ResponseError(ValueError):
    """The bytes are not an acceptable HTTP/1.x answer (the message says why)."""


class Head(NamedTuple):
    """A response's status line and headers (names lower-cased, in order of arrival)."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]

    def values(self, name: str) -> list[str]:
        """The comma-separated items of every header called ``name``, stripped, lower-cased."""
        items: list[str] = []
        for key, value in self.headers:
            if key == name:
                items.extend(item.strip().lower() for item in value.split(","))
        return [item for item in items if item]


def printable(data: bytes, limit: int = 80) -> str:
    """At most ``limit`` characters of ``data`` for a message, non-printables as ``?``."""
    text = data[:limit].decode("latin-1")
    shown = "".join(c if c.isprintable() and c.isascii() else "?" for c in text)
    return shown + ("..." if len(data) > limit else "")


def parse_head(data: bytes) -> Head:
    """Parse a response head (without its blank line).

    Raises:
        ResponseError: the status line is not ``HTTP/1.x NNN reason``, or a header line is
            malformed (folded lines are refused, as RFC 9112 allows).
    """
    lines = data.split(b"\n")
    status_line = lines[0].rstrip(b"\r")
    match = _STATUS_LINE.fullmatch(status_line)
    if match is None:
        raise ResponseError(f"not an HTTP/1 answer (it began {printable(status_line)!r})")
    headers = []
    for raw in lines[1:]:
        line = raw.rstrip(b"\r")
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            raise ResponseError(f"malformed header line {printable(line)!r}")
        headers.append((name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")))
    reason = printable((match.group(2) or b"").strip(), 60)
    return Head(int(match.group(1)), reason, tuple(headers))


class HeadReader:
    """Collects a response head from bytes as they arrive, within ``limit`` bytes.

    Interim answers (``1xx``) are skipped; their bytes count toward the limit.
    """

    def __init__(self, limit: int = MAX_HEAD) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self._used = 0  # bytes of the interim heads already skipped
        self._scanned = 0  # where the search for the blank line resumes

    def feed(self, data: bytes) -> tuple[Head, bytes] | None:
        """Add ``data``; return the final head and the bytes after it once it is complete.

        Returns:
            ``(head, rest)``, or None while the head is incomplete.

        Raises:
            ResponseError: the head is malformed, or larger than the limit.
        """
        self._buffer += data
        while True:
            match = _BLANK_LINE.search(self._buffer, max(0, self._scanned - 3))
            if match is None:
                self._scanned = len(self._buffer)
                self._check_size(len(self._buffer))
                return None
            self._check_size(match.end())
            head = parse_head(bytes(self._buffer[: match.start()]))
            rest = bytes(self._buffer[match.end() :])
            if not 100 <= head.status < 200:
                return head, rest
            self._used += match.end()
            self._buffer = bytearray(rest)
            self._scanned = 0

    def _check_size(self, size: int) -> None:
        if self._used + size > self._limit:
            raise ResponseError(f"the answer's head is larger than {self._limit} bytes")


class BodyReader:
    """Turns the bytes after a head into the body: unframed, decoded, at most ``limit`` bytes.

    ``done`` is set once the body is complete or truncated (``truncated``: it had more than
    ``limit`` bytes, of which ``body`` keeps the first ``limit``); the caller then stops
    reading. Bytes fed after that are ignored.
    """

    def __init__(self, head: Head, limit: int) -> None:
        """Raises:
        ResponseError: the head announces a framing or content coding that is not supported,
            or a malformed ``Content-Length``.
        """
        self._limit = limit
        self.body = bytearray()
        self.truncated = False
        self.done = False
        self._pending = bytearray()  # chunked framing not yet taken apart
        self._state = "size"  # chunked: size, data, data-end, trailer
        self._left = 0  # bytes still due: of the chunk, or of Content-Length
        self._trailer = 0
        self._decoder, self._coding = _decoder(head)
        self._deflate_start: bytearray | None = bytearray() if self._coding == "deflate" else None
        transfer = head.values("transfer-encoding")
        if transfer:
            if transfer != ["chunked"]:
                raise ResponseError(f"unsupported Transfer-Encoding {', '.join(transfer)!r}")
            self._framing = "chunked"
        elif head.values("content-length"):
            self._framing = "length"
            self._left = _content_length(head.values("content-length"))
        else:
            self._framing = "close"
        if head.status in _NO_BODY or (self._framing == "length" and self._left == 0):
            self._finish()

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the body as they came off the wire.

        Raises:
            ResponseError: the chunked framing or the content coding is broken.
        """
        if self.done or not data:
            return
        if self._framing == "close":
            self._decoded(data)
        elif self._framing == "length":
            taken = data[: self._left]
            self._left -= len(taken)
            self._decoded(taken)
            if self._left == 0 and not self.done:
                self._finish()
        else:
            self._pending += data
            self._unchunk()

    def end_of_stream(self) -> None:
        """The connection closed: that completes a body delimited by it.

        Raises:
            ResponseError: the framing announced more than came, or the compressed body ends
                early.
        """
        if self.done:
            return
        if self._framing != "close":
            raise ResponseError("the connection closed before the answer was complete")
        self._finish()

    # -- inside --------------------------------------------------------------------------------

    def _unchunk(self) -> None:
        pending = self._pending
        while pending and not self.done:
            if self._state == "data":
                taken = bytes(pending[: self._left])
                del pending[: len(taken)]
                self._left -= len(taken)
                if self._left == 0:
                    self._state = "data-end"
                self._decoded(taken)
                continue
            if self._state == "data-end":
                if pending.startswith(b"\r\n") or pending.startswith(b"\n"):
                    del pending[: 2 if pending[0] == 13 else 1]
                    self._state = "size"
                    continue
                if pending == b"\r":
                    return
                raise ResponseError("a chunk is not followed by CRLF")
            end = pending.find(b"\n")
            if end < 0:
                if len(pending) > _MAX_CHUNK_LINE:
                    raise ResponseError(f"a chunk line is longer than {_MAX_CHUNK_LINE} bytes")
                return
            line = bytes(pending[:end]).rstrip(b"\r")
            del pending[: end + 1]
            if self._state == "size":
                self._chunk_size(line)
            else:  # the trailer: header lines up to a blank one
                self._trailer += end + 1
                if self._trailer > MAX_HEAD:
                    raise ResponseError(f"the answer's trailer is larger than {MAX_HEAD} bytes")
                if not line:
                    self._finish()

    def _chunk_size(self, line: bytes) -> None:
        digits = line.split(b";", 1)[0].strip(b" \t")
        if not digits or len(digits) > 16 or digits.strip(b"0123456789abcdefABCDEF"):
            raise ResponseError(f"malformed chunk size {printable(line, 40)!r}")
        self._left = int(digits, 16)
        self._state = "data" if self._left else "trailer"

    def _decoded(self, data: bytes) -> None:
        """Add wire bytes of the body, inflating them if they are compressed."""
        if self._decoder is None:
            self._keep(data)
            return
        room = self._limit + 1 - len(self.body)  # >= 1: the body is not truncated yet
        if self._deflate_start is not None:
            # "deflate" means zlib-wrapped, but some servers send raw deflate: the first two
            # bytes (the zlib header) tell, and are kept until they have come.
            self._deflate_start += data
        try:
            out = self._decoder.decompress(data, room)
        except zlib.error as exc:
            start = self._deflate_start
            if start is not None:
                self._deflate_start = None
                self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                self._decoded(bytes(start))
                return
            raise ResponseError(f"the body does not decode as {self._coding} ({exc})") from None
        if self._deflate_start is not None and len(self._deflate_start) >= 2:
            self._deflate_start = None  # a valid zlib header
        # Output short of ``room`` means every input byte was consumed: nothing is left over.
        self._keep(out)

    def _keep(self, data: bytes) -> None:
        self.body += data
        if len(self.body) > self._limit:
            del self.body[self._limit :]
            self.truncated = True
            self.done = True

    def _finish(self) -> None:
        if self._decoder is not None and not self._decoder.eof and not self.truncated:
            raise ResponseError(f"the {self._coding} body ends early")
        self.done = True


def _content_length(values: list[str]) -> int:
    if len(set(values)) != 1:
        raise ResponseError("conflicting Content-Length headers")
    text = values[0]
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ResponseError(f"malformed Content-Length {text[:20]!r}")
    return int(text)


def _decoder(head: Head) -> tuple[zlib._Decompress | None, str]:
    codings = [c for c in head.values("content-encoding") if c != "identity"]
    if not codings:
        return None, ""
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS), "gzip"
    if codings == ["deflate"]:
        return zlib.decompressobj(zlib.MAX_WBITS), "deflate"
    raise ResponseError(f"unsupported Content-Encoding {', '.join(codings)!r}")
