"""The event models: fast construction from gateway messages, dataclasses-json, misfits."""

from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hatsu_sync import _build
from hatsu_sync.models import (
    EVENT_TYPES,
    Ack,
    Channel,
    ChannelCreate,
    Embed,
    EmbedText,
    Event,
    Guild,
    GuildCreate,
    GuildDelete,
    GuildEvent,
    GuildInit,
    GuildJoin,
    GuildUpdate,
    Hello,
    Invite,
    InviteCreate,
    MemberJoin,
    MessageCreate,
    MessageDelete,
    Notification,
    Presence,
    PresenceUpdate,
    Ready,
    event_from_message,
)

SECRET = "sess-0d1e-SECRET-marker"

USER = {
    "_id": "907362914021453111",
    "username": "kiri",
    "separator": 420,
    "avatar_url": None,
    "banner_url": None,
    "flags": 0,
    "verified": True,
    "system": False,
    "session_ids": [SECRET],
}

EMBED = {
    "name": "Spotify",
    "description": "Lo-fi beats",
    "banner_url": "https://example.invalid/banner.png",
    "text": {"top": "Chillhop", "bottom": "3:12 left"},
}

GUILD = {
    "id": "907362914021453824",
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
    "roles": [{"id": "1", "name": "mods", "permissions": 8}],
    "default_permission": 33554432,
}

CATEGORY = {
    "id": "907362914021453900",
    "name": "General",
    "description": "The first category",
    "inside_of": 0,
    "type": 1,
    "position": 0,
    "guild_id": "907362914021453824",
}

CHANNEL = {
    "id": "907362914021453901",
    "name": "general",
    "description": "say hi",
    "guild_id": "907362914021453824",
    "type": 2,
    "inside_of": "907362914021453900",
}


def channel_fields(channel: dict[str, Any]) -> dict[str, Any]:
    """What ``Channel.from_dict`` takes for a channel as sent: ``_id`` read as ``id``."""
    fields = {k: v for k, v in channel.items() if k != "_id"}
    if "_id" in channel and channel.get("id") is None:
        fields["id"] = channel["_id"]
    return fields


def guild_fields(guild: dict[str, Any]) -> dict[str, Any]:
    """What ``Guild.from_dict`` takes for a guild as sent: ``_id`` as ``id``, channels a list."""
    fields = channel_fields(guild)
    channels = guild.get("channels")
    if isinstance(channels, dict):
        fields["channels"] = [channel_fields(channels)]
    elif isinstance(channels, list):
        fields["channels"] = [channel_fields(c) for c in channels]
    return fields


