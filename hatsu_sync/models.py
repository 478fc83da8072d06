"""The gateway events as dataclasses, which keep the message they came from and build lazily.

Every gateway message is a JSON object with a string ``t`` (the event name). It becomes the
model registered for that name in :data:`EVENT_TYPES`, or the base :class:`Event` for unknown
names and for known events whose fields do not fit their model (an object where a string
belongs, a list where an object belongs, a presence ``type`` that is not an integer, ...).
Nothing that parses is dropped. The models are dataclasses-json classes, so users get
``to_dict()``, ``to_json()``, ``from_dict()`` and ``from_json()``.

An event that the client decoded holds the message as received (its UTF-8 text, inflated) and
nothing else: its typed fields (``presence``, ``guild``, ...) are built from that text the first
time one of them is read, and ``data`` and ``raw`` the first time one of those is read (all of
them at once when ``data`` or ``raw`` comes first); each is kept from then on. The decoder has
already checked that they fit the model, so reading them cannot fail. An event waiting in the
buffer therefore costs its message's size plus about a hundred bytes, one object for the
garbage collector, whatever the message holds: a message of a million ``{}`` stays a few
megabytes of text until someone looks inside. An event whose typed fields were read keeps its
text instead of ``raw``'s dicts until ``raw`` or ``data`` is asked for: a program that reads
``event.presence`` and keeps the event (or leaves it buffered for ``get_event()``, as callback
users do) holds a few objects per event rather than a dict per JSON object. ``_nbytes`` is the
text's size (0 for events built by hand), which the client's memory budget adds up.

Displays (``repr()``, ``str()``, ``_repr_html_()``) never show a session id: see
:mod:`hatsu_sync._display`. ``data`` and ``raw`` keep the real values.

The checks and constructors per event live in :mod:`hatsu_sync._build`; this module holds the
classes, the registry and :func:`event_from_message`. It must not use ``from __future__ import
annotations``: dataclasses-json reads the annotations at run time, and they must work on
Python 3.9 (``Optional``, not ``X | None``).
"""

# The annotations below are read at run time by dataclasses-json on every supported Python,
# from 3.9 on: keep the typing generics (`Dict`, `List`, ...), which all its versions resolve.
# ruff: noqa: UP006, UP035

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type, Union

from ._display import html_table
from ._lazy import _Lazy, _lazy_fields, _Model

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


@_lazy_fields
@dataclass(repr=False)
class Event(_Lazy):
    """One gateway event. Unknown events, and known ones that don't fit their model, are this.

    Attributes:
        name: the event name (the message's ``t``).
        data: the message's ``d``, decoded a second time if it was a string holding a JSON
            object or array (READY); None when the message has no ``d`` (NOTIFICATION).
        raw: the whole message as received (READY's ``d`` stays the JSON string); fields that no
            model knows are reachable here. Left out of ``repr()`` to keep it readable.
    """

    __slots__ = ()

    name: str
    data: Any = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    def _repr_html_(self) -> str:
        """The event as an HTML table, for Jupyter: one row per field (nested objects as dotted
        names), session ids redacted, every name and value escaped."""
        # A model's own fields say what `data` says; only the base Event shows `data`.
        return html_table(self, show_data=type(self) is Event)

    def _parse(self, text: Union[bytes, str]) -> Tuple[Dict[str, Any], Any, Any]:
        """The message, its ``data`` and the builder of this event's typed fields."""
        msg = _build.parse(text)
        data = msg.get("d")
        if type(data) is str:
            data = _build.data_of(msg)
        build = _build.BUILDERS.get(type(self), _NO_BUILDER)
        if build is _NO_BUILDER:  # a user's subclass of a model
            build = _build.builder_for(type(self))
        return msg, data, build


@_lazy_fields
@dataclass(repr=False)
class Hello(Event):
    """HELLO, sent right after identify: the session id was accepted; wait for READY.

    Attributes:
        info: the server's explanatory text (the message's ``i``).
    """

    __slots__ = ("_info",)

    info: Optional[str] = None


