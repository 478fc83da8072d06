"""From a parsed gateway message to its event: which model fits, and the fields' values.

Each registered event has two hand-written functions:

- a check, ``fits(data, msg) -> bool`` (in :mod:`hatsu_sync._fits`): do the message's fields
  have the JSON types its model declares? The decoder runs it on every message (its answer
  picks the class) and builds nothing, so that an unread event holds only its text;
- a builder, ``build(event, data, msg)``: stores the values of the model's own fields into the
  event, from a message its check accepted. It runs on the first read of a decoded event (or
  at once while the reader keeps up), and in :func:`event_from_message`.

dataclasses-json's ``from_dict`` is not used: it costs about 750 us for one PRESENCE_UPDATE, two
hundred times these. The tests build every model both ways and compare.

What the server sends is described in docs/protocol.rst: ids are strings or integers and
arrive as ``id`` or ``_id``; every field may be missing, so every model field defaults to None.
"""

from __future__ import annotations

import json
from typing import Any, Callable, NamedTuple

from ._fits import (
    _ID,
    _INT,
    _STR,
    _fits_ack,
    _fits_channel_create,
    _fits_guild_event,
    _fits_hello,
    _fits_invite_create,
    _fits_member_join,
    _fits_message_create,
    _fits_message_delete,
    _fits_notification,
    _fits_presence_update,
    _fits_ready,
    _id_of,
    _message_id,
    _notified,
)
from .models import (
    EVENT_TYPES,
    Channel,
    Embed,
    EmbedText,
    Event,
    Guild,
    GuildEvent,
    Invite,
    Presence,
)

__all__ = ["BUILDERS", "ENTRIES", "Misfit", "builder_for", "data_of", "decoded_event", "parse"]

_loads = json.loads
_raw_decode = json.JSONDecoder().raw_decode  # what json.loads runs, without its wrapping


def parse(document: bytes | bytearray | str) -> Any:
    """``json.loads(document)``, about a third faster for the usual message.

    The shortcut takes UTF-8 text holding one JSON value from its first character to its last;
    anything else (leading or trailing whitespace, a BOM, UTF-16, an error) goes to
    ``json.loads`` itself, so results and errors are exactly json.loads's.

    Raises:
        ValueError: not JSON (json.JSONDecodeError) or not UTF-8 (UnicodeDecodeError).
        RecursionError: nested too deeply.
    """
    try:
        # json.loads decodes bytes with "surrogatepass" too.
        text = document if isinstance(document, str) else document.decode("utf-8", "surrogatepass")
        value, end = _raw_decode(text)
        if end == len(text):
            return value
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        pass
    return _loads(document)


def data_of(msg: dict[str, Any]) -> Any:
    """The message's ``d``, decoded again when it is a string holding a JSON object or array.

    READY's ``d`` is a JSON document encoded as a string. One that does not parse is kept as
    sent: the event is still delivered.
    """
    data = msg.get("d")
    if type(data) is str and data.lstrip()[:1] in ("{", "["):
        try:
            return _loads(data)
        except (ValueError, RecursionError):
            pass
    return data


# --- builders -------------------------------------------------------------------------------
# They call the dataclasses with positional arguments, in field order, because keyword
# arguments cost about twice as much here; the tests compare every model with what
# `from_dict` builds, which catches an argument out of order.


def _unless_none(value: Any) -> Any:
    # The deployed server applied str() to every embed field, so one the sender left out
    # arrives as the text "None" (docs/protocol.rst).
    return None if value == "None" else value


def _embed(embed: dict[str, Any] | None) -> Embed | None:
    if embed is None:
        return None
    get = embed.get
    text = get("text")
    return Embed(
        _unless_none(get("name")),
        _unless_none(get("description")),
        _unless_none(get("banner_url")),
        None
        if text is None
        else EmbedText(_unless_none(text.get("top")), _unless_none(text.get("bottom"))),
    )


def _channel(channel: dict[str, Any]) -> Channel:
    get = channel.get
    return Channel(
        _id_of(channel),
        get("name"),
        get("description"),
        get("guild_id"),
        get("type"),
        get("inside_of"),
        get("position"),
    )