# (message as sent, with `d` already decoded; model; the model's own fields for from_dict)
CASES: list[tuple[dict[str, Any], type[Event], dict[str, Any]]] = [
    (
        {"t": "HELLO", "s": SECRET, "d": None, "i": "Sent once we have verified your session_id"},
        Hello,
        {"info": "Sent once we have verified your session_id"},
    ),
    ({"t": "HELLO", "s": SECRET, "d": None}, Hello, {}),
    ({"t": "READY", "s": SECRET, "d": USER, "i": None}, Ready, {"user": USER}),
    ({"t": "READY", "s": SECRET, "d": None, "i": None}, Ready, {}),
    (
        {"t": "PRESENCE_UPDATE", "id": "907362914021453111", "d": {"type": 1, "embed": EMBED}},
        PresenceUpdate,
        {"user_id": "907362914021453111", "presence": {"type": 1, "embed": EMBED}},
    ),
    (
        {
            "t": "PRESENCE_UPDATE",
            "_id": 123456,
            "d": {"type": 4, "description": "afk", "emoji": 98765, "embed": None},
        },
        PresenceUpdate,
        {
            "user_id": 123456,
            "presence": {"type": 4, "description": "afk", "emoji": 98765, "embed": None},
        },
    ),
    (
        {
            "t": "PRESENCE_UPDATE",
            "id": 5,
            "d": {"type": 2, "emoji": "😀", "embed": {**EMBED, "text": None}},
        },
        PresenceUpdate,
        {"user_id": 5, "presence": {"type": 2, "emoji": "😀", "embed": {**EMBED, "text": None}}},
    ),
    (
        {"t": "PRESENCE_UPDATE", "id": "7", "d": {"type": 3, "embed": {"text": {"top": "a"}}}},
        PresenceUpdate,
        {"user_id": "7", "presence": {"type": 3, "embed": {"text": {"top": "a"}}}},
    ),
    ({"t": "PRESENCE_UPDATE", "id": "7", "d": None}, PresenceUpdate, {"user_id": "7"}),
    (
        {"t": "NOTIFICATION", "type": "FRIEND_REQUEST", "excerpt": {"from": "kiri#0420"}},
        Notification,
        {"type": "FRIEND_REQUEST", "excerpt": {"from": "kiri#0420"}},
    ),
    (
        {"t": "NOTIFICATION", "type": "MESSAGE", "excerpt": {"content": "hi"}, "_id": 42},
        Notification,
        {"type": "MESSAGE", "excerpt": {"content": "hi"}, "user_id": 42},
    ),
    (
        {"t": "NOTIFICATION", "type": "SOMETHING_NEW", "excerpt": "just text"},
        Notification,
        {"type": "SOMETHING_NEW", "excerpt": "just text"},
    ),
    ({"t": "NOTIFICATION"}, Notification, {}),
    ({"t": "GUILD_CREATE", "d": GUILD}, GuildCreate, {"guild": guild_fields(GUILD)}),
    (
        {"t": "GUILD_JOIN", "d": {**GUILD, "id": None, "_id": 907362914021458888}},
        GuildJoin,
        {"guild": {**guild_fields(GUILD), "id": 907362914021458888}},
    ),
    (
        {"t": "GUILD_INIT", "d": {**GUILD, "channels": [CATEGORY, CHANNEL]}},
        GuildInit,
        {"guild": guild_fields({**GUILD, "channels": [CATEGORY, CHANNEL]})},
    ),
    (
        {"t": "GUILD_INIT", "d": {**GUILD, "channels": CHANNEL}},
        GuildInit,
        {"guild": guild_fields({**GUILD, "channels": [CHANNEL]})},
    ),
    (
        {"t": "GUILD_INIT", "d": {**GUILD, "channels": None}},
        GuildInit,
        {"guild": guild_fields(GUILD)},
    ),
    (
        {"t": "GUILD_INIT", "d": {**GUILD, "channels": []}},
        GuildInit,
        {"guild": {**guild_fields(GUILD), "channels": []}},
    ),
    (
        {"t": "GUILD_UPDATE", "d": {"_id": "907362914021453824", "description": "early birds"}},
        GuildUpdate,
        {"guild": {"id": "907362914021453824", "description": "early birds"}},
    ),
    ({"t": "GUILD_UPDATE", "d": {"name": "Renamed"}}, GuildUpdate, {"guild": {"name": "Renamed"}}),
    ({"t": "GUILD_DELETE", "d": None}, GuildDelete, {}),
    ({"t": "GUILD_DELETE", "d": {"id": 17}}, GuildDelete, {"guild": {"id": 17}}),
    ({"t": "CHANNEL_CREATE", "d": CHANNEL}, ChannelCreate, {"channel": CHANNEL}),
    (
        {"t": "CHANNEL_CREATE", "d": {**CATEGORY, "id": None, "_id": 907362914021453900}},
        ChannelCreate,
        {"channel": {**CATEGORY, "id": 907362914021453900}},
    ),
    (
        {"t": "INVITE_CREATE", "d": {"code": "Xk3fQ9a", "guild_id": "907362914021453824"}},
        InviteCreate,
        {"invite": {"code": "Xk3fQ9a", "guild_id": "907362914021453824"}},
    ),
    (
        {"t": "INVITE_CREATE", "d": {"code": "Xk3fQ9a", "guild_id": 907362914021453824}},
        InviteCreate,
        {"invite": {"code": "Xk3fQ9a", "guild_id": 907362914021453824}},
    ),
    (
        {
            "t": "MEMBER_JOIN",
            "d": {"member": {"user": {"id": "1", "username": "kiri"}, "nick": None}, "guild_id": 3},
        },
        MemberJoin,
        {"guild_id": 3, "member": {"user": {"id": "1", "username": "kiri"}, "nick": None}},
    ),
    (
        {
            "t": "MESSAGE_CREATE",
            "d": {"id": "99", "content": "hi", "channel_id": "5", "guild_id": "3"},
        },
        MessageCreate,
        {
            "message": {"id": "99", "content": "hi", "channel_id": "5", "guild_id": "3"},
            "channel_id": "5",
            "guild_id": "3",
        },
    ),
    (
        {"t": "MESSAGE_DELETE", "d": {"id": 99, "channel_id": 5}},
        MessageDelete,
        {"message_id": 99, "channel_id": 5},
    ),
    (
        {"t": "MESSAGE_DELETE", "d": {"message_id": "99", "_id": "ignored", "guild_id": "3"}},
        MessageDelete,
        {"message_id": "99", "guild_id": "3"},
    ),
    ({"t": "ACK", "_s": SECRET, "s": 12, "d": None}, Ack, {"s": 12}),
]

