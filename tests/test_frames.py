"""The frame parser, byte by byte, without sockets: RFC 6455 as API.md "Decoding" states it.

Every case is fed whole, split in two at every byte boundary, and one byte at a time; all
three must give the same messages, control frames and error, in the same order. Violations
are framed by a valid message before (it must come out) and one after (it must not).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from hatsu_sync._frames import Close, FrameParser, Ping, Pong, ProtocolError

ROOT = Path(__file__).resolve().parent.parent
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MiB = 1 << 20


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    length: int | None = None,
) -> bytes:
    """One raw frame; ``length`` overrides the announced length (the payload is not cut)."""
    size = len(payload) if length is None else length
    first = (0x80 if fin else 0) | rsv | opcode
    masked = 0x80 if mask is not None else 0
    if size < 126:
        header = bytes([first, masked | size])
    elif size < 1 << 16:
        header = bytes([first, masked | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([first, masked | 127]) + size.to_bytes(8, "big")
    if mask is not None:
        header += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + payload


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return frame(CLOSE, code.to_bytes(2, "big") + reason)


def norm(items: Iterable[Any]) -> list[tuple[Any, ...]]:
    """The parser's output as comparable tuples; fails on a type it must not return."""
    out: list[tuple[Any, ...]] = []
    for item in items:
        if type(item) is str:
            out.append(("text", item))
        elif type(item) in (bytes, bytearray):
            out.append(("binary", bytes(item)))
        elif type(item) is Ping:
            out.append(("ping", item.data))
        elif type(item) is Pong:
            out.append(("pong", item.data))
        elif type(item) is Close:
            out.append(("close", item.code, item.reason))
        elif type(item) is ProtocolError:
            out.append(("error", item.code, item.reason))
        else:
            pytest.fail(f"unexpected item {item!r}")
    return out


def feed(pieces: Iterable[bytes], limit: int) -> list[tuple[Any, ...]]:
    parser = FrameParser(limit)
    items: list[Any] = []
    for piece in pieces:
        items += parser.feed(piece)
    return norm(items)


def parse_everywhere(stream: bytes, limit: int = 1 << 16) -> list[tuple[Any, ...]]:
    """What ``stream`` parses to, checked identical whole, split anywhere, byte by byte."""
    whole = feed([stream], limit)
    for cut in range(1, len(stream)):
        assert feed([stream[:cut], stream[cut:]], limit) == whole, f"split at byte {cut}"
    assert feed([stream[i : i + 1] for i in range(len(stream))], limit) == whole, "bytewise"
    return whole


def codes(result: Sequence[tuple[Any, ...]]) -> list[Any]:
    """The result with errors reduced to their code."""
    return [item[:2] if item[0] == "error" else item for item in result]


BEFORE = frame(TEXT, b"before")
AFTER = frame(TEXT, b"after")

