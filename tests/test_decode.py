"""The decoder byte by byte: text and zlib messages, size limits, errors. No sockets, threads."""

from __future__ import annotations

import json
import random
import sys
import tracemalloc
import zlib
from typing import Any

import pytest

from hatsu_sync._decode import Decoder
from hatsu_sync.exceptions import DecodeError
from hatsu_sync.models import (
    Event,
    GuildInit,
    Hello,
    Notification,
    PresenceUpdate,
    Ready,
    event_from_message,
)

SECRET = "sess-77aa-SECRET-marker"
MiB = 2**20

USER = {
    "_id": "907362914021453111",
    "username": "kiri",
    "separator": 420,
    "flags": 0,
    "verified": True,
    "system": False,
    "session_ids": [SECRET],
}

# One of each shape, as the deployed gateway sent them (the secret stands in for the session id
# that the gateway echoes).
MESSAGES: list[dict[str, Any]] = [
    {"t": "HELLO", "s": SECRET, "d": None, "i": "please wait for the READY event"},
    {"t": "READY", "s": SECRET, "d": json.dumps(USER), "i": None},
    {
        "t": "PRESENCE_UPDATE",
        "id": "907362914021453111",
        "d": {
            "type": 1,
            "description": "Listening to lo-fi",
            "emoji": "907362914021453222",
            "embed": {
                "name": "Spotify",
                "description": "Lo-fi beats",
                "banner_url": "https://example.invalid/banner.png",
                "text": {"top": "Chillhop", "bottom": "3:12 left"},
            },
        },
    },
    {"t": "PRESENCE_UPDATE", "_id": 123456, "d": {"type": 4, "description": None, "emoji": None}},
    {"t": "NOTIFICATION", "type": "FRIEND_REQUEST", "excerpt": {"from": "kiri#0420"}},
    {"t": "GUILD_UPDATE", "d": {"_id": "907362914021453824", "description": "early birds"}},
    {"t": "GUILD_DELETE", "d": None},
    {"t": "INVITE_CREATE", "d": {"code": "Xk3fQ9a", "guild_id": "907362914021453824"}},
    {"t": "ACK", "_s": SECRET, "s": 1, "d": None},
    {"t": "SOMETHING_NEW", "d": [1, 2, 3]},
]


def encode(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg).encode()


def expected(msg: dict[str, Any]) -> Event:
    """The event for ``msg``, built without the decoder (READY's d decoded by hand)."""
    if msg["t"] == "READY":
        return event_from_message(msg, json.loads(msg["d"]))
    return event_from_message(msg)


def guild_init(size: int) -> bytes:
    """A GUILD_INIT of about ``size`` bytes: one guild with many distinct channels."""
    rng = random.Random(size)
    channels: list[dict[str, Any]] = []
    total = 0
    while total < size:
        channel = {
            "id": str(907362914021453901 + len(channels)),
            "name": f"channel-{len(channels)}",
            "description": f"{rng.getrandbits(256):064x}",
            "guild_id": "907362914021453824",
            "type": 2,
            "inside_of": "907362914021453900",
        }
        channels.append(channel)
        total += len(json.dumps(channel)) + 2
    msg = {
        "t": "GUILD_INIT",
        "d": {"id": "907362914021453824", "name": "Big", "channels": channels},
    }
    return encode(msg)


def padded(size: int) -> bytes:
    """A JSON text message of exactly ``size`` bytes."""
    head, tail = b'{"t":"PAD","d":"', b'"}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


class Server:
    """Compresses messages as the deployed gateway did: one zlib stream, a full flush each."""

    def __init__(self) -> None:
        self.compressor = zlib.compressobj()

    def compress(self, data: bytes) -> bytes:
        return self.compressor.compress(data) + self.compressor.flush(zlib.Z_FULL_FLUSH)


# --- json mode ---------------------------------------------------------------------------------


@pytest.mark.parametrize("msg", MESSAGES, ids=[m["t"] for m in MESSAGES])
def test_json_text_messages_decode_to_their_models(msg: dict[str, Any]) -> None:
    """Each text message in json mode decodes to the same event the models build directly."""
    assert Decoder().decode(encode(msg), binary=False) == expected(msg)