CASE_IDS = [f"{i}-{msg['t']}" for i, (msg, _, _) in enumerate(CASES)]


@pytest.mark.parametrize(("msg", "cls", "fields"), CASES, ids=CASE_IDS)
def test_fast_construction_agrees_with_from_dict(
    msg: dict[str, Any], cls: type[Event], fields: dict[str, Any]
) -> None:
    """Each realistic message builds its model, equal to what dataclasses-json's from_dict makes."""
    sent = copy.deepcopy(msg)
    event = event_from_message(sent)
    expected = cls.from_dict({"name": msg["t"], "data": msg.get("d"), "raw": msg, **fields})
    assert type(event) is cls
    assert event == expected
    assert event.raw is sent
    assert sent == msg


@pytest.mark.parametrize(("msg", "cls", "fields"), CASES, ids=CASE_IDS)
def test_models_round_trip_through_dict_and_json(
    msg: dict[str, Any], cls: type[Event], fields: dict[str, Any]
) -> None:
    """to_dict/from_dict and to_json/from_json give back an equal event of the same class."""
    event = event_from_message(copy.deepcopy(msg))
    assert cls.from_dict(event.to_dict()) == event
    text = event.to_json()
    assert json.loads(text)["raw"] == msg
    assert cls.from_json(text) == event


def test_every_registered_name_has_a_realistic_case() -> None:
    """Every event name in EVENT_TYPES is covered by the cases above, with its own class."""
    covered = {msg["t"]: cls for msg, cls, _ in CASES}
    assert covered == dict(EVENT_TYPES)


def test_registry_is_read_only() -> None:
    """EVENT_TYPES cannot be changed behind the builders' back."""
    with pytest.raises(TypeError):
        EVENT_TYPES["X"] = Event  # type: ignore[index]


def test_presence_update_fields() -> None:
    """PRESENCE_UPDATE reads the user id from the top level and the presence from d, nested."""
    event = event_from_message(
        {"t": "PRESENCE_UPDATE", "id": "911", "d": {"type": 1, "emoji": 7, "embed": EMBED}}
    )
    assert isinstance(event, PresenceUpdate)
    assert event.user_id == "911"
    assert event.presence == Presence(
        type=1,
        emoji=7,
        embed=Embed(
            name="Spotify",
            description="Lo-fi beats",
            banner_url="https://example.invalid/banner.png",
            text=EmbedText(top="Chillhop", bottom="3:12 left"),
        ),
    )


def test_underscore_id_is_read_when_id_is_missing() -> None:
    """A top-level `_id` (a later server version) is the user id, kept as an int if sent so."""
    event = event_from_message({"t": "PRESENCE_UPDATE", "_id": 123, "d": {"type": 2}})
    assert isinstance(event, PresenceUpdate)
    assert event.user_id == 123


