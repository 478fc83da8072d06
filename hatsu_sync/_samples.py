"""A scripted stream with one message of every event kind, as the deployed gateway sent them.

Used by ``hatsu-sync demo``, by the tests, and re-exported as
``hatsu_sync.testing.SAMPLE_EVENTS`` for users' own tests.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SAMPLE_EVENTS"]

_GUILD: dict[str, Any] = {
    "_id": "907362914021453824",
    "name": "Night Owls",
    "description": "late-night coding",
    "banner": None,
    "invite_banner": None,
    "vanity_url": "night-owls",
    "verified": False,
    "partnered": False,
    "official": False,
    "owner": "907362914021453000",
    "emojis": [],
    "roles": [],
}

_CHANNEL: dict[str, Any] = {
    "id": "907362914021453901",
    "name": "general",
    "description": "say hi",
    "guild_id": "907362914021453824",
    "type": 2,
    "inside_of": "907362914021453900",
}

SAMPLE_EVENTS: list[dict[str, Any]] = [
    {"t": "GUILD_INIT", "d": {**_GUILD, "channels": [_CHANNEL]}},
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
    {"t": "NOTIFICATION", "type": "MENTION", "excerpt": {"channel_id": "907362914021453901"}},
    {"t": "GUILD_CREATE", "d": {**_GUILD, "_id": "907362914021459999", "name": "Book Club"}},
    {"t": "GUILD_JOIN", "d": {**_GUILD, "id": 907362914021458888, "name": "Speedrunners"}},
    {"t": "GUILD_UPDATE", "d": {"_id": "907362914021453824", "description": "early birds now"}},
    {"t": "CHANNEL_CREATE", "d": {**_CHANNEL, "id": "907362914021453902", "name": "memes"}},
    {"t": "INVITE_CREATE", "d": {"code": "aBc12x", "guild_id": "907362914021453824"}},
    {"t": "MEMBER_JOIN", "d": {"guild_id": "907362914021453824", "user_id": "907362914021453333"}},
    {
        "t": "MESSAGE_CREATE",
        "d": {
            "id": "907362914021454444",
            "channel_id": "907362914021453901",
            "author": "907362914021453111",
            "content": "hello night owls",
        },
    },
    {"t": "MESSAGE_DELETE", "d": {"id": "907362914021454444", "channel_id": "907362914021453901"}},
    {"t": "GUILD_DELETE", "d": None},
    {"t": "SOMETHING_NEW", "d": {"note": "unknown names are delivered too"}},
]
