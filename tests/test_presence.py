"""Presence end to end: Client.update_presence(), LocalGateway's fan-out, and HEARTBEAT/ACK.

The deployed gateway (docs/protocol.rst; its source is decker-archive/gateway-legacy) read a
client message ``{"t": "PRESENCE", "type": 1-4, "description", "emoji", "embed": {"name",
"description", "banner_url", "top_text", "bottom_text"}}``, dropped it without a word when it
did not fit, and sent ``{"t": "PRESENCE_UPDATE", "id": <user id>, "d": {...}}`` to everyone
sharing a guild with the sender, the sender included.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from hatsu_sync import (
    Ack,
    Client,
    ClientClosed,
    ConnectError,
    Embed,
    EmbedText,
    PresenceUpdate,
)
from hatsu_sync.testing import DEFAULT_USER, LocalGateway

from .conftest import SESSION, T, take

MakeClient = Callable[..., Client]
USER_ID = DEFAULT_USER["_id"]


def connected(gw: LocalGateway, make_client: MakeClient, n: int = 1, **kwargs: Any) -> Any:
    """``n`` clients connected to ``gw``, each past HELLO and READY."""
    clients = [make_client(**kwargs) for _ in range(n)]
    for client in clients:
        client.connect()
    gw.wait_for_clients(n)
    for client in clients:
        assert [e.name for e in take(client, 2)] == ["HELLO", "READY"]
    return clients


def barrier(client: Client, s: int) -> None:
    """Send a HEARTBEAT and wait for its ACK: whatever the client sent before was processed."""
    client.send({"t": "HEARTBEAT", "s": s})
    event = client.get_event(timeout=T)
    assert isinstance(event, Ack)
    assert event.s == s


def test_update_presence_sends_the_servers_message(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """update_presence() sends one PRESENCE message with the server's flat embed fields."""
    (client,) = connected(gateway, make_client)
    client.update_presence(
        type=1,
        description="Listening to lo-fi",
        emoji="907362914021453222",
        embed=Embed(
            name="Spotify",
            description="Lo-fi beats",
            banner_url="https://example.invalid/b.png",
            text=EmbedText(top="Chillhop", bottom="3:12 left"),
        ),
    )
    gateway.wait_for_received(1)
    assert gateway.received == [
        {
            "t": "PRESENCE",
            "type": 1,
            "description": "Listening to lo-fi",
            "emoji": "907362914021453222",
            "embed": {
                "name": "Spotify",
                "description": "Lo-fi beats",
                "banner_url": "https://example.invalid/b.png",
                "top_text": "Chillhop",
                "bottom_text": "3:12 left",
            },
        }
    ]


@pytest.mark.parametrize("encoding", ["json", "zlib"])
def test_presence_fans_out_to_every_client_sender_included(
    gateway: LocalGateway, make_client: MakeClient, encoding: str
) -> None:
    """A presence reaches every identified client as PRESENCE_UPDATE, the sender's too."""
    sender, other = connected(gateway, make_client, 2, encoding=encoding)
    sender.update_presence(
        type=3,
        description="In a meeting",
        emoji=42,
        embed=Embed(name="Calendar", description="Standup", text=EmbedText(top="10:00")),
    )
    for client in (sender, other):
        event = client.get_event(timeout=T)
        assert isinstance(event, PresenceUpdate)
        assert event.user_id == USER_ID
        assert event.presence is not None
        assert event.presence.type == 3
        assert event.presence.description == "In a meeting"
        assert event.presence.emoji == 42
        assert event.presence.embed == Embed(
            name="Calendar",
            description="Standup",
            # The server str()-ed every embed field: what was left out arrives as "None",
            # which the models read as None (raw keeps what was sent).
            banner_url=None,
            text=EmbedText(top="10:00", bottom=None),
        )
        assert event.raw["d"]["embed"]["banner_url"] == "None"


def test_sender_gets_its_update_in_order(gateway: LocalGateway, make_client: MakeClient) -> None:
    """The sender's own PRESENCE_UPDATE comes before the answers to what it sent next."""
    (client,) = connected(gateway, make_client)
    for s in range(20):
        client.update_presence(type=1 + s % 4)
        client.send({"t": "HEARTBEAT", "s": s})
    for s in range(20):
        update, ack = take(client, 2)
        assert isinstance(update, PresenceUpdate)
        assert update.presence is not None
        assert update.presence.type == 1 + s % 4
        assert isinstance(ack, Ack)
        assert ack.s == s