def test_notification_has_no_data_and_keeps_unknown_types() -> None:
    """NOTIFICATION has no d: data is None, and a type the documentation doesn't list is kept."""
    msg = {"t": "NOTIFICATION", "type": "FRIEND_REMOVE", "excerpt": {"user": "x"}}
    event = event_from_message(msg)
    assert isinstance(event, Notification)
    assert (event.data, event.type, event.excerpt) == (None, "FRIEND_REMOVE", {"user": "x"})


def test_guild_init_channels_always_a_list() -> None:
    """GUILD_INIT's channels become a list whether sent as one object, a list or null."""
    one = event_from_message({"t": "GUILD_INIT", "d": {**GUILD, "channels": CHANNEL}})
    many = event_from_message({"t": "GUILD_INIT", "d": {**GUILD, "channels": [CATEGORY, CHANNEL]}})
    null = event_from_message({"t": "GUILD_INIT", "d": {**GUILD, "channels": None}})
    assert isinstance(one, GuildInit)
    assert isinstance(many, GuildInit)
    assert isinstance(null, GuildInit)
    assert one.guild is not None
    assert many.guild is not None
    assert null.guild is not None
    assert one.guild.channels == [Channel.from_dict(CHANNEL)]
    assert [c.type for c in many.guild.channels or []] == [1, 2]
    assert null.guild.channels is None


def test_guild_update_partial_and_guild_delete_null() -> None:
    """GUILD_UPDATE sets only the fields sent; GUILD_DELETE with d null has no guild."""
    update = event_from_message({"t": "GUILD_UPDATE", "d": {"_id": "9", "name": "New"}})
    delete = event_from_message({"t": "GUILD_DELETE", "d": None})
    assert isinstance(update, GuildUpdate)
    assert isinstance(update, GuildEvent)
    assert update.guild == Guild(id="9", name="New")
    assert isinstance(delete, GuildDelete)
    assert delete.guild is None


def test_invite_and_channel_models() -> None:
    """INVITE_CREATE and CHANNEL_CREATE carry an Invite and a Channel."""
    invite = event_from_message({"t": "INVITE_CREATE", "d": {"code": "abc1234", "guild_id": "3"}})
    channel = event_from_message({"t": "CHANNEL_CREATE", "d": CHANNEL})
    assert isinstance(invite, InviteCreate)
    assert invite.invite == Invite(code="abc1234", guild_id="3")
    assert isinstance(channel, ChannelCreate)
    assert channel.channel is not None
    assert channel.channel.inside_of == "907362914021453900"


def test_reprs_leave_out_raw_and_session_ids() -> None:
    """An event's repr leaves out raw, so HELLO's and ACK's echoed session id are not shown."""
    hello = event_from_message({"t": "HELLO", "s": SECRET, "d": None, "i": "wait for READY"})
    ack = event_from_message({"t": "ACK", "_s": SECRET, "s": 1, "d": None})
    assert isinstance(ack, Ack)
    assert SECRET not in repr(hello)
    assert SECRET not in repr(ack)
    assert "wait for READY" in repr(hello)


def test_ready_user_is_the_decoded_d() -> None:
    """READY's user is its d (decoded by the decoder), a plain dict."""
    event = event_from_message({"t": "READY", "s": SECRET, "d": USER, "i": None})
    assert isinstance(event, Ready)
    assert event.user is event.data
    assert event.user == USER


