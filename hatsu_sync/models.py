"""The gateway events as dataclasses, and the fast path that builds them from decoded JSON.

Every gateway message is a JSON object with a string ``t`` (the event name). The decoder hands
it to :func:`event_from_message`, which returns the model registered for that name in
:data:`EVENT_TYPES`, or the base :class:`Event` for unknown names and for known events whose
fields do not fit their model (an object where a string belongs, a list where an object
belongs, a presence ``type`` that is not an integer, ...). Nothing that parses is dropped.

The models are dataclasses-json classes, so users get ``to_dict()``, ``to_json()``,
``from_dict()`` and ``from_json()``. The receive path does not use ``from_dict``: it costs
about 750 us for one PRESENCE_UPDATE, so each model has a small hand-written constructor
below that checks JSON types with ``type(x) is ...`` and calls the dataclass directly (about
two hundred times cheaper). The tests build every model both ways and compare the results.

What the server sends is described in docs/protocol.rst: ids are strings or integers and arrive as
``id`` or ``_id``; every field may be missing, so every model field defaults to None.

This module must not use ``from __future__ import annotations``: dataclasses-json reads the
annotations at run time, and they must work on Python 3.9 (``Optional``, not ``X | None``).
"""

# The annotations below are read at run time by dataclasses-json on every supported Python,
# from 3.9 on: keep the typing generics (`Dict`, `List`, ...), which all its versions resolve.
# ruff: noqa: UP006, UP035

import html
import json
from dataclasses import dataclass, field, fields, is_dataclass
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Type, Union

from dataclasses_json import DataClassJsonMixin

__all__ = [
    "EVENT_TYPES",
    "Ack",
    "Channel",
    "ChannelCreate",
    "Embed",
    "EmbedText",
    "Event",
    "Guild",
    "GuildCreate",
    "GuildDelete",
    "GuildEvent",
    "GuildInit",
    "GuildJoin",
    "GuildUpdate",
    "Hello",
    "Invite",
    "InviteCreate",
    "MemberJoin",
    "MessageCreate",
    "MessageDelete",
    "Notification",
    "Presence",
    "PresenceUpdate",
    "Ready",
    "event_from_message",
]

#: An id as the server sends it: a stringified snowflake, or an integer in older messages.
Id = Union[str, int]


# --- the models -----------------------------------------------------------------------------


@dataclass
class Event(DataClassJsonMixin):
    """One gateway event. Unknown events, and known ones that don't fit their model, are this.

    Attributes:
        name: the event name (the message's ``t``).
        data: the message's ``d``, decoded a second time if it was a string holding a JSON
            object or array (READY); None when the message has no ``d`` (NOTIFICATION).
        raw: the whole message as received (READY's ``d`` stays the JSON string); fields that no
            model knows are reachable here. Left out of ``repr()`` to keep it readable.
    """

    name: str
    data: Any = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    def _repr_html_(self) -> str:
        """The event as an HTML table, for Jupyter: one row per field (nested objects as
        dotted names), every name and value escaped."""
        rows: List[Tuple[str, Any]] = []
        for f in fields(self):
            # A model's own fields say what `data` says; only the base Event shows `data`.
            if f.repr and f.name != "name" and (f.name != "data" or type(self) is Event):
                _html_rows(f.name, getattr(self, f.name), rows)
        hidden = len(rows) - _HTML_MAX_ROWS
        rows = rows[:_HTML_MAX_ROWS]
        body = "".join(
            f'<tr><th style="text-align:left">{html.escape(key)}</th>'
            f'<td style="text-align:left">{html.escape(_html_value(value))}</td></tr>'
            for key, value in rows
        )
        if hidden > 0 or not rows:
            note = f"({hidden} more fields)" if rows else "(no data)"
            body += f'<tr><td colspan="2" style="text-align:left"><i>{note}</i></td></tr>'
        title = f"{html.escape(self.name)} <small>({html.escape(type(self).__name__)})</small>"
        return (
            f'<table class="hatsu-event"><thead><tr><th colspan="2" style="text-align:left">'
            f"{title}</th></tr></thead><tbody>{body}</tbody></table>"
        )


_HTML_MAX_VALUE = 300
_HTML_MAX_ROWS = 50