@_lazy_fields
@dataclass(repr=False)
class Ready(Event):
    """READY, sent about 9 s after HELLO, once the session is set up.

    Attributes:
        user: the current user (``_id``, ``username``, ``separator``, ``avatar_url``, ...), the
            ``d`` that the server encodes as a JSON string, decoded.
    """

    __slots__ = ("_user",)

    user: Optional[Dict[str, Any]] = None


@dataclass(repr=False)
class EmbedText(_Model):
    """The two lines of text of a presence embed (None where the sender gave none)."""

    top: Optional[str] = None
    bottom: Optional[str] = None


@dataclass(repr=False)
class Embed(_Model):
    """The rich part of a presence (a game, a song, ...).

    The deployed server sent the text ``"None"`` for the fields a sender left out (it applied
    ``str()`` to them); events give None there, in ``name``, ``description``, ``banner_url``
    and the text's ``top`` and ``bottom``. ``raw`` keeps what was sent.
    """

    name: Optional[str] = None
    description: Optional[str] = None
    banner_url: Optional[str] = None
    text: Optional[EmbedText] = None


@dataclass(repr=False)
class Presence(_Model):
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


@_lazy_fields
@dataclass(repr=False)
class PresenceUpdate(Event):
    """PRESENCE_UPDATE: a user's presence changed.

    Attributes:
        user_id: whose presence (the message's top-level ``id``, or ``_id``), as sent.
        presence: the new presence (the ``d``); None if the message had none.
    """

    __slots__ = ("_presence", "_user_id")

    user_id: Optional[Id] = None
    presence: Optional[Presence] = None


@_lazy_fields
@dataclass(repr=False)
class Notification(Event):
    """NOTIFICATION (a message without ``d``).

    Attributes:
        type: as sent, known or not: documented MESSAGE, GUILD, EVERYONE, HERE; the server
            also sent FRIEND_REQUEST, FRIEND_REMOVE, MENTION.
        excerpt: what the notification is about, as sent.
        user_id: the user notified (top-level ``_id`` or ``id``) when the server says.
    """

    __slots__ = ("_excerpt", "_type", "_user_id")

    type: Optional[str] = None
    excerpt: Any = None
    user_id: Optional[Id] = None


@dataclass(repr=False)
class Channel(_Model):
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


@dataclass(repr=False)
class Guild(_Model):
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


@_lazy_fields
@dataclass(repr=False)
class GuildEvent(Event):
    """Base of the five guild events; ``guild`` is the ``d`` (None when ``d`` is null)."""

    __slots__ = ("_guild",)

    guild: Optional[Guild] = None


@dataclass(repr=False)
class GuildCreate(GuildEvent):
    """GUILD_CREATE: you created a guild."""

    __slots__ = ()


@dataclass(repr=False)
class GuildJoin(GuildEvent):
    """GUILD_JOIN: you joined a guild."""

    __slots__ = ()


@dataclass(repr=False)
class GuildInit(GuildEvent):
    """GUILD_INIT: one per guild after READY, with the guild's ``channels``."""

    __slots__ = ()


@dataclass(repr=False)
class GuildUpdate(GuildEvent):
    """GUILD_UPDATE: a guild changed; only the changed fields are set."""

    __slots__ = ()


@dataclass(repr=False)
class GuildDelete(GuildEvent):
    """GUILD_DELETE: a guild was deleted; ``guild`` is None when the server sent ``d: null``."""

    __slots__ = ()


@_lazy_fields
@dataclass(repr=False)
class ChannelCreate(Event):
    """CHANNEL_CREATE: a channel was created."""

    __slots__ = ("_channel",)

    channel: Optional[Channel] = None


@dataclass(repr=False)
class Invite(_Model):
    """A guild invite: its short ``code`` and the guild it leads to."""

    code: Optional[str] = None
    guild_id: Optional[Id] = None


@_lazy_fields
@dataclass(repr=False)
class InviteCreate(Event):
    """INVITE_CREATE: an invite was created."""

    __slots__ = ("_invite",)

    invite: Optional[Invite] = None


@_lazy_fields
@dataclass(repr=False)
class MemberJoin(Event):
    """MEMBER_JOIN (sent by the platform, undocumented): someone joined a guild.

    Attributes:
        guild_id: the guild joined.
        member: the member object as sent (``user``, ``nick``, ``joined_at``, ``roles``, ...).
    """

    __slots__ = ("_guild_id", "_member")

    guild_id: Optional[Id] = None
    member: Optional[Dict[str, Any]] = None