# (id, bad frames, close code); each is framed by BEFORE and AFTER.
VIOLATIONS: list[tuple[str, bytes, int]] = [
    ("invalid-utf8", frame(TEXT, b"\xff\xfe"), 1007),
    ("invalid-utf8-long", frame(TEXT, b'{"t": "X", "d": "\xc3\x28"}' + b"x" * 200), 1007),
    ("surrogate", frame(TEXT, b"\xed\xa0\x80"), 1007),
    (
        "surrogate-fragmented",
        frame(TEXT, b"a\xed", fin=False) + frame(CONT, b"\xa0\x80", fin=False) + frame(CONT),
        1007,
    ),
    (
        "invalid-utf8-in-second-fragment",
        frame(TEXT, b"\xc3", fin=False) + frame(CONT, b"\x41"),
        1007,
    ),
    ("truncated-utf8-at-the-end", frame(TEXT, b"ok\xe2\x82", fin=False) + frame(CONT), 1007),
    ("close-reason-not-utf8", close_frame(1000, b"\xff"), 1002),
    ("close-reason-surrogate", close_frame(1000, b"\xed\xa0\x80"), 1002),
    ("close-1-byte", frame(CLOSE, b"\x03"), 1002),
    ("ping-126-bytes", frame(PING, b"p" * 126), 1002),
    ("pong-126-bytes", frame(PONG, b"p" * 126), 1002),
    ("close-126-bytes", close_frame(1000, b"r" * 124), 1002),
    ("ping-announcing-64-bit-length", frame(PING, b"", length=1 << 16), 1002),
    ("fragmented-ping", frame(PING, b"p", fin=False), 1002),
    ("fragmented-close", frame(CLOSE, b"\x03\xe8", fin=False), 1002),
    ("masked-text", frame(TEXT, b"hi", mask=b"\x01\x02\x03\x04"), 1002),
    ("masked-ping", frame(PING, b"hi", mask=b"\x00\x00\x00\x00"), 1002),
    ("rsv1", frame(TEXT, b"hi", rsv=0x40), 1002),
    ("rsv2", frame(TEXT, b"hi", rsv=0x20), 1002),
    ("rsv3", frame(BINARY, b"hi", rsv=0x10), 1002),
    ("rsv1-on-ping", frame(PING, b"", rsv=0x40), 1002),
    ("rsv-on-continuation", frame(TEXT, b"a", fin=False) + frame(CONT, b"b", rsv=0x20), 1002),
    *[(f"opcode-{op:#x}", frame(op, b"x"), 1002) for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xF)],
    ("continuation-without-message", frame(CONT, b"x"), 1002),
    ("final-continuation-without-message", frame(CONT, b"", fin=True), 1002),
    ("text-inside-fragmented", frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), 1002),
    ("binary-inside-fragmented", frame(BINARY, b"a", fin=False) + frame(BINARY, b"b"), 1002),
    (
        "text-start-inside-fragmented",
        frame(TEXT, b"a", fin=False) + frame(TEXT, b"b", fin=False),
        1002,
    ),
    # The checks come before the size rule: these announce more than the 64 KiB limit.
    ("oversized-reserved-opcode", frame(3, b"", length=1 << 20), 1002),
    ("oversized-rsv1", frame(TEXT, b"", rsv=0x40, length=1 << 20), 1002),
    ("oversized-masked", frame(TEXT, b"", mask=b"abcd", length=1 << 20), 1002),
    ("oversized-stray-continuation", frame(CONT, b"", length=1 << 20), 1002),
    ("oversized-ping", frame(PING, b"", length=1 << 20), 1002),
    ("oversized-close", frame(CLOSE, b"", length=1 << 20), 1002),
    (
        "oversized-new-message-inside-fragmented",
        frame(TEXT, b"a", fin=False) + frame(TEXT, b"", length=1 << 20),
        1002,
    ),
    # The size rule: from the header, before any payload arrives.
    ("oversized-text", frame(TEXT, b"", length=(1 << 16) + 1), 1009),
    ("oversized-binary", frame(BINARY, b"", length=1 << 20), 1009),
    ("announces-2-63", frame(TEXT, b"", length=2**63 - 1) + b"junk" * 50, 1009),
    ("announces-2-64", frame(BINARY, b"", length=2**64 - 1), 1009),
    ("oversized-first-fragment", frame(TEXT, b"", fin=False, length=1 << 20), 1009),
    (
        "fragments-pass-the-limit",
        frame(BINARY, b"a" * 40_000, fin=False) + frame(CONT, b"", fin=False, length=30_000),
        1009,
    ),
]
INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]
VALID_CLOSE_CODES += [3000, 3999, 4000, 4002, 4999]


def parse_framed(bad: bytes) -> list[tuple[Any, ...]]:
    """``bad`` between BEFORE and AFTER, parsed everywhere (the 40 KB case: at 1 KiB steps)."""
    stream = BEFORE + bad + AFTER
    if len(stream) < 4096:
        return parse_everywhere(stream)
    whole = feed([stream], 1 << 16)
    for cut in range(1, len(stream), 1021):
        assert feed([stream[:cut], stream[cut:]], 1 << 16) == whole, f"split at byte {cut}"
    return whole