def _html_rows(key: str, value: Any, rows: List[Tuple[str, Any]]) -> None:
    # Nested objects become dotted rows; empty (None) fields are left out.
    if is_dataclass(value) and not isinstance(value, type):
        for f in fields(value):
            if f.repr:
                _html_rows(f"{key}.{f.name}", getattr(value, f.name), rows)
    elif isinstance(value, dict) and value and len(key.split(".")) < 3:
        for name, item in value.items():
            _html_rows(f"{key}.{name}", item, rows)
    elif value is not None:
        rows.append((key, value))


def _html_value(value: Any) -> str:
    if isinstance(value, (list, tuple, dict)) or is_dataclass(value):
        text = json.dumps(_plain(value), ensure_ascii=False, default=str)
    else:
        text = str(value)
    if len(text) > _HTML_MAX_VALUE:
        text = text[: _HTML_MAX_VALUE - 1] + "\u2026"
    return text


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value) if f.repr}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


@dataclass
class Hello(Event):
    """HELLO, sent right after identify: the session id was accepted; wait for READY.

    Attributes:
        info: the server's explanatory text (the message's ``i``).
    """

    info: Optional[str] = None


@dataclass
class Ready(Event):
    """READY, sent about 9 s after HELLO, once the session is set up.

    Attributes:
        user: the current user (``_id``, ``username``, ``separator``, ``avatar_url``, ...), the
            ``d`` that the server encodes as a JSON string, decoded.
    """

    user: Optional[Dict[str, Any]] = None


@dataclass
class EmbedText(DataClassJsonMixin):
    """The two lines of text of a presence embed."""

    top: Optional[str] = None
    bottom: Optional[str] = None


@dataclass
class Embed(DataClassJsonMixin):
    """The rich part of a presence (a game, a song, ...)."""

    name: Optional[str] = None
    description: Optional[str] = None
    banner_url: Optional[str] = None
    text: Optional[EmbedText] = None


@dataclass
class Presence(DataClassJsonMixin):
    """A user's presence.

    Attributes:
        type: 1, 2, 3 or 4 as sent (None if the server left it out).
        description: the status text.
        emoji: the emoji, as sent (an id).
        embed: the rich part, or None.
    """

    type: Optional[int] = None
    description: Optional[str] = None
    emoji: Any = None
    embed: Optional[Embed] = None


@dataclass
class PresenceUpdate(Event):
    """PRESENCE_UPDATE: a user's presence changed.

    Attributes:
        user_id: whose presence (the message's top-level ``id``, or ``_id``), as sent.
        presence: the new presence (the ``d``); None if the message had none.
    """

    user_id: Optional[Id] = None
    presence: Optional[Presence] = None


@dataclass
class Notification(Event):
    """NOTIFICATION (a message without ``d``).

    Attributes:
        type: as sent, known or not: documented MESSAGE, GUILD, EVERYONE, HERE; the server
            also sent FRIEND_REQUEST, FRIEND_REMOVE, MENTION.
        excerpt: what the notification is about, as sent.
        user_id: the user notified (top-level ``_id`` or ``id``) when the server says.
    """

    type: Optional[str] = None
    excerpt: Any = None
    user_id: Optional[Id] = None


@dataclass
class Channel(DataClassJsonMixin):
    """A guild channel.

    Attributes:
        type: 1 for a category, 2 for a text channel.
        inside_of: the id of the category holding it (the server used 0 for none).
    """

    id: Optional[Id] = None
    name: Optional[str] = None
    description: Optional[str] = None
    guild_id: Optional[Id] = None
    type: Optional[int] = None
    inside_of: Optional[Id] = None
    position: Optional[int] = None


@dataclass
class Guild(DataClassJsonMixin):
    """A guild. GUILD_UPDATE sends only the fields that changed; the others are None.

    Attributes:
        owner: the owner's user id.
        channels: GUILD_INIT's channels, always a list here (the server sent one channel
            object, a list, or null).
        default_permission: the permission bits of members without a role.
    """

    id: Optional[Id] = None
    name: Optional[str] = None
    description: Optional[str] = None
    banner: Optional[str] = None
    invite_banner: Optional[str] = None
    vanity_url: Optional[str] = None
    verified: Optional[bool] = None
    partnered: Optional[bool] = None
    official: Optional[bool] = None
    owner: Optional[Id] = None
    emojis: Optional[List[Any]] = None
    roles: Optional[List[Any]] = None
    default_permission: Optional[int] = None
    channels: Optional[List[Channel]] = None