MISFITS: list[dict[str, Any]] = [
    {"t": "HELLO", "d": None, "i": {"text": "an object"}},
    {"t": "HELLO", "d": None, "i": 3},
    {"t": "READY", "d": [USER]},
    {"t": "READY", "d": '{"_id": "not decoded"'},
    {"t": "READY", "d": 5},
    {"t": "PRESENCE_UPDATE", "id": "1", "d": [{"type": 1}]},
    {"t": "PRESENCE_UPDATE", "id": "1", "d": "online"},
    {"t": "PRESENCE_UPDATE", "id": "1", "d": {"type": "1"}},
    {"t": "PRESENCE_UPDATE", "id": "1", "d": {"type": True}},
    {"t": "PRESENCE_UPDATE", "id": "1", "d": {"type": 1.0}},
    {"t": "PRESENCE_UPDATE", "id": "1", "d": {"type": [1]}},
    {"t": "PRESENCE_UPDATE", "id": "1", "d": {"type": 1, "description": {"x": 1}}},
    {"t": "PRESENCE_UPDATE", "id": "1", "d": {"type": 1, "embed": []}},
    {"t": "PRESENCE_UPDATE", "id": "1", "d": {"type": 1, "embed": "Spotify"}},
    {"t": "PRESENCE_UPDATE", "id": "1", "d": {"type": 1, "embed": {**EMBED, "text": "top"}}},
    {"t": "PRESENCE_UPDATE", "id": "1", "d": {"type": 1, "embed": {**EMBED, "text": [1]}}},
    {"t": "PRESENCE_UPDATE", "id": "1", "d": {"type": 1, "embed": {"text": {"top": 5}}}},
    {"t": "PRESENCE_UPDATE", "id": "1", "d": {"type": 1, "embed": {"name": ["a"]}}},
    {"t": "PRESENCE_UPDATE", "id": "1", "d": {"type": 1, "embed": {"banner_url": False}}},
    {"t": "PRESENCE_UPDATE", "id": {"n": 1}, "d": {"type": 1}},
    {"t": "PRESENCE_UPDATE", "_id": [1], "d": {"type": 1}},
    {"t": "PRESENCE_UPDATE", "id": True, "d": {"type": 1}},
    {"t": "PRESENCE_UPDATE", "id": 1.5, "d": {"type": 1}},
    {"t": "NOTIFICATION", "type": 5, "excerpt": {}},
    {"t": "NOTIFICATION", "type": {"kind": "MESSAGE"}},
    {"t": "NOTIFICATION", "type": "MESSAGE", "_id": [1]},
    {"t": "GUILD_CREATE", "d": [GUILD]},
    {"t": "GUILD_CREATE", "d": "Night Owls"},
    {"t": "GUILD_CREATE", "d": {**GUILD, "name": {"en": "Night Owls"}}},
    {"t": "GUILD_CREATE", "d": {**GUILD, "id": {"$oid": "1"}}},
    {"t": "GUILD_CREATE", "d": {**GUILD, "verified": "yes"}},
    {"t": "GUILD_CREATE", "d": {**GUILD, "verified": 1}},
    {"t": "GUILD_CREATE", "d": {**GUILD, "emojis": {}}},
    {"t": "GUILD_CREATE", "d": {**GUILD, "owner": {"id": "1"}}},
    {"t": "GUILD_CREATE", "d": {**GUILD, "default_permission": "8"}},
    {"t": "GUILD_INIT", "d": {**GUILD, "channels": "general"}},
    {"t": "GUILD_INIT", "d": {**GUILD, "channels": [1]}},
    {"t": "GUILD_INIT", "d": {**GUILD, "channels": [None]}},
    {"t": "GUILD_INIT", "d": {**GUILD, "channels": [CHANNEL, [CHANNEL]]}},
    {"t": "GUILD_INIT", "d": {**GUILD, "channels": {**CHANNEL, "name": {}}}},
    {"t": "GUILD_UPDATE", "d": 5},
    {"t": "GUILD_DELETE", "d": ["907362914021453824"]},
    {"t": "CHANNEL_CREATE", "d": [CHANNEL]},
    {"t": "CHANNEL_CREATE", "d": {**CHANNEL, "type": "2"}},
    {"t": "CHANNEL_CREATE", "d": {**CHANNEL, "inside_of": {"id": 0}}},
    {"t": "CHANNEL_CREATE", "d": {**CHANNEL, "guild_id": 1.5}},
    {"t": "CHANNEL_CREATE", "d": {**CHANNEL, "position": None, "description": 7}},
    {"t": "CHANNEL_CREATE", "d": {**CHANNEL, "position": "1"}},
    {"t": "INVITE_CREATE", "d": "Xk3fQ9a"},
    {"t": "INVITE_CREATE", "d": {"code": 1234567, "guild_id": "3"}},
    {"t": "INVITE_CREATE", "d": {"code": "Xk3fQ9a", "guild_id": ["3"]}},
    {"t": "MEMBER_JOIN", "d": [1]},
    {"t": "MEMBER_JOIN", "d": {"member": [1], "guild_id": "3"}},
    {"t": "MEMBER_JOIN", "d": {"member": {}, "guild_id": {"id": "3"}}},
    {"t": "MESSAGE_CREATE", "d": "hello"},
    {"t": "MESSAGE_CREATE", "d": {"content": "hi", "channel_id": {"id": 5}}},
    {"t": "MESSAGE_DELETE", "d": {"message_id": {"id": 1}}},
    {"t": "MESSAGE_DELETE", "d": {"id": None, "_id": [1]}},
    {"t": "MESSAGE_DELETE", "d": 99},
]