@pytest.mark.parametrize(
    ("bad", "code"), [c[1:] for c in VIOLATIONS], ids=[c[0] for c in VIOLATIONS]
)
def test_violation_is_a_protocol_error_with_its_code(bad: bytes, code: int) -> None:
    """A violation gives the messages before it, then a ProtocolError with the RFC's close
    code, then nothing, however the bytes are split."""
    result = parse_framed(bad)
    assert codes(result) == [("text", "before"), ("error", code)]
    assert result[-1][2]  # the error says what was wrong


@pytest.mark.parametrize("code", INVALID_CLOSE_CODES)
def test_invalid_close_code_is_1002(code: int) -> None:
    """A close frame with a code RFC 6455 7.4 does not allow on the wire is a 1002 error."""
    result = parse_framed(close_frame(code, b"bye"))
    assert codes(result) == [("text", "before"), ("error", 1002)]
    assert str(code) in result[-1][2]


@pytest.mark.parametrize("code", VALID_CLOSE_CODES)
def test_valid_close_code_ends_the_stream(code: int) -> None:
    """A close frame with a valid code and a UTF-8 reason comes out as Close; nothing after."""
    assert parse_framed(close_frame(code, "é bye".encode())) == [
        ("text", "before"),
        ("close", code, "é bye"),
    ]


def test_empty_close_frame_has_no_code() -> None:
    """A close frame without a payload is Close(None, '')."""
    assert parse_framed(frame(CLOSE)) == [("text", "before"), ("close", None, "")]


def test_close_reason_of_123_bytes_is_valid() -> None:
    """A close frame of exactly 125 bytes (code and a 123-byte reason) is valid."""
    result = parse_framed(close_frame(4000, b"r" * 123))
    assert result == [("text", "before"), ("close", 4000, "r" * 123)]


def test_oversized_frame_fails_at_its_header() -> None:
    """A frame announcing more than the limit fails as soon as its header is complete, with
    none of its payload fed."""
    parser = FrameParser(1000)
    header = frame(TEXT, b"", length=1001)
    assert parser.feed(header[:-1]) == []
    error = parser.feed(header[-1:])
    assert norm(error) == [("error", 1009, error[0].reason)]  # type: ignore[union-attr]
    assert "1001" in error[0].reason  # type: ignore[union-attr]
    assert parser.finished
    assert parser.feed(b"\x81\x02hi") == []


def test_2_63_length_fails_at_once_however_much_junk_follows() -> None:
    """A 2^63-1 length is refused from the header; what follows is never looked at."""
    parser = FrameParser(16 * MiB)
    result = parser.feed(frame(BINARY, b"", length=2**63 - 1) + bytes(MiB))
    assert [(type(i), getattr(i, "code", None)) for i in result] == [(ProtocolError, 1009)]
    assert parser.feed(bytes(MiB)) == []


def test_fragments_fail_at_the_header_that_passes_the_limit() -> None:
    """A fragmented message fails with 1009 at the header of the fragment that takes it
    over the limit, before that fragment's payload arrives."""
    parser = FrameParser(100)
    assert parser.feed(frame(TEXT, b"a" * 60, fin=False)) == []
    assert parser.feed(frame(CONT, b"b" * 40, fin=False)) == []  # exactly 100: fine
    result = norm(parser.feed(frame(CONT, b"", length=1)))
    assert result == [
        ("error", 1009, "a fragmented message reaches 101 bytes, over max_message_size (100 bytes)")
    ]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 65537])
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_length_encodings(size: int, opcode: int) -> None:
    """Payloads at the boundaries of the 7-, 16- and 64-bit lengths come out whole."""
    payload = bytes([0x41 + i % 26 for i in range(size)])
    stream = frame(opcode, payload) + frame(PING, b"p")
    expected = [
        ("text", payload.decode()) if opcode == TEXT else ("binary", payload),
        ("ping", b"p"),
    ]
    if size < 1000:
        assert parse_everywhere(stream, limit=65537) == expected
    for step in (1, 7, 4096, 65536):
        pieces = [stream[i : i + step] for i in range(0, len(stream), step)]
        if step == 1 and size > 1000:
            continue
        assert feed(pieces, 65537) == expected