def _guild(guild: dict[str, Any] | None) -> Guild | None:
    if guild is None:
        return None
    get = guild.get
    channels = get("channels")
    return Guild(
        _id_of(guild),
        get("name"),
        get("description"),
        get("banner"),
        get("invite_banner"),
        get("vanity_url"),
        get("verified"),
        get("partnered"),
        get("official"),
        get("owner"),
        get("emojis"),
        get("roles"),
        get("default_permission"),
        None
        if channels is None
        else [_channel(channels)]
        if type(channels) is dict
        else [_channel(c) for c in channels],
    )


# Each builder stores the values of its model's own fields into the event's slots (the event
# holds `raw` and `data` already). `event` is typed Any: the slots are not annotations.


def _build_hello(event: Any, data: Any, msg: dict[str, Any]) -> None:
    event._info = msg.get("i")


def _build_ready(event: Any, data: Any, msg: dict[str, Any]) -> None:
    event._user = data


def _build_presence_update(event: Any, data: Any, msg: dict[str, Any]) -> None:
    event._user_id = _id_of(msg)
    if data is None:
        event._presence = None
    else:
        get = data.get
        event._presence = Presence(
            get("type"), get("description"), get("emoji"), _embed(get("embed"))
        )


def _build_notification(event: Any, data: Any, msg: dict[str, Any]) -> None:
    event._type = msg.get("type")
    event._excerpt = msg.get("excerpt")
    event._user_id = _notified(msg)


def _build_guild_event(event: Any, data: Any, msg: dict[str, Any]) -> None:
    event._guild = _guild(data)


def _build_channel_create(event: Any, data: Any, msg: dict[str, Any]) -> None:
    event._channel = None if data is None else _channel(data)


def _build_invite_create(event: Any, data: Any, msg: dict[str, Any]) -> None:
    event._invite = None if data is None else Invite(data.get("code"), data.get("guild_id"))


def _build_member_join(event: Any, data: Any, msg: dict[str, Any]) -> None:
    d = data or {}
    event._guild_id = d.get("guild_id")
    event._member = d.get("member")


def _build_message_create(event: Any, data: Any, msg: dict[str, Any]) -> None:
    d = data or {}
    event._message = data
    event._channel_id = d.get("channel_id")
    event._guild_id = d.get("guild_id")


def _build_message_delete(event: Any, data: Any, msg: dict[str, Any]) -> None:
    d = data or {}
    event._message_id = _message_id(d)
    event._channel_id = d.get("channel_id")
    event._guild_id = d.get("guild_id")


def _build_ack(event: Any, data: Any, msg: dict[str, Any]) -> None:
    # Not `_s`: the server echoes the session id there.
    event._s = msg.get("s")


# --- the registry ---------------------------------------------------------------------------

_Check = Callable[[Any, dict[str, Any]], bool]
_Build = Callable[[Any, Any, dict[str, Any]], None]


class Misfit(Exception):
    """Raised by a ``fill`` function: the message's fields do not fit the model."""


def _fill_presence_update(event: Any, data: Any, msg: dict[str, Any]) -> None:
    # The check and the building of PRESENCE_UPDATE in one pass, for the decoder's most
    # frequent message: the same rules as _fits_presence_update and _build_presence_update
    # (the tests hold the three together).
    user_id = msg.get("id")
    if user_id is None:
        user_id = msg.get("_id")
    if type(user_id) not in _ID:
        raise Misfit
    presence = None
    if data is not None:
        if type(data) is not dict:
            raise Misfit
        get = data.get
        kind, description, embed = get("type"), get("description"), get("embed")
        if type(kind) not in _INT or type(description) not in _STR:
            raise Misfit
        if embed is not None:
            if type(embed) is not dict:
                raise Misfit
            get_e = embed.get
            name, about, banner, text = (
                get_e("name"),
                get_e("description"),
                get_e("banner_url"),
                get_e("text"),
            )
            if type(name) not in _STR or type(about) not in _STR or type(banner) not in _STR:
                raise Misfit
            if text is not None:
                if type(text) is not dict:
                    raise Misfit
                top, bottom = text.get("top"), text.get("bottom")
                if type(top) not in _STR or type(bottom) not in _STR:
                    raise Misfit
                text = EmbedText(_unless_none(top), _unless_none(bottom))
            embed = Embed(_unless_none(name), _unless_none(about), _unless_none(banner), text)
        presence = Presence(kind, description, get("emoji"), embed)
    event._user_id = user_id
    event._presence = presence