@pytest.mark.parametrize("msg", MISFITS, ids=[f"{i}-{m['t']}" for i, m in enumerate(MISFITS)])
def test_misfit_fields_give_a_base_event(msg: dict[str, Any]) -> None:
    """A known event whose fields do not fit its model is still delivered, as a base Event."""
    sent = copy.deepcopy(msg)
    event = event_from_message(sent)
    assert type(event) is Event
    assert event.name == msg["t"]
    assert event.data == msg.get("d")
    assert event.raw is sent
    assert Event.from_json(event.to_json()) == event


@pytest.mark.parametrize("name", ["TYPING_START", "HEARTBEAT", "presence_update", "", "ÜBER"])
def test_unknown_names_give_a_base_event_with_data_and_raw(name: str) -> None:
    """An unknown event name gives a base Event with the name, d and the whole message."""
    msg = {"t": name, "d": {"x": [1, 2]}, "extra": "kept"}
    event = event_from_message(msg)
    assert type(event) is Event
    assert (event.name, event.data, event.raw) == (name, {"x": [1, 2]}, msg)
    assert event.raw["extra"] == "kept"


def test_unknown_fields_stay_reachable_through_raw() -> None:
    """Fields no model knows stay in raw (and in data), untouched."""
    msg = {"t": "GUILD_CREATE", "d": {**GUILD, "icon_hash": "abc"}, "seq": 3}
    event = event_from_message(msg)
    assert isinstance(event, GuildCreate)
    assert event.raw["seq"] == 3
    assert event.data["icon_hash"] == "abc"