def test_text_may_be_str() -> None:
    """A text message passed as str decodes like its UTF-8 bytes."""
    msg = {"t": "NOTIFICATION", "type": "MENTION", "excerpt": {"text": "héllo ✨"}}
    text = json.dumps(msg, ensure_ascii=False)
    decoder = Decoder()
    assert decoder.decode(text, binary=False) == decoder.decode(text.encode(), binary=False)


def test_presence_update_decodes_to_presence_update() -> None:
    """A text PRESENCE_UPDATE decodes to a PresenceUpdate with its nested presence."""
    event = Decoder().decode(encode(MESSAGES[2]), binary=False)
    assert isinstance(event, PresenceUpdate)
    assert event.presence is not None
    assert event.presence.embed is not None
    assert event.presence.embed.text is not None
    assert event.presence.embed.text.bottom == "3:12 left"


def test_ready_d_is_decoded_a_second_time() -> None:
    """READY's d, a JSON string, is decoded again into user and data; raw keeps it as sent."""
    event = Decoder().decode(encode(MESSAGES[1]), binary=False)
    assert isinstance(event, Ready)
    assert event.user == USER
    assert event.data == USER
    assert event.raw == MESSAGES[1]
    assert isinstance(event.raw["d"], str)


@pytest.mark.parametrize(
    ("d", "data"),
    [
        ('  [1, {"a": 2}]', [1, {"a": 2}]),
        ('\n{"a": null}', {"a": None}),
        ("{broken", "{broken"),
        ("[1, 2", "[1, 2"),
        ("online", "online"),
        ("", ""),
        ("123", "123"),
        ('"quoted"', '"quoted"'),
    ],
)
def test_string_d_decoded_only_if_it_holds_an_object_or_array(d: str, data: Any) -> None:
    """A string d is decoded again when it holds a JSON object or array, else kept as sent."""
    event = Decoder().decode(encode({"t": "X", "d": d}), binary=False)
    assert event.data == data


def test_ready_with_undecodable_d_is_still_delivered() -> None:
    """A READY whose d string doesn't parse is delivered as a base Event with the string kept."""
    event = Decoder().decode(encode({"t": "READY", "d": '{"_id": "1"'}), binary=False)
    assert type(event) is Event
    assert event.data == '{"_id": "1"'


def test_binary_in_json_mode_is_a_non_fatal_error() -> None:
    """A binary message on a json connection is a non-fatal decode error."""
    decoder = Decoder("json")
    payload = zlib.compress(encode(MESSAGES[0]))
    with pytest.raises(DecodeError, match="binary") as info:
        decoder.decode(payload, binary=True)
    assert not info.value.fatal
    assert info.value.size == len(payload)
    assert decoder.decode(encode(MESSAGES[0]), binary=False) == expected(MESSAGES[0])


# --- zlib mode ---------------------------------------------------------------------------------


def test_one_zlib_stream_for_1000_messages() -> None:
    """1,000 messages of one zlib stream, full-flushed, decode in order with one context."""
    server, decoder = Server(), Decoder("zlib")
    for i in range(1000):
        msg = MESSAGES[i % len(MESSAGES)]
        chunk = server.compress(encode(msg))
        assert chunk.endswith(b"\x00\x00\xff\xff")
        assert chunk.startswith(b"\x78\x9c") == (i == 0)
        assert decoder.decode(chunk, binary=True) == expected(msg)


def test_a_stream_message_cannot_be_decoded_alone() -> None:
    """A later message of the stream needs the earlier ones: a fresh context fails, fatally."""
    server = Server()
    server.compress(encode(MESSAGES[0]))
    second = server.compress(encode(MESSAGES[2]))
    with pytest.raises(DecodeError) as info:
        Decoder("zlib").decode(second, binary=True)
    assert info.value.fatal


def test_fragmented_message_joined() -> None:
    """A message sent as 1024-byte fragments and an empty final one decodes once joined."""
    server, decoder = Server(), Decoder("zlib")
    decoder.decode(server.compress(encode(MESSAGES[0])), binary=True)
    data = guild_init(64 * 1024)
    chunk = server.compress(data)
    fragments = [chunk[i : i + 1024] for i in range(0, len(chunk), 1024)] + [b""]
    assert len(fragments) > 3
    event = decoder.decode(b"".join(fragments), binary=True)
    assert isinstance(event, GuildInit)
    assert event == event_from_message(json.loads(data))
    assert decoder.decode(server.compress(encode(MESSAGES[4])), binary=True) == expected(
        MESSAGES[4]
    )


