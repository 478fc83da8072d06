"""Does a parsed gateway message fit its model? One check per registered event (no I/O).

A check, ``fits(data, msg) -> bool``, says whether the message's fields have the JSON types its
model declares; it builds nothing. The decoder runs it on every message (its answer picks the
class), so that an unread event holds only its text; :mod:`hatsu_sync._build` has the builders
that run once a message has passed. The tests check each check against its model's annotations.

Types are compared with ``type(x) is ...`` (or membership in a set of types) rather than
isinstance: json.loads makes exact built-in types, the check is cheaper, and ``type(True) is
int`` is False, so a bool is not taken for an id or a presence type.
"""

from __future__ import annotations

from typing import Any

_NONE = type(None)
_STR = frozenset((str, _NONE))
_INT = frozenset((int, _NONE))
_BOOL = frozenset((bool, _NONE))
_ID = frozenset((str, int, _NONE))
_DICT = frozenset((dict, _NONE))
_LIST = frozenset((list, _NONE))


def _id_of(obj: dict[str, Any]) -> Any:
    # The server renamed `id` to `_id` at some point; accept either, `id` first.
    value = obj.get("id")
    if value is None:
        value = obj.get("_id")
    return value


def _fits_embed(embed: Any) -> bool:
    if embed is None:
        return True
    if type(embed) is not dict:
        return False
    get = embed.get
    if not (
        type(get("name")) in _STR
        and type(get("description")) in _STR
        and type(get("banner_url")) in _STR
    ):
        return False
    text = get("text")
    if text is None:
        return True
    return type(text) is dict and type(text.get("top")) in _STR and type(text.get("bottom")) in _STR


def _fits_channel(channel: Any) -> bool:
    if type(channel) is not dict:
        return False
    get = channel.get
    return (
        type(_id_of(channel)) in _ID
        and type(get("name")) in _STR
        and type(get("description")) in _STR
        and type(get("guild_id")) in _ID
        and type(get("type")) in _INT
        and type(get("inside_of")) in _ID
        and type(get("position")) in _INT
    )


def _fits_guild(guild: Any) -> bool:
    if guild is None:
        return True
    if type(guild) is not dict:
        return False
    get = guild.get
    if not (
        type(_id_of(guild)) in _ID
        and type(get("name")) in _STR
        and type(get("description")) in _STR
        and type(get("banner")) in _STR
        and type(get("invite_banner")) in _STR
        and type(get("vanity_url")) in _STR
        and type(get("verified")) in _BOOL
        and type(get("partnered")) in _BOOL
        and type(get("official")) in _BOOL
        and type(get("owner")) in _ID
        and type(get("emojis")) in _LIST
        and type(get("roles")) in _LIST
        and type(get("default_permission")) in _INT
    ):
        return False
    # GUILD_INIT's `channels` was one channel object in the server's code and a list in the
    # documentation. A null item is a misfit, not a channel.
    channels = get("channels")
    if channels is None:
        return True
    if type(channels) is dict:
        return _fits_channel(channels)
    if type(channels) is not list:
        return False
    return all(_fits_channel(channel) for channel in channels)


def _fits_hello(data: Any, msg: dict[str, Any]) -> bool:
    return type(msg.get("i")) in _STR


def _fits_ready(data: Any, msg: dict[str, Any]) -> bool:
    return type(data) in _DICT


def _fits_presence_update(data: Any, msg: dict[str, Any]) -> bool:
    if type(_id_of(msg)) not in _ID:
        return False
    if data is None:
        return True
    if type(data) is not dict:
        return False
    get = data.get
    return (
        type(get("type")) in _INT and type(get("description")) in _STR and _fits_embed(get("embed"))
    )


def _notified(msg: dict[str, Any]) -> Any:
    # The API server put the recipient in `_id`; prefer it over `id` here.
    user_id = msg.get("_id")
    if user_id is None:
        user_id = msg.get("id")
    return user_id


def _fits_notification(data: Any, msg: dict[str, Any]) -> bool:
    return type(msg.get("type")) in _STR and type(_notified(msg)) in _ID


def _fits_guild_event(data: Any, msg: dict[str, Any]) -> bool:
    return _fits_guild(data)


def _fits_channel_create(data: Any, msg: dict[str, Any]) -> bool:
    return data is None or _fits_channel(data)


def _fits_invite_create(data: Any, msg: dict[str, Any]) -> bool:
    if data is None:
        return True
    return (
        type(data) is dict and type(data.get("code")) in _STR and type(data.get("guild_id")) in _ID
    )


def _fits_member_join(data: Any, msg: dict[str, Any]) -> bool:
    if data is None:  # null reads as an empty object: every field None
        return True
    return (
        type(data) is dict
        and type(data.get("guild_id")) in _ID
        and type(data.get("member")) in _DICT
    )


def _fits_message_create(data: Any, msg: dict[str, Any]) -> bool:
    if data is None:
        return True
    return (
        type(data) is dict
        and type(data.get("channel_id")) in _ID
        and type(data.get("guild_id")) in _ID
    )


def _message_id(d: dict[str, Any]) -> Any:
    message_id = d.get("message_id")
    if message_id is None:
        message_id = _id_of(d)
    return message_id


def _fits_message_delete(data: Any, msg: dict[str, Any]) -> bool:
    if data is None:
        return True
    return (
        type(data) is dict
        and type(_message_id(data)) in _ID
        and type(data.get("channel_id")) in _ID
        and type(data.get("guild_id")) in _ID
    )


def _fits_ack(data: Any, msg: dict[str, Any]) -> bool:
    return True