# --- property: event_from_message never raises ------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)
FIELD_NAMES = sorted(
    {
        "id",
        "_id",
        "type",
        "description",
        "emoji",
        "embed",
        "text",
        "top",
        "bottom",
        "name",
        "banner_url",
        "channels",
        "guild_id",
        "inside_of",
        "code",
        "member",
        "message_id",
        "channel_id",
        "verified",
        "owner",
        "emojis",
        "roles",
        "position",
        "default_permission",
    }
)
# Objects shaped like the models' (known keys, any values), nested one level, to reach the
# builders' deeper checks more often than random dictionaries would.
SHAPED = st.dictionaries(
    st.sampled_from(FIELD_NAMES),
    JSON_VALUES | st.dictionaries(st.sampled_from(FIELD_NAMES), JSON_VALUES, max_size=4),
    max_size=6,
)
NAMES = st.sampled_from(sorted(EVENT_TYPES)) | st.text(max_size=12)
TOP_LEVEL = st.dictionaries(
    st.sampled_from(["d", "id", "_id", "i", "s", "_s", "type", "excerpt", "other"]),
    JSON_VALUES | SHAPED,
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(name=NAMES, rest=TOP_LEVEL)
def test_event_from_message_never_raises(name: str, rest: dict[str, Any]) -> None:
    """Any dict with a str t becomes an event whose model round-trips through to_dict."""
    msg = {**rest, "t": name}
    event = event_from_message(msg)
    assert isinstance(event, Event)
    assert (event.name, event.raw) == (name, msg)
    assert event.data is msg.get("d")
    assert type(event) in (Event, EVENT_TYPES.get(name))
    assert type(event).from_dict(event.to_dict()) == event
    event.to_json()


# --- the decoder's checks agree with the models' annotations ----------------------------------

# Events whose model reads its fields from `d`: a `d` that is not an object (or null) misfits.
D_IS_AN_OBJECT = {name for name in EVENT_TYPES if name not in ("HELLO", "NOTIFICATION", "ACK")}


def conforms(value: Any, annotation: Any) -> bool:
    """Whether ``value`` has the JSON type that ``annotation`` declares (bools are not ints)."""
    if annotation is Any:
        return True
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:
        return any(conforms(value, arg) for arg in args)
    if annotation is type(None):
        return value is None
    if annotation in (str, int, bool):
        return type(value) is annotation
    if origin is list:
        return type(value) is list and all(conforms(item, args[0]) for item in value)
    if origin is dict:
        return type(value) is dict
    if dataclasses.is_dataclass(annotation):
        hints = typing.get_type_hints(annotation)
        return type(value) is annotation and all(
            conforms(getattr(value, f.name), hints[f.name]) for f in dataclasses.fields(annotation)
        )
    raise AssertionError(f"no rule for {annotation!r}")


def fits_by_annotations(msg: dict[str, Any]) -> bool:
    """An oracle independent of the decoder's checks: build the model's fields, then compare
    each with the model's annotation."""
    name, data = msg["t"], msg.get("d")
    cls = EVENT_TYPES[name]
    if name in D_IS_AN_OBJECT and not (data is None or type(data) is dict):
        return False
    # GUILD_INIT's channels arrive as null, one object or a list (the builder would iterate a
    # string, so the annotation alone cannot tell).
    channels = data.get("channels") if name.startswith("GUILD_") and data is not None else None
    if type(channels) not in (type(None), dict, list):
        return False
    stub = types.SimpleNamespace()
    try:
        _build.ENTRIES[name].build(stub, data, msg)
    except (AttributeError, TypeError):  # a builder reading an object that is not one
        return False
    hints = typing.get_type_hints(cls)
    own = [f.name for f in dataclasses.fields(cls) if f.name not in ("name", "data", "raw")]
    return all(conforms(getattr(stub, f"_{f}"), hints[f]) for f in own)


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(sorted(EVENT_TYPES)), rest=TOP_LEVEL)
def test_checks_agree_with_the_annotations(name: str, rest: dict[str, Any]) -> None:
    """A message gets its model exactly when the model's built fields match their annotations."""
    msg = {**rest, "t": name}
    event = event_from_message(msg)
    assert (type(event) is EVENT_TYPES[name]) == fits_by_annotations(msg)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside a JSON value (dict keys and list indexes), ``t`` left out."""
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if prefix or key != "t":
            found.append((*prefix, key))
            if isinstance(item, (dict, list)):
                found.extend(paths(item, (*prefix, key)))
    return found


def replaced(msg: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    copied = copy.deepcopy(msg)
    target = copied
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copied


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_checks_agree_with_the_annotations_one_field_changed(data: st.DataObject) -> None:
    """A realistic message with one field replaced by any JSON value: same verdict both ways."""
    msg, _, _ = data.draw(st.sampled_from(CASES))
    where = paths(msg)
    if not where:
        return
    path = data.draw(st.sampled_from(where))
    changed = replaced(msg, path, data.draw(JSON_VALUES))
    event = event_from_message(changed)
    assert (type(event) is EVENT_TYPES[msg["t"]]) == fits_by_annotations(changed)


@pytest.mark.parametrize(("msg", "cls", "fields"), CASES, ids=CASE_IDS)
def test_realistic_cases_fit_by_annotations(
    msg: dict[str, Any], cls: type[Event], fields: dict[str, Any]
) -> None:
    """The oracle itself accepts every realistic message..."""
    assert fits_by_annotations(msg)


@pytest.mark.parametrize("msg", MISFITS, ids=[f"{i}-{m['t']}" for i, m in enumerate(MISFITS)])
def test_misfits_do_not_fit_by_annotations(msg: dict[str, Any]) -> None:
    """...and refuses every misfit, so the property test above compares two real verdicts."""
    assert not fits_by_annotations(msg)


# --- the deployed server's "None" -----------------------------------------------------------


def test_none_text_in_embed_fields_reads_as_none() -> None:
    """The server's "None" for left-out embed fields is None in the model, "None" in raw."""
    embed = {
        "name": "Calendar",
        "description": "None",
        "banner_url": "None",
        "text": {"top": "10:00", "bottom": "None"},
    }
    msg = {"t": "PRESENCE_UPDATE", "_id": "1", "d": {"type": 3, "embed": embed}}
    event = event_from_message(msg)
    assert isinstance(event, PresenceUpdate)
    assert event.presence is not None
    assert event.presence.embed == Embed(
        name="Calendar", description=None, banner_url=None, text=EmbedText(top="10:00")
    )
    assert event.raw["d"]["embed"]["banner_url"] == "None"
    everything = {"name": "None", "description": "None", "banner_url": "None"}
    all_none = event_from_message({**msg, "d": {"type": 1, "embed": everything}})
    assert isinstance(all_none, PresenceUpdate)
    assert all_none.presence is not None
    assert all_none.presence.embed == Embed()