def test_presence_without_embed(gateway: LocalGateway, make_client: MakeClient) -> None:
    """A presence with only a type comes back with null description, emoji and embed."""
    (client,) = connected(gateway, make_client)
    client.update_presence(type=4)
    event = client.get_event(timeout=T)
    assert isinstance(event, PresenceUpdate)
    assert event.raw == {
        "t": "PRESENCE_UPDATE",
        "id": USER_ID,
        "d": {"type": 4, "description": None, "emoji": None, "embed": None},
    }


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"type": 0}, ValueError),
        ({"type": 5}, ValueError),
        ({"type": "1"}, TypeError),
        ({"type": True}, TypeError),
        ({"type": 1.0}, TypeError),
        ({"type": 1, "description": 7}, TypeError),
        ({"type": 1, "emoji": 1.5}, TypeError),
        ({"type": 1, "emoji": False}, TypeError),
        ({"type": 1, "embed": {"name": "x", "description": "y"}}, TypeError),
        ({"type": 1, "embed": Embed(description="no name")}, ValueError),
        ({"type": 1, "embed": Embed(name="no description")}, ValueError),
        ({"type": 1, "embed": Embed(name="x", description=3)}, TypeError),
        ({"type": 1, "embed": Embed(name="x", description="y", banner_url=1)}, TypeError),
        ({"type": 1, "embed": Embed(name="x", description="y", text="top")}, TypeError),
        (
            {"type": 1, "embed": Embed(name="x", description="y", text=EmbedText(bottom=2))},
            TypeError,
        ),
    ],
)
def test_update_presence_validates_before_sending(
    gateway: LocalGateway, make_client: MakeClient, kwargs: dict[str, Any], error: type
) -> None:
    """Bad arguments raise (ValueError for values, TypeError for types) and send nothing."""
    (client,) = connected(gateway, make_client)
    with pytest.raises(error):
        client.update_presence(**kwargs)
    barrier(client, 1)
    assert gateway.received == [{"t": "HEARTBEAT", "s": 1}]


def test_update_presence_arguments_are_keyword_only(make_client: MakeClient) -> None:
    """update_presence() takes keyword arguments only."""
    client = make_client()
    with pytest.raises(TypeError):
        client.update_presence(1)


def test_update_presence_needs_a_connection(gateway: LocalGateway, make_client: MakeClient) -> None:
    """Before connect() it raises ConnectError; after close() it raises ClientClosed."""
    client = make_client()
    with pytest.raises(ConnectError):
        client.update_presence(type=1)
    client.connect()
    client.close()
    with pytest.raises(ClientClosed):
        client.update_presence(type=1)


@pytest.mark.parametrize(
    "message",
    [
        {"t": "PRESENCE", "type": 5, "description": "type out of range"},
        {"t": "PRESENCE", "type": 1},  # no description
        {"t": "PRESENCE", "type": 1, "description": "x", "embed": {"name": "no description"}},
        {"t": "PRESENCE", "type": 1, "description": "x", "embed": "not an object"},
    ],
)
def test_gateway_drops_presences_the_server_dropped(
    gateway: LocalGateway, make_client: MakeClient, message: dict[str, Any]
) -> None:
    """LocalGateway ignores a PRESENCE the server ignored: no update, no close."""
    (client,) = connected(gateway, make_client)
    client.send(message)
    barrier(client, 2)  # the ACK comes next: no PRESENCE_UPDATE came before it
    assert client.state.name == "CONNECTED"
    assert gateway.clients == 1


def test_empty_embed_counts_as_none(gateway: LocalGateway, make_client: MakeClient) -> None:
    """An empty embed object is no embed, as the server read it."""
    (client,) = connected(gateway, make_client)
    client.send({"t": "PRESENCE", "type": 2, "description": "x", "embed": {}})
    event = client.get_event(timeout=T)
    assert isinstance(event, PresenceUpdate)
    assert event.presence is not None
    assert event.presence.embed is None


def test_presence_update_never_holds_the_session_id(make_client: MakeClient) -> None:
    """The update carries the user id, never the sender's session id."""
    with LocalGateway(session_ids=[SESSION]) as gw:
        (sender,) = connected(gw, make_client, gateway=gw.http_url)
        sender.update_presence(type=1, description="hello")
        event = sender.get_event(timeout=T)
        assert isinstance(event, PresenceUpdate)
        assert event.user_id == USER_ID
        assert SESSION not in repr(event.raw)


def test_heartbeat_is_answered_with_ack(gateway: LocalGateway, make_client: MakeClient) -> None:
    """An application HEARTBEAT gets an ACK echoing its s, and the ACK's repr hides _s."""
    (client,) = connected(gateway, make_client)
    client.send({"t": "HEARTBEAT", "s": "abc"})
    event = client.get_event(timeout=T)
    assert isinstance(event, Ack)
    assert event.s == "abc"
    assert "_s" in event.raw
    assert event.raw["_s"] not in repr(event)