def test_message_exactly_at_the_limit() -> None:
    """A message of exactly max_message_size bytes, whole or fragmented, is delivered."""
    assert parse_everywhere(frame(TEXT, b"x" * 200), limit=200) == [("text", "x" * 200)]
    fragmented = frame(BINARY, b"y" * 150, fin=False) + frame(CONT, b"z" * 50)
    assert parse_everywhere(fragmented, limit=200) == [("binary", b"y" * 150 + b"z" * 50)]


def test_limit_below_125_applies_to_short_frames() -> None:
    """With a limit under 125 bytes, a short data frame over it is 1009; pings are not
    messages and pass."""
    stream = frame(PING, b"p" * 100) + frame(TEXT, b"a" * 11)
    assert codes(parse_everywhere(stream, limit=10)) == [("ping", b"p" * 100), ("error", 1009)]


def test_fragmented_text_with_a_split_character_and_pings() -> None:
    """A text message whose multi-byte characters straddle fragments, with pings and pongs
    between the fragments and an empty final continuation, comes out whole after them."""
    text = "héllo wörld 日本 🎉".encode()
    cut1, cut2 = text.index(b"\xc3") + 1, text.index("🎉".encode()) + 2
    stream = (
        frame(TEXT, text[:cut1], fin=False)
        + frame(PING, b"1")
        + frame(CONT, text[cut1:cut2], fin=False)
        + frame(PONG, b"2")
        + frame(CONT, text[cut2:], fin=False)
        + frame(PING)
        + frame(CONT, b"", fin=True)
        + frame(BINARY, b"\x00\xff")
    )
    assert parse_everywhere(stream) == [
        ("ping", b"1"),
        ("pong", b"2"),
        ("ping", b""),
        ("text", text.decode()),
        ("binary", b"\x00\xff"),
    ]


def test_deployed_server_framing() -> None:
    """The deployed server's way (1024-byte binary fragments and an empty final continuation),
    many messages in a row, comes out as the messages."""
    messages = [bytes([i]) * (i * 300) for i in range(1, 8)]
    stream = b""
    for message in messages:
        chunks = [message[i : i + 1024] for i in range(0, len(message), 1024)]
        stream += frame(BINARY, chunks[0], fin=False)
        stream += b"".join(frame(CONT, chunk, fin=False) for chunk in chunks[1:])
        stream += frame(CONT, b"", fin=True)
    expected = [("binary", m) for m in messages]
    for step in (1, 3, 1000, 1 << 16):
        assert (
            feed([stream[i : i + step] for i in range(0, len(stream), step)], 1 << 16) == expected
        )


def test_empty_messages() -> None:
    """Empty text and binary messages, whole or as an empty first and final fragment."""
    stream = frame(TEXT) + frame(BINARY) + frame(TEXT, fin=False) + frame(CONT)
    assert parse_everywhere(stream) == [("text", ""), ("binary", b""), ("text", "")]