@dataclass
class GuildEvent(Event):
    """Base of the five guild events; ``guild`` is the ``d`` (None when ``d`` is null)."""

    guild: Optional[Guild] = None


@dataclass
class GuildCreate(GuildEvent):
    """GUILD_CREATE: you created a guild."""


@dataclass
class GuildJoin(GuildEvent):
    """GUILD_JOIN: you joined a guild."""


@dataclass
class GuildInit(GuildEvent):
    """GUILD_INIT: one per guild after READY, with the guild's ``channels``."""


@dataclass
class GuildUpdate(GuildEvent):
    """GUILD_UPDATE: a guild changed; only the changed fields are set."""


@dataclass
class GuildDelete(GuildEvent):
    """GUILD_DELETE: a guild was deleted; ``guild`` is None when the server sent ``d: null``."""


@dataclass
class ChannelCreate(Event):
    """CHANNEL_CREATE: a channel was created."""

    channel: Optional[Channel] = None


@dataclass
class Invite(DataClassJsonMixin):
    """A guild invite: its short ``code`` and the guild it leads to."""

    code: Optional[str] = None
    guild_id: Optional[Id] = None


@dataclass
class InviteCreate(Event):
    """INVITE_CREATE: an invite was created."""

    invite: Optional[Invite] = None


@dataclass
class MemberJoin(Event):
    """MEMBER_JOIN (sent by the platform, undocumented): someone joined a guild.

    Attributes:
        guild_id: the guild joined.
        member: the member object as sent (``user``, ``nick``, ``joined_at``, ``roles``, ...).
    """

    guild_id: Optional[Id] = None
    member: Optional[Dict[str, Any]] = None


@dataclass
class MessageCreate(Event):
    """MESSAGE_CREATE (sent by the platform, undocumented): a message was posted.

    Attributes:
        message: the message object as sent (the ``d``).
        channel_id, guild_id: where, when the message says.
    """

    message: Optional[Dict[str, Any]] = None
    channel_id: Optional[Id] = None
    guild_id: Optional[Id] = None


@dataclass
class MessageDelete(Event):
    """MESSAGE_DELETE (sent by the platform, undocumented): a message was deleted.

    Attributes:
        message_id: the deleted message (``d.message_id``, else ``d.id`` or ``d._id``).
        channel_id, guild_id: where, when the server says.
    """

    message_id: Optional[Id] = None
    channel_id: Optional[Id] = None
    guild_id: Optional[Id] = None


@dataclass
class Ack(Event):
    """ACK, the answer to an application heartbeat ``{"t": "HEARTBEAT", "s": x}``.

    Attributes:
        s: the ``s`` of the heartbeat, echoed.
    """

    s: Any = None


# --- fast construction ----------------------------------------------------------------------
# Each builder takes (name, data, msg) and either returns its model or raises _Misfit. They
# check JSON types with `type(x) is ...` rather than isinstance: json.loads makes exact built-in
# types, the check is cheaper, and `type(True) is int` is False, so a bool is not taken for an
# id or a presence type. They call the dataclasses with positional arguments, in field order,
# because keyword arguments cost about twice as much here; the tests compare every model with
# what `from_dict` builds, which catches an argument out of order.

_Builder = Callable[[str, Any, Dict[str, Any]], Event]


class _Misfit(Exception):
    """A field's JSON type is not the one its model declares."""


def _opt_str(value: object) -> Optional[str]:
    if value is None or type(value) is str:
        return value
    raise _Misfit


def _opt_int(value: object) -> Optional[int]:
    if value is None or type(value) is int:
        return value
    raise _Misfit


def _opt_bool(value: object) -> Optional[bool]:
    if value is None or type(value) is bool:
        return value
    raise _Misfit


def _opt_id(value: object) -> Optional[Id]:
    if value is None or type(value) is str or type(value) is int:
        return value
    raise _Misfit


