"""One readable line per event, for the command line (never a session id).

Redaction follows the library's one rule (:mod:`hatsu_sync._redact`, :mod:`hatsu_sync._display`):
the given session id by the token rule (a short id does not garble other words), every session
id a client registered in this process, and every string under a key that carries session ids
(``s``, ``_s``, ``session_id``, ``session_ids``). Terminal safety (control characters) is the
caller's: see :mod:`hatsu_sync._clitext`.
"""

from __future__ import annotations

import json
from typing import Any

from . import _redact
from ._display import plain
from .models import (
    ChannelCreate,
    Event,
    Guild,
    GuildDelete,
    GuildEvent,
    Hello,
    InviteCreate,
    Notification,
    PresenceUpdate,
    Ready,
)

__all__ = ["describe"]

_WIDTH = 15
_MAX_DETAIL = 160


def _compact(value: Any) -> str:
    # plain(): strings under the keys that carry session ids are hidden, and registered ids.
    text = json.dumps(plain(value), ensure_ascii=False, separators=(",", ":"), default=str)
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def _guild(guild: Guild | None) -> str:
    if guild is None:
        return "(no guild data)"
    name = repr(guild.name) if guild.name is not None else "guild"
    text = f"{name} (id {guild.id})" if guild.id is not None else name
    if guild.channels is not None:
        text += f" with {len(guild.channels)} channel(s)"
    return text


def _detail(event: Event) -> str:
    if isinstance(event, Hello):
        return "the gateway said hello"
    if isinstance(event, Ready):
        user = event.user if isinstance(event.user, dict) else {}
        name = user.get("username")
        separator = user.get("separator")
        who = f"{name}#{separator}" if name and separator is not None else (name or "a user")
        return f"logged in as {who}"
    if isinstance(event, PresenceUpdate) and event.presence is not None:
        presence = event.presence
        text = f"user {event.user_id}: type {presence.type}"
        if presence.description:
            text += f" {presence.description!r}"
        embed = presence.embed
        if embed is not None and embed.name:
            text += f" · {embed.name}"
            if embed.text is not None:
                text += ": " + " / ".join(p for p in (embed.text.top, embed.text.bottom) if p)
        return text
    if isinstance(event, Notification):
        return f"{event.type} {_compact(event.excerpt)}"
    if isinstance(event, GuildDelete) and event.guild is None:
        return "a guild was deleted"
    if isinstance(event, GuildEvent):
        return _guild(event.guild)
    if isinstance(event, ChannelCreate) and event.channel is not None:
        channel = event.channel
        return f"#{channel.name} (id {channel.id}) in guild {channel.guild_id}"
    if isinstance(event, InviteCreate) and event.invite is not None:
        return f"invite {event.invite.code} to guild {event.invite.guild_id}"
    if event.data is None:
        return _compact({k: v for k, v in event.raw.items() if k != "t"})
    return _compact(event.data)


def describe(event: Event, secret: str = "") -> str:
    """One line: the event name, padded, then a summary; ``secret`` never appears in it."""
    line = f"{event.name:<{_WIDTH}} {_detail(event)}"
    return _redact.redact_known(_redact.redact(line, secret))