def test_16_mib_message_with_interleaved_pings() -> None:
    """A 16 MiB text message in 1 MiB fragments with a ping after each comes out whole after
    the 16 pings, fed whole and in 64 KiB reads; the limit is exactly its size."""
    body = b"x" * (16 * MiB)
    stream = b"".join(
        frame(TEXT if i == 0 else CONT, body[i : i + MiB], fin=i + MiB == len(body))
        + frame(PING, str(i // MiB).encode())
        for i in range(0, len(body), MiB)
    )
    pings = [("ping", str(i).encode()) for i in range(16)]
    for step in (len(stream), 1 << 16):
        parser = FrameParser(16 * MiB)
        items: list[Any] = []
        for i in range(0, len(stream), step):
            items += parser.feed(stream[i : i + step])
        assert [norm([i])[0] for i in items if type(i) is Ping] == pings
        assert type(items[-2]) is str
        assert len(items[-2]) == 16 * MiB


def test_16_mib_single_frame_in_64_kib_reads() -> None:
    """A 16 MiB single-frame binary message read 64 KiB at a time comes out whole."""
    body = bytes(range(256)) * (16 * MiB // 256)
    stream = frame(BINARY, body) + frame(TEXT, b"next")
    parser = FrameParser(16 * MiB)
    items: list[Any] = []
    for i in range(0, len(stream), 1 << 16):
        items += parser.feed(stream[i : i + (1 << 16)])
    assert len(items) == 2
    assert items[0] == body
    assert items[1] == "next"


def test_10000_one_byte_fragments() -> None:
    """A message of 10,000 one-byte fragments comes out whole, fed whole, one frame at a time
    and one byte at a time."""
    body = bytes(ord("a") + i % 26 for i in range(10_000))
    frames = [frame(TEXT, body[:1], fin=False)]
    frames += [frame(CONT, body[i : i + 1], fin=i == 9_999) for i in range(1, 10_000)]
    stream = b"".join(frames)
    expected = [("text", body.decode())]
    assert feed([stream], 16 * MiB) == expected
    assert feed(frames, 16 * MiB) == expected
    assert feed([stream[i : i + 1] for i in range(len(stream))], 16 * MiB) == expected


def test_text_is_str_and_binary_is_bytes() -> None:
    """Text messages come out as str (validated), binary ones as bytes or bytearray."""
    parser = FrameParser(1000)
    items = parser.feed(
        frame(TEXT, "é".encode())
        + frame(BINARY, b"\xff")
        + frame(BINARY, b"a", fin=False)
        + frame(CONT, b"b")
    )
    assert [type(i) for i in items[:2]] == [str, bytes]
    assert type(items[2]) in (bytes, bytearray)
    assert items[2] == b"ab"


def test_nothing_after_close() -> None:
    """Bytes after a close frame are not parsed, even a violation."""
    assert parse_everywhere(close_frame(1000) + frame(3) + AFTER) == [("close", 1000, "")]


def test_error_messages_never_quote_the_payload() -> None:
    """No error reason holds the bytes of the frame that caused it."""
    secret = b"sess-SECRET-id"
    for bad in (
        frame(TEXT, secret + b"\xff"),
        close_frame(1000, secret + b"\xff"),
        close_frame(999, secret),
        frame(TEXT, secret, mask=b"abcd"),
    ):
        [error] = FrameParser(1000).feed(bad)
        assert type(error) is ProtocolError
        assert secret.decode() not in str(error)
        assert secret.decode() not in repr(error)


@pytest.mark.parametrize("limit", [0, -1, 1.5, "10"])
def test_bad_limit_raises_value_error(limit: Any) -> None:
    """A max_message_size that is not a positive integer raises ValueError."""
    with pytest.raises(ValueError, match="max_message_size"):
        FrameParser(limit)


FRAGMENT_MEMORY_SCRIPT = r"""
import resource, sys
from hatsu_sync._frames import FrameParser

def peak_rss():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024

reads = int(sys.argv[1])
# 64 KiB reads of 2-byte continuation frames, made once: the stream itself costs nothing.
read = b"\x00\x02ab" * (1 << 14)
parser = FrameParser(16 * 2**20)
items = parser.feed(b"\x02\x02ab")
baseline = peak_rss()
for _ in range(reads):
    items += parser.feed(read)
items += parser.feed(b"\x80\x02ab")
assert len(items) == 1 and len(items[0]) == 2 + 2 * (1 << 14) * reads + 2, len(items)
print(peak_rss() - baseline)
"""


def test_tiny_fragments_cost_their_bytes() -> None:
    """A 2 MiB message of a million two-byte fragments grows the peak RSS by little more than
    its bytes, not the ~55 MB a list of a million small bytes objects takes (child process)."""
    reads = 64  # 64 reads of 16,384 fragments
    done = subprocess.run(
        [sys.executable, "-c", FRAGMENT_MEMORY_SCRIPT, str(reads)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    grown = int(done.stdout)
    assert grown < 12 * MiB, f"peak RSS grew by {grown / MiB:.1f} MiB for a 2 MiB message"