def _opt_dict(value: object) -> Optional[Dict[str, Any]]:
    if value is None or type(value) is dict:
        return value
    raise _Misfit


def _opt_list(value: object) -> Optional[List[Any]]:
    if value is None or type(value) is list:
        return value
    raise _Misfit


def _object(value: object) -> Dict[str, Any]:
    """A ``d`` that must be an object; null reads as an empty one (every field None)."""
    if value is None:
        return {}
    if type(value) is not dict:
        raise _Misfit
    return value


def _id_of(obj: Dict[str, Any]) -> Optional[Id]:
    # The server renamed `id` to `_id` at some point; accept either, `id` first.
    value = obj.get("id")
    if value is None:
        value = obj.get("_id")
    return _opt_id(value)


def _embed_text(value: object) -> Optional[EmbedText]:
    if value is None:
        return None
    if type(value) is not dict:
        raise _Misfit
    return EmbedText(_opt_str(value.get("top")), _opt_str(value.get("bottom")))


def _embed(value: object) -> Optional[Embed]:
    if value is None:
        return None
    if type(value) is not dict:
        raise _Misfit
    get = value.get
    return Embed(
        _opt_str(get("name")),
        _opt_str(get("description")),
        _opt_str(get("banner_url")),
        _embed_text(get("text")),
    )


def _presence(value: object) -> Optional[Presence]:
    if value is None:
        return None
    if type(value) is not dict:
        raise _Misfit
    get = value.get
    return Presence(
        _opt_int(get("type")),
        _opt_str(get("description")),
        get("emoji"),
        _embed(get("embed")),
    )


def _channel(value: object) -> Channel:
    if type(value) is not dict:
        raise _Misfit
    get = value.get
    return Channel(
        _id_of(value),
        _opt_str(get("name")),
        _opt_str(get("description")),
        _opt_id(get("guild_id")),
        _opt_int(get("type")),
        _opt_id(get("inside_of")),
        _opt_int(get("position")),
    )


def _channels(value: object) -> Optional[List[Channel]]:
    # GUILD_INIT's `channels` was one channel object in the server's code and a list in the
    # documentation; the model always holds a list. A null item is a misfit, not a channel.
    if value is None:
        return None
    if type(value) is dict:
        return [_channel(value)]
    if type(value) is not list:
        raise _Misfit
    return [_channel(item) for item in value]


def _guild(value: object) -> Optional[Guild]:
    if value is None:
        return None
    if type(value) is not dict:
        raise _Misfit
    get = value.get
    return Guild(
        _id_of(value),
        _opt_str(get("name")),
        _opt_str(get("description")),
        _opt_str(get("banner")),
        _opt_str(get("invite_banner")),
        _opt_str(get("vanity_url")),
        _opt_bool(get("verified")),
        _opt_bool(get("partnered")),
        _opt_bool(get("official")),
        _opt_id(get("owner")),
        _opt_list(get("emojis")),
        _opt_list(get("roles")),
        _opt_int(get("default_permission")),
        _channels(get("channels")),
    )


def _hello(name: str, data: Any, msg: Dict[str, Any]) -> Event:
    return Hello(name, data, msg, _opt_str(msg.get("i")))


def _ready(name: str, data: Any, msg: Dict[str, Any]) -> Event:
    return Ready(name, data, msg, _opt_dict(data))


def _presence_update(name: str, data: Any, msg: Dict[str, Any]) -> Event:
    return PresenceUpdate(name, data, msg, _id_of(msg), _presence(data))


def _notification(name: str, data: Any, msg: Dict[str, Any]) -> Event:
    # The API server put the recipient in `_id`; prefer it over `id` here.
    user_id = msg.get("_id")
    if user_id is None:
        user_id = msg.get("id")
    return Notification(
        name, data, msg, _opt_str(msg.get("type")), msg.get("excerpt"), _opt_id(user_id)
    )


def _guild_builder(cls: Type[GuildEvent]) -> _Builder:
    def build(name: str, data: Any, msg: Dict[str, Any]) -> Event:
        return cls(name, data, msg, _guild(data))

    return build


