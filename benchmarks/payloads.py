"""Realistic gateway messages for the benchmarks, shaped like what the deployed server sent.

Each kind has a few variants (other ids, other texts), so a stream is not one message repeated
byte for byte. docs/protocol.rst has the shapes: ids are stringified snowflakes, PRESENCE_UPDATE
carries its user id at the top level, NOTIFICATION has no ``d``, GUILD_INIT adds ``channels``
to the guild.
"""

from __future__ import annotations

import json
from typing import Any, Callable

__all__ = ["KINDS", "VARIANTS", "encode", "messages"]

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
