"""Hostile input: property-based tests of the decoder with random and mutated frames.

Whatever a gateway sends, ``Decoder.decode`` returns an event or raises its own
``DecodeError`` (never anything else), finishes at once, and never delivers a message over
``max_message_size``. The examples are derandomised so the suite never flakes; set
``HATSU_FUZZ_EXAMPLES=5000`` to explore with fresh random examples.
"""

from __future__ import annotations

import json
import os
import tracemalloc
import zlib
from datetime import timedelta
from typing import Any, Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hatsu_sync._decode import Decoder
from hatsu_sync.exceptions import DecodeError
from hatsu_sync.models import Event
from hatsu_sync.testing import SAMPLE_EVENTS

EXPLORE = int(os.environ.get("HATSU_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXPLORE or 120,
    derandomize=not EXPLORE,
    database=None,
    # Each example takes microseconds: two seconds means "it hangs", even on a loaded machine.
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ENCODINGS = st.sampled_from(["json", "zlib"])
LIMITS = st.integers(min_value=1, max_value=4096)

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
NAMES = st.sampled_from(
    ["HELLO", "READY", "PRESENCE_UPDATE", "NOTIFICATION", "GUILD_INIT", "CHANNEL_CREATE", "X"]
)
# Messages shaped like the gateway's: a name, and a d (sometimes a JSON document as a string).
MESSAGES = st.builds(
    lambda name, d, as_string, extra: {
        **extra,
        "t": name,
        "d": json.dumps(d) if as_string and isinstance(d, (dict, list)) else d,
    },
    NAMES,
    JSON_VALUES,
    st.booleans(),
    st.dictionaries(st.sampled_from(["s", "i", "id", "_id", "type", "excerpt"]), JSON_VALUES),
) | st.sampled_from(SAMPLE_EVENTS)


def outcome(call: Callable[[], Event]) -> Event | DecodeError:
    """What one decode gave: an event, or the DecodeError; any other exception fails the test."""
    result: Event | DecodeError
    try:
        result = call()
    except DecodeError as exc:
        result = exc
    assert isinstance(result, (Event, DecodeError))
    assert str(result) or isinstance(result, Event)  # an error always says what went wrong
    return result


def mutate(data: bytes, how: int, where: int, junk: bytes) -> bytes:
    """One of five mutations of ``data`` at a position chosen by ``where``."""
    at = where % (len(data) + 1)
    if how == 0 and data:  # flip one byte
        at %= len(data)
        return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
    if how == 1:  # truncate
        return data[:at]
    if how == 2:  # insert junk
        return data[:at] + junk + data[at:]
    if how == 3:  # drop a stretch
        return data[:at] + data[at + len(junk) + 1 :]
    return data[:at] + data[at:] * 2  # repeat the tail


MUTATIONS = st.tuples(st.integers(0, 4), st.integers(0, 2**16), st.binary(min_size=1, max_size=16))


class Gateway:
    """Compresses messages like the deployed server: one zlib stream, a full flush each."""

    def __init__(self) -> None:
        self._compressor = zlib.compressobj()

    def compress(self, document: bytes) -> bytes:
        return self._compressor.compress(document) + self._compressor.flush(zlib.Z_FULL_FLUSH)


# -- anything at all ------------------------------------------------------------------------------


@FUZZ
@given(
    encoding=ENCODINGS,
    limit=LIMITS,
    frames=st.lists(
        st.tuples(st.binary(max_size=1024) | st.text(max_size=256), st.booleans()), max_size=8
    ),
)
def test_random_frames_only_raise_decode_error(
    encoding: str, limit: int, frames: list[tuple[bytes | str, bool]]
) -> None:
    """Random bytes and text, as text or binary messages, give events or DecodeErrors only; a
    text message over the limit is refused whatever it holds."""
    decoder = Decoder(encoding, limit)
    for payload, binary in frames:
        if binary and isinstance(payload, str):
            payload = payload.encode("utf-8", "surrogatepass")
        result = outcome(lambda p=payload, b=binary: decoder.decode(p, b))
        size = len(
            payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload
        )
        if not binary and size > limit:
            assert isinstance(result, DecodeError)
            assert "max_message_size" in str(result)


@FUZZ
@given(value=JSON_VALUES | MESSAGES, limit=st.integers(1, 2048), encoding=ENCODINGS)
def test_json_documents_decode_exactly_when_they_should(
    value: Any, limit: int, encoding: str
) -> None:
    """A JSON text message is delivered exactly when it is an object with a string t and fits
    the limit, and then with raw as sent; anything else is a DecodeError."""
    text = json.dumps(value).encode()
    result = outcome(lambda: Decoder(encoding, limit).decode(text, False))
    deliverable = isinstance(value, dict) and isinstance(value.get("t"), str)
    if deliverable and len(text) <= limit:
        assert isinstance(result, Event)
        assert result.name == value["t"]
        assert result.raw == value
    else:
        assert isinstance(result, DecodeError)


@FUZZ
@given(message=MESSAGES, mutation=MUTATIONS, binary=st.booleans())
def test_mutated_json_messages_only_raise_decode_error(
    message: dict[str, Any], mutation: tuple[int, int, bytes], binary: bool
) -> None:
    """A gateway message with a byte flipped, cut, inserted, dropped or repeated gives an
    event or a DecodeError, and the next good message still decodes."""
    decoder = Decoder("json")
    outcome(lambda: decoder.decode(mutate(json.dumps(message).encode(), *mutation), binary))
    good = decoder.decode(json.dumps(SAMPLE_EVENTS[0]).encode(), False)
    assert good.raw == SAMPLE_EVENTS[0]


# -- the zlib stream ------------------------------------------------------------------------------


@FUZZ
@given(
    messages=st.lists(MESSAGES, min_size=1, max_size=6),
    broken=st.integers(0, 5),
    mutation=MUTATIONS,
)
def test_mutated_zlib_stream_only_raises_decode_error(
    messages: list[dict[str, Any]], broken: int, mutation: tuple[int, int, bytes]
) -> None:
    """With one message of the zlib stream mutated, the ones before it decode as sent, every
    message gives an event or a DecodeError, later ones are right or refused, and once the
    stream is broken every later binary message is a fatal DecodeError."""
    broken %= len(messages)
    gateway, decoder = Gateway(), Decoder("zlib")
    fatal = False
    for index, message in enumerate(messages):
        chunk = gateway.compress(json.dumps(message).encode())
        if index == broken:
            chunk = mutate(chunk, *mutation)
        result = outcome(lambda c=chunk: decoder.decode(c, True))
        if fatal:
            assert isinstance(result, DecodeError)
            assert result.fatal
        elif index < broken:
            assert isinstance(result, Event)
            assert result.raw == message
        elif index > broken and isinstance(result, Event):
            assert result.raw == message  # right, or refused: never another message
        fatal = fatal or (isinstance(result, DecodeError) and result.fatal)


@FUZZ
@given(
    sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=5),
    limit=st.integers(64, 2048),
    whole_streams=st.booleans(),
)
def test_inflated_messages_never_exceed_the_limit(
    sizes: list[int], limit: int, whole_streams: bool
) -> None:
    """An inflated message is delivered exactly when it fits max_message_size; the first one
    over it is a fatal DecodeError (for the stream form and for whole zlib streams alike)."""
    gateway, decoder = Gateway(), Decoder("zlib", limit)
    for size in sizes:
        document = json.dumps({"t": "PAD", "d": "a" * size}).encode()
        chunk = zlib.compress(document) if whole_streams else gateway.compress(document)
        result = outcome(lambda c=chunk: decoder.decode(c, True))
        if len(document) > limit:
            assert isinstance(result, DecodeError)
            assert result.fatal
            assert "max_message_size" in str(result)
            return  # the stream cannot be resumed: the client reconnects with a new decoder
        assert isinstance(result, Event)
        assert result.data == "a" * size


@FUZZ
@given(prefix=st.binary(max_size=64), zeros=st.integers(2, 16), limit=st.integers(1, 4096))
def test_compressed_zeros_stop_at_the_limit(prefix: bytes, zeros: int, limit: int) -> None:
    """A small message that inflates far past the limit (a zlib bomb) is a fatal DecodeError,
    and inflating it allocates about the limit, not what the message holds."""
    bomb = zlib.compress(prefix + bytes(zeros * 2**16), 9)
    decoder = Decoder("zlib", limit)
    tracemalloc.start()
    try:
        result = outcome(lambda: decoder.decode(bomb, True))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, DecodeError)
    assert result.fatal
    # zlib's own state and window take about 40 KiB; the zeros take 128 KiB to 1 MiB.
    assert peak < limit + 64 * 1024