def _channel_create(name: str, data: Any, msg: Dict[str, Any]) -> Event:
    return ChannelCreate(name, data, msg, None if data is None else _channel(data))


def _invite_create(name: str, data: Any, msg: Dict[str, Any]) -> Event:
    invite = None
    if data is not None:
        d = _object(data)
        invite = Invite(_opt_str(d.get("code")), _opt_id(d.get("guild_id")))
    return InviteCreate(name, data, msg, invite)


def _member_join(name: str, data: Any, msg: Dict[str, Any]) -> Event:
    d = _object(data)
    return MemberJoin(name, data, msg, _opt_id(d.get("guild_id")), _opt_dict(d.get("member")))


def _message_create(name: str, data: Any, msg: Dict[str, Any]) -> Event:
    d = _object(data)
    return MessageCreate(
        name, data, msg, _opt_dict(data), _opt_id(d.get("channel_id")), _opt_id(d.get("guild_id"))
    )


def _message_delete(name: str, data: Any, msg: Dict[str, Any]) -> Event:
    d = _object(data)
    message_id = d.get("message_id")
    if message_id is None:
        message_id = _id_of(d)
    return MessageDelete(
        name,
        data,
        msg,
        _opt_id(message_id),
        _opt_id(d.get("channel_id")),
        _opt_id(d.get("guild_id")),
    )


def _ack(name: str, data: Any, msg: Dict[str, Any]) -> Event:
    # Not `_s`: the server echoes the session id there, and reprs must not show it.
    return Ack(name, data, msg, msg.get("s"))


# One table, so that the public registry and the builders cannot disagree.
_REGISTRY: Tuple[Tuple[str, Type[Event], _Builder], ...] = (
    ("HELLO", Hello, _hello),
    ("READY", Ready, _ready),
    ("PRESENCE_UPDATE", PresenceUpdate, _presence_update),
    ("NOTIFICATION", Notification, _notification),
    ("GUILD_CREATE", GuildCreate, _guild_builder(GuildCreate)),
    ("GUILD_JOIN", GuildJoin, _guild_builder(GuildJoin)),
    ("GUILD_INIT", GuildInit, _guild_builder(GuildInit)),
    ("GUILD_UPDATE", GuildUpdate, _guild_builder(GuildUpdate)),
    ("GUILD_DELETE", GuildDelete, _guild_builder(GuildDelete)),
    ("CHANNEL_CREATE", ChannelCreate, _channel_create),
    ("INVITE_CREATE", InviteCreate, _invite_create),
    ("MEMBER_JOIN", MemberJoin, _member_join),
    ("MESSAGE_CREATE", MessageCreate, _message_create),
    ("MESSAGE_DELETE", MessageDelete, _message_delete),
    ("ACK", Ack, _ack),
)

#: Event name -> the model class :func:`event_from_message` builds for it (read-only).
EVENT_TYPES: Mapping[str, Type[Event]] = MappingProxyType({name: cls for name, cls, _ in _REGISTRY})

_BUILDERS: Dict[str, _Builder] = {name: build for name, _, build in _REGISTRY}


_FROM_MSG: Any = object()


def event_from_message(msg: Dict[str, Any], data: Any = _FROM_MSG) -> Event:
    """Build the event for one decoded gateway message.

    Args:
        msg: a JSON object (as ``json.loads`` makes it) whose ``t`` is a str. It becomes the
            event's ``raw`` as is (not copied).
        data: the ``d`` to build from, when it differs from ``msg["d"]`` (READY's ``d`` is a
            JSON document encoded as a string: the decoder passes it decoded, and ``raw``
            keeps the string as received). Default: ``msg.get("d")``.

    Returns:
        The model registered in :data:`EVENT_TYPES` for ``msg["t"]``; the base :class:`Event`
        when the name is unknown or when the message's fields do not fit that model (a JSON
        type other than the model's). Its ``data`` is ``data``.

    Raises:
        Nothing for any dict whose ``t`` is a str: every such message becomes an event.
    """
    name: str = msg["t"]
    if data is _FROM_MSG:
        data = msg.get("d")
    build = _BUILDERS.get(name)
    if build is not None:
        try:
            return build(name, data, msg)
        except _Misfit:
            pass
    return Event(name=name, data=data, raw=msg)