def _fill(fits: _Check, build: _Build) -> _Build:
    """Check, then build: the ``fill`` of an event without a one-pass function."""

    def fill(event: Any, data: Any, msg: dict[str, Any]) -> None:
        if not fits(data, msg):
            raise Misfit
        build(event, data, msg)

    return fill


class _Entry(NamedTuple):
    cls: type[Event]
    fits: _Check  # does the message fit? (builds nothing)
    build: _Build  # the fields of a message that fits, into the event's slots
    fill: _Build  # both at once: builds, or raises Misfit
    name: str  # the registered name: events share it instead of holding a copy each


# The checks and builders of each name in models.EVENT_TYPES (which holds the classes).
_FUNCTIONS: dict[str, tuple[_Check, _Build]] = {
    "HELLO": (_fits_hello, _build_hello),
    "READY": (_fits_ready, _build_ready),
    "PRESENCE_UPDATE": (_fits_presence_update, _build_presence_update),
    "NOTIFICATION": (_fits_notification, _build_notification),
    "GUILD_CREATE": (_fits_guild_event, _build_guild_event),
    "GUILD_JOIN": (_fits_guild_event, _build_guild_event),
    "GUILD_INIT": (_fits_guild_event, _build_guild_event),
    "GUILD_UPDATE": (_fits_guild_event, _build_guild_event),
    "GUILD_DELETE": (_fits_guild_event, _build_guild_event),
    "CHANNEL_CREATE": (_fits_channel_create, _build_channel_create),
    "INVITE_CREATE": (_fits_invite_create, _build_invite_create),
    "MEMBER_JOIN": (_fits_member_join, _build_member_join),
    "MESSAGE_CREATE": (_fits_message_create, _build_message_create),
    "MESSAGE_DELETE": (_fits_message_delete, _build_message_delete),
    "ACK": (_fits_ack, _build_ack),
}
if _FUNCTIONS.keys() != EVENT_TYPES.keys():  # pragma: no cover - caught by any import
    raise ImportError("hatsu_sync._build and models.EVENT_TYPES name different events")

_FILLS: dict[str, _Build] = {"PRESENCE_UPDATE": _fill_presence_update}
ENTRIES: dict[str, _Entry] = {
    name: _Entry(cls, *_FUNCTIONS[name], _FILLS.get(name) or _fill(*_FUNCTIONS[name]), name)
    for name, cls in EVENT_TYPES.items()
}
BUILDERS: dict[type, _Build | None] = {entry.cls: entry.build for entry in ENTRIES.values()}
BUILDERS[Event] = None
BUILDERS[GuildEvent] = _build_guild_event

_new = object.__new__


def builder_for(cls: type) -> _Build | None:
    """The builder of ``cls``'s own fields (None for the base Event); a user's subclass of a
    model gets its model's."""
    try:
        return BUILDERS[cls]
    except KeyError:
        for base in cls.__mro__[1:]:
            if base in BUILDERS:
                return BUILDERS[base]
        return None


def decoded_event(msg: dict[str, Any], text: bytes | str, nbytes: int, build: bool) -> Event:
    """The event for a message the decoder parsed.

    Args:
        msg: the parsed message, a dict whose ``t`` is a str. Becomes ``raw`` if ``build``.
        text: the message as received: UTF-8 bytes (inflated), or a str (the caller keeps
            only ASCII ones as str: others cost up to four bytes a character). Not copied.
        nbytes: the message's size in bytes, stored as ``_nbytes``.
        build: build every field now (the event is then "hot": see _lazy._Lazy), rather
            than on first read.
    """
    name = msg["t"]
    entry = ENTRIES.get(name)
    data = msg.get("d")
    if entry is None:
        event = _new(Event)
    else:
        name = entry.name
        if type(data) is str:
            data = data_of(msg)
        if build:
            event = _new(entry.cls)
            try:
                entry.fill(event, data, msg)
            except Misfit:
                event = _new(Event)
        else:
            event = _new(entry.cls if entry.fits(data, msg) else Event)
    if build:
        if type(data) is str and entry is None:
            data = data_of(msg)
        event._raw = msg
        event._data = data
    event._name = name
    event._text = text
    event._nbytes = nbytes
    event._hot = build
    event._lazy = True
    return event
