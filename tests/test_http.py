"""The HTTP answer parser (no I/O): heads, framings and content codings, fed at every split,
and the budgets that bound what a hostile answer can cost."""

from __future__ import annotations

import gzip
import zlib
from typing import Callable

import pytest

from hatsu_sync._http import MAX_HEAD, BodyReader, Head, HeadReader, ResponseError, parse_head

from .hostile_http import gzip_bomb


def read(data: bytes, limit: int = 1024, pieces: int = 0) -> tuple[Head, BodyReader]:
    """Parse a whole answer; ``pieces`` > 0 feeds it in slices of that many bytes."""
    step = pieces or len(data) or 1
    heads = HeadReader()
    got = None
    index = 0
    while got is None:
        assert index < len(data), "the head never completed"
        got = heads.feed(data[index : index + step])
        index += step
    head, rest = got
    body = BodyReader(head, limit)
    body.feed(rest)
    while not body.done and index < len(data):
        body.feed(data[index : index + step])
        index += step
    if not body.done:
        body.end_of_stream()
    return head, body


def feed_all(feed: Callable[[bytes], object], piece: bytes, times: int) -> None:
    for _ in range(times):
        feed(piece)


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n"
)


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", b"hello world"),
        (b"HTTP/1.0 200 OK\r\n\r\nhello world", b"hello world"),
        (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi", b"hi"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nhi", b"hi"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", b"x"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi and more", b"hi"),
        (CHUNKED, b"hello world"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 31\r\n\r\n"
            + gzip.compress(b"hello world", mtime=0),
            b"hello world",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\n\r\n" + zlib.compress(b"zlib"),
            b"zlib",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\n\r\n" + raw_deflate(b"raw"),
            b"raw",
        ),
    ],
)
def test_answers_parse_the_same_at_every_split(answer: bytes, body: bytes) -> None:
    """Each framing and coding gives the same body whether fed whole, byte by byte or split at
    any boundary."""
    whole = read(answer)[1]
    assert (bytes(whole.body), whole.truncated) == (body, False)
    single = read(answer, pieces=1)[1]
    assert bytes(single.body) == body
    for cut in range(len(answer) + 1):
        heads = HeadReader()
        got = heads.feed(answer[:cut])
        if got is None:
            got = heads.feed(answer[cut:])
            assert got is not None
            head, rest = got
            reader = BodyReader(head, 1024)
            reader.feed(rest)
        else:
            head, rest = got
            reader = BodyReader(head, 1024)
            reader.feed(rest)
            reader.feed(answer[cut:])
        if not reader.done:
            reader.end_of_stream()
        assert bytes(reader.body) == body, cut


def test_head_fields() -> None:
    """Status, reason and headers (names lower-cased, items split on commas) are kept."""
    head = parse_head(b"HTTP/1.1 302 Found\r\nLocation: /x\r\nVary: A, b\r\nvary: C")
    assert (head.status, head.reason) == (302, "Found")
    assert head.values("vary") == ["a", "b", "c"]
    assert head.values("location") == ["/x"]
    assert parse_head(b"HTTP/1.1 200").reason == ""


@pytest.mark.parametrize(
    ("head", "problem"),
    [
        (b"SSH-2.0-OpenSSH", "not an HTTP/1 answer"),
        (b"HTTP/2 200 OK", "not an HTTP/1 answer"),
        (b"HTTP/1.1 20 OK", "not an HTTP/1 answer"),
        (b"HTTP/1.1 200 OK\r\nno colon", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nA: 1\r\n folded", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nBad Name: 1", "malformed header line"),
    ],
)
def test_malformed_heads_are_refused(head: bytes, problem: str) -> None:
    """A status line or header line that is not HTTP/1 is a ResponseError saying which."""
    with pytest.raises(ResponseError, match=problem):
        parse_head(head)


def test_head_budget_counts_every_byte() -> None:
    """A head that does not end within 64 KiB is refused as soon as the budget is passed, fed
    in one piece or as an endless stream of header lines or interim answers."""
    with pytest.raises(ResponseError, match=f"larger than {MAX_HEAD}"):
        HeadReader().feed(b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD)
    reader = HeadReader()
    reader.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(ResponseError, match="larger than"):
        feed_all(reader.feed, b"X-Junk: 1\r\n", MAX_HEAD // 10 + 1)
    reader = HeadReader()
    with pytest.raises(ResponseError, match="larger than"):
        feed_all(reader.feed, b"HTTP/1.1 100 Continue\r\n\r\n", MAX_HEAD // 10 + 1)
    assert HeadReader(limit=40).feed(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n") is not None


def test_body_budget_truncates_and_stops() -> None:
    """A body longer than the limit keeps ``limit`` bytes, is marked truncated and done, and
    ignores what is fed afterwards."""
    _, body = read(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100, limit=10)
    assert (bytes(body.body), body.truncated, body.done) == (b"x" * 10, True, True)
    body.feed(b"more")
    assert bytes(body.body) == b"x" * 10
    exact = read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" + b"x" * 10, limit=10)[1]
    assert (len(exact.body), exact.truncated) == (10, False)


@pytest.mark.parametrize("coding", ["gzip", "x-gzip"])
def test_a_compression_bomb_inflates_no_further_than_the_budget(coding: str) -> None:
    """Megabytes of zeros compressed to a few KiB inflate only to the limit: the decoder is asked
    for at most one byte past it."""
    reader = BodyReader(
        parse_head(f"HTTP/1.1 302 Found\r\nContent-Encoding: {coding}".encode()), 4096
    )
    bomb = gzip_bomb()
    fed = 0
    while not reader.done:
        chunk = next(bomb)
        fed += len(chunk)
        reader.feed(chunk)
        assert fed < 64 * 1024, "the bomb was not cut off"
    assert (len(reader.body), reader.truncated) == (4096, True)


def test_chunk_overhead_and_lines_are_bounded() -> None:
    """A chunk-size line or a trailer without end is refused at its bound, not buffered."""
    reader = BodyReader(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked"), 1024)
    with pytest.raises(ResponseError, match="chunk line is longer"):
        feed_all(reader.feed, b"1;" + b"e" * 1000, 10)
    reader = BodyReader(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked"), 1024)
    reader.feed(b"0\r\n")
    with pytest.raises(ResponseError, match="trailer is larger"):
        feed_all(reader.feed, b"X-Junk: 1\r\n", MAX_HEAD // 10 + 1)


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc", "closed before the answer"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "closed before"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", "conflicting Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "malformed Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9" + b"9" * 30 + b"\r\n\r\n", "malformed Content"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "unsupported Transfer"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n\r\n", "unsupported Content-Encoding"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip, gzip\r\n\r\n", "unsupported Content-Enc"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\nnot gzip", "does not decode as gzip"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + gzip.compress(b"abc")[:-8],
            "ends early",
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc", "not followed by CRLF"),
    ],
)
def test_broken_bodies_are_refused(answer: bytes, problem: str) -> None:
    """Every framing or coding error is a ResponseError saying which."""
    with pytest.raises(ResponseError, match=problem):
        read(answer)