@_lazy_fields
@dataclass(repr=False)
class MessageCreate(Event):
    """MESSAGE_CREATE (sent by the platform, undocumented): a message was posted.

    Attributes:
        message: the message object as sent (the ``d``).
        channel_id, guild_id: where, when the message says.
    """

    __slots__ = ("_channel_id", "_guild_id", "_message")

    message: Optional[Dict[str, Any]] = None
    channel_id: Optional[Id] = None
    guild_id: Optional[Id] = None


@_lazy_fields
@dataclass(repr=False)
class MessageDelete(Event):
    """MESSAGE_DELETE (sent by the platform, undocumented): a message was deleted.

    Attributes:
        message_id: the deleted message (``d.message_id``, else ``d.id`` or ``d._id``).
        channel_id, guild_id: where, when the server says.
    """

    __slots__ = ("_channel_id", "_guild_id", "_message_id")

    message_id: Optional[Id] = None
    channel_id: Optional[Id] = None
    guild_id: Optional[Id] = None


@_lazy_fields
@dataclass(repr=False)
class Ack(Event):
    """ACK, the answer to an application heartbeat ``{"t": "HEARTBEAT", "s": x}``.

    Attributes:
        s: the ``s`` of the heartbeat, echoed. Displays hide it when it is a string, as they
            hide every string under an ``s`` key: the gateway puts the session id there.
    """

    __slots__ = ("_s",)

    s: Any = None


#: Event name -> the model class :func:`event_from_message` (and the decoder) builds for it
#: (read-only).
EVENT_TYPES: Mapping[str, Type[Event]] = MappingProxyType(
    {
        "HELLO": Hello,
        "READY": Ready,
        "PRESENCE_UPDATE": PresenceUpdate,
        "NOTIFICATION": Notification,
        "GUILD_CREATE": GuildCreate,
        "GUILD_JOIN": GuildJoin,
        "GUILD_INIT": GuildInit,
        "GUILD_UPDATE": GuildUpdate,
        "GUILD_DELETE": GuildDelete,
        "CHANNEL_CREATE": ChannelCreate,
        "INVITE_CREATE": InviteCreate,
        "MEMBER_JOIN": MemberJoin,
        "MESSAGE_CREATE": MessageCreate,
        "MESSAGE_DELETE": MessageDelete,
        "ACK": Ack,
    }
)

_new = object.__new__
_NO_BUILDER: Any = object()
_FROM_MSG: Any = object()


def event_from_message(msg: Dict[str, Any], data: Any = _FROM_MSG) -> Event:
    """Build the event for one decoded gateway message, every field at once.

    Args:
        msg: a JSON object (as ``json.loads`` makes it) whose ``t`` is a str. It becomes the
            event's ``raw`` as is (not copied).
        data: the ``d`` to build from, when it differs from ``msg["d"]`` (READY's ``d`` is a
            JSON document encoded as a string: pass it decoded, and ``raw`` keeps the string
            as received). Default: ``msg.get("d")``.

    Returns:
        The model registered in :data:`EVENT_TYPES` for ``msg["t"]``; the base :class:`Event`
        when the name is unknown or when the message's fields do not fit that model (a JSON
        type other than the model's). Its ``data`` is ``data``; its ``_nbytes`` is 0 (there
        is no message text).

    Raises:
        Nothing for any dict whose ``t`` is a str: every such message becomes an event.
    """
    if data is _FROM_MSG:
        data = msg.get("d")
    name = msg["t"]
    entry = _build.ENTRIES.get(name)
    event: Event
    if entry is None:
        event = _new(Event)
    else:
        name = entry.name
        event = _new(entry.cls)
        try:
            entry.fill(event, data, msg)
        except _build.Misfit:
            event = _new(Event)
    event._name = name
    event._text = None
    event._hot = event._lazy = False
    event._nbytes = 0
    event._raw = msg
    event._data = data
    return event


# The checks and builders (hatsu_sync._build) need the classes above. Whichever of the two
# modules is imported first, this binds the module object, whose names are all in place
# before anything is decoded or read.
from . import _build  # noqa: E402