def test_each_message_a_complete_zlib_stream() -> None:
    """Messages each compressed as a complete zlib stream of their own decode one after another."""
    decoder = Decoder("zlib")
    for i in range(100):
        msg = MESSAGES[i % len(MESSAGES)]
        assert decoder.decode(zlib.compress(encode(msg)), binary=True) == expected(msg)


def test_text_messages_mixed_into_a_zlib_stream() -> None:
    """Text messages in zlib mode are plain JSON and leave the zlib stream in step."""
    server, decoder = Server(), Decoder("zlib")
    for i in range(50):
        msg = MESSAGES[i % len(MESSAGES)]
        if i % 3 == 0:
            assert decoder.decode(encode(msg), binary=False) == expected(msg)
        else:
            assert decoder.decode(server.compress(encode(msg)), binary=True) == expected(msg)


def test_bytearray_payloads_are_accepted() -> None:
    """Payloads given as bytearray decode like bytes, text and binary."""
    decoder = Decoder("zlib")
    msg = MESSAGES[2]
    assert decoder.decode(bytearray(encode(msg)), binary=False) == expected(msg)
    assert decoder.decode(bytearray(zlib.compress(encode(msg))), binary=True) == expected(msg)


def test_corrupt_zlib_is_fatal_and_stays_fatal() -> None:
    """Corrupt zlib data raises a fatal error, and later binary messages on that stream do too."""
    server, decoder = Server(), Decoder("zlib")
    assert decoder.decode(server.compress(encode(MESSAGES[0])), binary=True) == expected(
        MESSAGES[0]
    )
    chunk = bytearray(server.compress(encode({"t": "X", "d": SECRET * 20})))
    chunk[0] ^= 0xFF  # the first byte of a deflate block: its type bits become invalid
    with pytest.raises(DecodeError) as info:
        decoder.decode(bytes(chunk), binary=True)
    assert info.value.fatal
    assert info.value.close_code == 1007
    assert isinstance(info.value.__cause__, zlib.error)
    assert info.value.size == len(chunk)
    with pytest.raises(DecodeError) as later:
        decoder.decode(server.compress(encode(MESSAGES[2])), binary=True)
    assert later.value.fatal
    # Text is plain JSON, independent of the stream.
    assert decoder.decode(encode(MESSAGES[2]), binary=False) == expected(MESSAGES[2])


def test_garbage_instead_of_a_zlib_header_is_fatal() -> None:
    """A first binary message that is not zlib at all raises a fatal error."""
    with pytest.raises(DecodeError) as info:
        Decoder("zlib").decode(encode(MESSAGES[0]), binary=True)
    assert info.value.fatal


def test_bytes_after_a_complete_stream_are_a_non_fatal_error() -> None:
    """Bytes after the end of a complete zlib stream are an error; the next stream decodes."""
    decoder = Decoder("zlib")
    with pytest.raises(DecodeError, match="after the end") as info:
        decoder.decode(zlib.compress(encode(MESSAGES[0])) + b"junk", binary=True)
    assert not info.value.fatal
    assert decoder.decode(zlib.compress(encode(MESSAGES[2])), binary=True) == expected(MESSAGES[2])


def zlib_bomb() -> bytes:
    """About 1 MiB of zlib stream that inflates to 1 GiB of zeros, built without compressing 1 GiB.

    A full flush resets the compressor's state, so every flushed 1 MiB of zeros after the first
    compresses to the same bytes: the stream is the first block then copies of the second.
    """
    compressor, zeros = zlib.compressobj(), bytes(MiB)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert block == compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first + block * 1023


