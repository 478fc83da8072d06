"""Your own tests for your own bot, against a real gateway on your machine.

Installing hatsu-sync gives pytest the ``hatsu_gateway`` fixture: a running LocalGateway that
behaves like the hatsu gateway, stopped after each test. Send it the events your bot must
handle, and check what the bot did; no network and no account needed:

    pytest examples/test_my_bot.py

With HATSU_SESSION_ID set, the last test also checks your session against the hatsu gateway.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from hatsu_sync import Client, Presence, PresenceUpdate
from hatsu_sync.testing import LocalGateway

TIMEOUT = 5.0


class PresenceBoard:
    """The bot under test: remembers every user's latest presence, fed by a client callback."""

    def __init__(self, client: Client) -> None:
        self._latest: dict[str, Presence] = {}
        self._changed = threading.Condition()
        client.on(PresenceUpdate, self._on_presence)

    def _on_presence(self, event: PresenceUpdate) -> None:
        # Runs on the client's callback thread.
        if event.presence is not None:
            with self._changed:
                self._latest[str(event.user_id)] = event.presence
                self._changed.notify_all()

    def wait_for(self, user_id: str, **expected: Any) -> Presence:
        """The user's presence once it has the ``expected`` fields (TimeoutError after 5 s)."""

        def matches() -> bool:
            presence = self._latest.get(user_id)
            return presence is not None and all(
                getattr(presence, name) == value for name, value in expected.items()
            )

        with self._changed:
            if not self._changed.wait_for(matches, TIMEOUT):
                raise TimeoutError(f"no matching presence for user {user_id}")
            return self._latest[user_id]


@pytest.fixture
def client(hatsu_gateway: LocalGateway) -> Iterator[Client]:
    """A client of the local gateway; the test connects it (after building the bot)."""
    client = Client("test-session", gateway=hatsu_gateway.http_url, backoff_base=0.05)
    yield client
    client.close()


def test_board_keeps_the_latest_presence(hatsu_gateway: LocalGateway, client: Client) -> None:
    """The board holds each user's latest presence, ids as sent (strings or integers)."""
    board = PresenceBoard(client)
    with client:
        hatsu_gateway.wait_for_clients()  # connect() returns before the gateway is ready
        hatsu_gateway.send({"t": "PRESENCE_UPDATE", "id": "42", "d": {"type": 1}})
        hatsu_gateway.send({"t": "PRESENCE_UPDATE", "_id": 7, "d": {"type": 3}})
        hatsu_gateway.send({"t": "PRESENCE_UPDATE", "id": "42", "d": {"type": 2}})
        assert board.wait_for("42", type=2).type == 2
        assert board.wait_for("7").type == 3


def test_board_sees_its_own_presence(hatsu_gateway: LocalGateway, client: Client) -> None:
    """A presence the bot sets comes back to it, as the hatsu gateway sends it to its sender."""
    board = PresenceBoard(client)
    with client:
        hatsu_gateway.wait_for_clients()
        client.update_presence(type=2, description="testing")
        own_id = str(hatsu_gateway.user["_id"])
        assert board.wait_for(own_id).description == "testing"


def test_board_keeps_working_after_a_reconnect(hatsu_gateway: LocalGateway, client: Client) -> None:
    """After the gateway drops the connection, the client reconnects and the board goes on."""
    board = PresenceBoard(client)
    with client:
        hatsu_gateway.wait_for_clients()
        hatsu_gateway.disconnect(1011, "restarting")
        hatsu_gateway.wait_for_identifies(2)  # the client identified again
        hatsu_gateway.wait_for_clients()
        hatsu_gateway.send({"t": "PRESENCE_UPDATE", "id": "42", "d": {"type": 4}})
        assert board.wait_for("42").type == 4
        assert client.stats.reconnects == 1


@pytest.mark.skipif(not os.environ.get("HATSU_SESSION_ID"), reason="HATSU_SESSION_ID is not set")
def test_the_hatsu_gateway_accepts_my_session() -> None:
    """The hatsu gateway accepts the session id in HATSU_SESSION_ID (it says HELLO)."""
    with Client(os.environ["HATSU_SESSION_ID"]) as client:
        assert client.get_event(timeout=30).name == "HELLO"
