"""Realistic gateway messages for the benchmarks, shaped like what the deployed server sent.

Each kind has a few variants (other ids, other texts), so a stream is not one message repeated
byte for byte. docs/protocol.rst has the shapes: ids are stringified snowflakes, PRESENCE_UPDATE
carries its user id at the top level, NOTIFICATION has no ``d``, GUILD_INIT adds ``channels``
to the guild.
"""

from __future__ import annotations

import json
import zlib
from typing import Any, Callable

__all__ = ["EVENT_NAMES", "KINDS", "VARIANTS", "compressed", "encode", "encoded_stream", "messages"]

#: How many different messages of each kind a stream cycles through.
VARIANTS = 16

_BASE_ID = 907362914021453000


def _snowflake(n: int) -> str:
    return str(_BASE_ID + n)


def presence_update(i: int) -> dict[str, Any]:
    """A PRESENCE_UPDATE with an embed (the common, mid-sized message)."""
    return {
        "t": "PRESENCE_UPDATE",
        "id": _snowflake(100 + i),
        "d": {
            "type": 1 + i % 4,
            "description": f"Listening to lo-fi beats, track {i}",
            "emoji": _snowflake(200 + i),
            "embed": {
                "name": "Spotify",
                "description": f"Chillhop essentials, volume {i}",
                "banner_url": f"https://cdn.example.invalid/banners/{_snowflake(300 + i)}.png",
                "text": {"top": f"Track {i} - Some Artist", "bottom": f"{i % 5}:{i % 60:02d} left"},
            },
        },
    }


def guild_init(i: int) -> dict[str, Any]:
    """A GUILD_INIT with 50 channels (the big message sent once per guild after READY)."""
    guild_id = _snowflake(1000 + i)
    channels: list[dict[str, Any]] = []
    for c in range(50):
        is_category = c % 10 == 0
        channels.append(
            {
                "_id": _snowflake(2000 + 100 * i + c),
                "name": f"category-{c}" if is_category else f"channel-{c}",
                "description": None if is_category else f"talk about topic number {c} here",
                "guild_id": guild_id,
                "type": 1 if is_category else 2,
                "inside_of": 0 if is_category else _snowflake(2000 + 100 * i + c - c % 10),
                "position": c,
            }
        )
    return {
        "t": "GUILD_INIT",
        "d": {
            "_id": guild_id,
            "name": f"Night Owls {i}",
            "description": "late-night coding and lo-fi",
            "banner": f"https://cdn.example.invalid/guild-banners/{guild_id}.png",
            "invite_banner": None,
            "vanity_url": f"night-owls-{i}",
            "verified": False,
            "partnered": i % 2 == 0,
            "official": False,
            "owner": _snowflake(100 + i),
            "emojis": [{"id": _snowflake(3000 + e), "name": f"emoji{e}"} for e in range(3)],
            "roles": [{"id": _snowflake(4000 + r), "name": f"role{r}"} for r in range(3)],
            "channels": channels,
        },
    }


def notification(i: int) -> dict[str, Any]:
    """A NOTIFICATION (no ``d``; ``type`` and ``excerpt`` at the top level)."""
    kinds = ("MENTION", "FRIEND_REQUEST", "MESSAGE", "GUILD")
    return {
        "t": "NOTIFICATION",
        "_id": _snowflake(100 + i),
        "type": kinds[i % len(kinds)],
        "excerpt": {
            "guild_id": _snowflake(1000 + i),
            "channel_id": _snowflake(2000 + i),
            "author": {"_id": _snowflake(500 + i), "username": f"kiri{i}", "separator": "0420"},
            "content": f"@local-user have a look at this, message {i}",
        },
    }


#: Payload kind -> a function of the variant number making one message.
KINDS: dict[str, Callable[[int], dict[str, Any]]] = {
    "presence": presence_update,
    "guild_init": guild_init,
    "notification": notification,
}


#: The event name of each payload kind, for callbacks registered by name.
EVENT_NAMES = {
    "presence": "PRESENCE_UPDATE",
    "guild_init": "GUILD_INIT",
    "notification": "NOTIFICATION",
}


def messages(kind: str) -> list[dict[str, Any]]:
    """The :data:`VARIANTS` messages of one kind.

    Raises:
        KeyError: an unknown kind.
    """
    make = KINDS[kind]
    return [make(i) for i in range(VARIANTS)]


def encode(message: dict[str, Any]) -> bytes:
    """A message as the gateway's JSON text (the server used plain ``json.dumps``)."""
    return json.dumps(message).encode("utf-8")


def compressed(kind: str) -> tuple[bytes, list[bytes]]:
    """The :data:`VARIANTS` messages of one kind as one zlib stream of the deployed server.

    One compressor, ``Z_FULL_FLUSH`` after each message. A full flush resets the compressor's
    history, so every message after the first compresses to the same bytes wherever it falls in
    the stream: a stream of any length is the first message (the only one with the zlib header)
    followed by the cycle, repeated. Checked here by inflating a whole cycle with one
    decompressor.

    Returns:
        ``(first, cycle)``: the first message's compressed bytes, and one compressed bytes per
        variant for the messages after it (message ``i >= 1`` is ``cycle[i % VARIANTS]``).

    Raises:
        KeyError: an unknown kind.
        AssertionError: zlib broke the property above (it never has).
    """
    texts = [encode(m) for m in messages(kind)]
    compressor = zlib.compressobj()
    flush = zlib.Z_FULL_FLUSH
    done = [compressor.compress(t) + compressor.flush(flush) for t in texts + texts]
    first, cycle = done[0], done[len(texts) :]
    inflater = zlib.decompressobj()
    check = [inflater.decompress(c) for c in [first, *cycle[1:], *cycle]]
    if check != texts + texts:
        raise AssertionError("a full-flushed message does not inflate the same in a stream")
    return first, cycle


def encoded_stream(kind: str, encoding: str, count: int) -> list[bytes]:
    """The payloads of ``count`` messages as a connection of ``encoding`` carries them.

    The same bytes the load generator sends (without the websocket framing): JSON texts in
    ``json`` mode, one zlib stream in ``zlib`` mode (inflate them in order, with one
    decompressor). The list repeats :data:`VARIANTS` objects, so it costs little memory.

    Raises:
        KeyError: an unknown kind.
        ValueError: an unknown encoding.
    """
    if encoding == "json":
        texts = [encode(m) for m in messages(kind)]
        return [texts[i % len(texts)] for i in range(count)]
    if encoding != "zlib":
        raise ValueError(f"unknown encoding {encoding!r}")
    first, cycle = compressed(kind)
    return [first, *(cycle[i % len(cycle)] for i in range(1, count))]