def test_zlib_bomb_stops_at_the_limit() -> None:
    """A message inflating to 1 GiB raises a fatal error, having inflated no more than the limit."""
    bomb = zlib_bomb()
    assert len(bomb) < 2 * MiB
    limit = 16 * MiB
    decoder = Decoder("zlib", max_message_size=limit)
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="max_message_size") as info:
            decoder.decode(bomb, binary=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.fatal
    assert info.value.close_code == 1009
    assert info.value.size == len(bomb)
    # Inflating stopped at the limit: far from the 1 GiB the message holds.
    assert peak < 3 * limit


def test_inflated_message_exactly_at_the_limit_is_delivered() -> None:
    """A message inflating to exactly max_message_size decodes; one byte more is a fatal error."""
    limit = 4096
    server, decoder = Server(), Decoder("zlib", max_message_size=limit)
    event = decoder.decode(server.compress(padded(limit)), binary=True)
    assert event.name == "PAD"
    assert len(event.data) == limit - len(padded(0))
    assert event._nbytes == limit
    with pytest.raises(DecodeError) as info:
        decoder.decode(server.compress(padded(limit + 1)), binary=True)
    assert info.value.fatal
    assert info.value.close_code == 1009


def test_2_mib_guild_init_is_delivered_with_the_default_limit() -> None:
    """A 2 MiB GUILD_INIT decodes under the default 16 MiB limit, as text and inflated."""
    data = guild_init(2 * MiB)
    assert len(data) > 2 * MiB - 1024
    want = event_from_message(json.loads(data))
    assert isinstance(want, GuildInit)
    assert Decoder().decode(data, binary=False) == want
    assert Decoder("zlib").decode(Server().compress(data), binary=True) == want


# --- text size limit ---------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["json", "zlib"])
def test_text_exactly_at_the_limit_is_delivered(encoding: str) -> None:
    """A text message of exactly max_message_size bytes decodes, as bytes and as str."""
    decoder = Decoder(encoding, max_message_size=4096)
    assert decoder.decode(padded(4096), binary=False).name == "PAD"
    assert decoder.decode(padded(4096).decode(), binary=False).name == "PAD"


@pytest.mark.parametrize("encoding", ["json", "zlib"])
@pytest.mark.parametrize("as_str", [False, True], ids=["bytes", "str"])
def test_text_over_the_limit_fails_the_connection_with_1009(encoding: str, as_str: bool) -> None:
    """A text message one byte over the limit is a fatal error with close code 1009."""
    decoder = Decoder(encoding, max_message_size=4096)
    payload: bytes | str = padded(4097).decode() if as_str else padded(4097)
    with pytest.raises(DecodeError, match="max_message_size") as info:
        decoder.decode(payload, binary=False)
    assert info.value.fatal
    assert info.value.close_code == 1009
    assert info.value.size == 4097
    # The decoder itself is not broken: a text message after it (on a new connection, in
    # practice) still decodes.
    assert decoder.decode(encode(MESSAGES[0]), binary=False) == expected(MESSAGES[0])


def test_str_text_is_measured_in_utf8_bytes() -> None:
    """A str message is measured by its UTF-8 size, not its length in characters."""
    limit = 4096
    text = padded(limit - 2 * 1000).decode().replace("a" * 1000, "€" * 1000, 1)
    assert len(text.encode()) == limit
    assert Decoder(max_message_size=limit).decode(text, binary=False).name == "PAD"
    over = text.replace("a", "€", 1)
    with pytest.raises(DecodeError) as info:
        Decoder(max_message_size=limit).decode(over, binary=False)
    assert info.value.size == limit + 2


# --- bad messages ------------------------------------------------------------------------------

NOT_DECODABLE: list[tuple[str, bytes, str]] = [
    ("bad-json", b'{"t": "HELLO", "s": "' + SECRET.encode() + b'", ', "not valid JSON"),
    ("extra-data", b'{"t": "X"} {"s": "' + SECRET.encode() + b'"}', "not valid JSON"),
    ("empty", b"", "not valid JSON"),
    ("array", b'[{"t": "HELLO", "s": "' + SECRET.encode() + b'"}]', "not a JSON object"),
    ("string", json.dumps(SECRET).encode(), "not a JSON object"),
    ("number", b"42", "not a JSON object"),
    ("no-t", b'{"s": "' + SECRET.encode() + b'", "d": null}', "no event name"),
    ("null-t", b'{"t": null, "s": "' + SECRET.encode() + b'"}', "no event name"),
    ("number-t", b'{"t": 7, "s": "' + SECRET.encode() + b'"}', "no event name"),
    ("object-t", b'{"t": {"name": "' + SECRET.encode() + b'"}}', "no event name"),
    ("invalid-utf8", b'{"t": "X", "s": "' + SECRET.encode() + b'\xc3\x28"}', "UTF-8"),
    ("lone-continuation", b'{"t": "X\x80", "s": "' + SECRET.encode() + b'"}', "UTF-8"),
    ("deep", b'{"t": "X", "d": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not valid JSON"),
]


@pytest.mark.parametrize(
    ("payload", "what"), [(p, w) for _, p, w in NOT_DECODABLE], ids=[i for i, _, _ in NOT_DECODABLE]
)
@pytest.mark.parametrize("encoding", ["json", "zlib"])
def test_undecodable_text_is_a_non_fatal_error(encoding: str, payload: bytes, what: str) -> None:
    """Bad JSON, a non-object, a missing or non-str t, or bad UTF-8 is a non-fatal error."""
    decoder = Decoder(encoding)
    with pytest.raises(DecodeError, match=what) as info:
        decoder.decode(payload, binary=False)
    assert not info.value.fatal
    assert info.value.size == len(payload)
    assert f"{len(payload)}-byte" in str(info.value)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    # The connection goes on.
    assert isinstance(decoder.decode(encode(MESSAGES[0]), binary=False), Hello)


@pytest.mark.parametrize(
    ("payload", "what"), [(p, w) for _, p, w in NOT_DECODABLE], ids=[i for i, _, _ in NOT_DECODABLE]
)
def test_undecodable_inflated_message_is_a_non_fatal_error(payload: bytes, what: str) -> None:
    """An inflated message that is not a JSON object with a str t is a non-fatal error."""
    server, decoder = Server(), Decoder("zlib")
    chunk = server.compress(payload)
    with pytest.raises(DecodeError, match=what) as info:
        decoder.decode(chunk, binary=True)
    assert not info.value.fatal
    assert info.value.size == len(chunk)
    assert f"{len(payload)} bytes inflated" in str(info.value)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    assert decoder.decode(server.compress(encode(MESSAGES[4])), binary=True) == expected(
        MESSAGES[4]
    )


def test_json_errors_are_chained() -> None:
    """The JSON parser's exception is kept as the DecodeError's cause."""
    with pytest.raises(DecodeError) as info:
        Decoder().decode(b'{"t": ', binary=False)
    assert isinstance(info.value.__cause__, json.JSONDecodeError)
    with pytest.raises(DecodeError) as utf8:
        Decoder().decode(b'{"t": "\xff\xff"}', binary=False)
    assert isinstance(utf8.value.__cause__, UnicodeDecodeError)


# Python 3.11 (and security releases of 3.9 and 3.10) limit the digits of an int read from text.
MAX_INT_DIGITS: int = getattr(sys, "get_int_max_str_digits", lambda: 0)()


@pytest.mark.skipif(not MAX_INT_DIGITS, reason="no limit on integer digits")
def test_integer_too_long_to_convert_is_a_non_fatal_error() -> None:
    """An integer over Python's digit limit is a decode error that does not quote the digits."""
    digits = "7" * (MAX_INT_DIGITS + 1)
    with pytest.raises(DecodeError) as info:
        Decoder().decode(f'{{"t": "X", "d": {digits}}}'.encode(), binary=False)
    assert not info.value.fatal
    assert "7777" not in str(info.value)


def test_fatal_errors_never_show_the_content() -> None:
    """Fatal zlib errors name sizes only, never the message content."""
    compressed = zlib.compress(json.dumps({"t": "X", "s": SECRET}).encode())
    payloads = [
        compressed[:2] + bytes([compressed[2] ^ 0xFF]) + compressed[3:],
        SECRET.encode() * 10,
        zlib_bomb(),
    ]
    for payload in payloads:
        with pytest.raises(DecodeError) as info:
            Decoder("zlib", max_message_size=MiB).decode(payload, binary=True)
        assert info.value.fatal
        assert SECRET not in str(info.value)
        assert SECRET not in repr(info.value)


# --- construction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{"encoding": "etf"}, {"encoding": "ZLIB"}, {"max_message_size": 0}, {"max_message_size": -1}],
)
def test_bad_settings_raise_value_error(kwargs: dict[str, Any]) -> None:
    """An unknown encoding or a max_message_size below 1 raises ValueError."""
    with pytest.raises(ValueError, match=r"encoding|max_message_size"):
        Decoder(**kwargs)


def test_notification_without_d_decodes() -> None:
    """A NOTIFICATION, which has no d, decodes with data None."""
    event = Decoder().decode(encode(MESSAGES[4]), binary=False)
    assert isinstance(event, Notification)
    assert event.data is None
    assert event.type == "FRIEND_REQUEST"