def test_none_text_elsewhere_is_kept() -> None:
    """Only the embed's fields are read that way: "None" elsewhere is text as sent."""
    presence = event_from_message(
        {"t": "PRESENCE_UPDATE", "id": "None", "d": {"type": 1, "description": "None"}}
    )
    assert isinstance(presence, PresenceUpdate)
    assert presence.user_id == "None"
    assert presence.presence is not None
    assert presence.presence.description == "None"
    guild = event_from_message({"t": "GUILD_UPDATE", "d": {"name": "None"}})
    assert isinstance(guild, GuildUpdate)
    assert guild.guild == Guild(name="None")
    assert Embed(name="None").name == "None"  # built by hand: kept as given


def fill_and_fits_agree(msg: dict[str, Any]) -> None:
    """The decoder's two paths decide alike: fits() (an unread backlog) and fill() (events
    built at once), and fill() builds what build() builds."""
    entry = _build.ENTRIES[msg["t"]]
    data = msg.get("d")
    filled, built = types.SimpleNamespace(), types.SimpleNamespace()
    try:
        entry.fill(filled, data, msg)
        fits = True
    except _build.Misfit:
        fits = False
    assert entry.fits(data, msg) == fits
    if fits:
        entry.build(built, data, msg)
        assert vars(filled) == vars(built)


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(sorted(EVENT_TYPES)), rest=TOP_LEVEL)
def test_fill_and_fits_agree(name: str, rest: dict[str, Any]) -> None:
    """On random messages, fits() and fill() give one verdict, and fill() builds as build()."""
    fill_and_fits_agree({**rest, "t": name})


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_fill_and_fits_agree_one_field_changed(data: st.DataObject) -> None:
    """On realistic messages with one field replaced, fits() and fill() give one verdict."""
    msg, _, _ = data.draw(st.sampled_from(CASES))
    where = paths(msg)
    if where:
        path = data.draw(st.sampled_from(where))
        fill_and_fits_agree(replaced(msg, path, data.draw(JSON_VALUES)))


@pytest.mark.parametrize("msg", [m for m, _, _ in CASES] + MISFITS)
def test_fill_and_fits_agree_on_the_listed_messages(msg: dict[str, Any]) -> None:
    """Every realistic message and every listed misfit gets one verdict from both paths."""
    fill_and_fits_agree(copy.deepcopy(msg))
