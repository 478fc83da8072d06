"""The hatsu_sync pytest plugin: a ``hatsu_gateway`` fixture for testing your own code.

Installing hatsu-sync registers this plugin with pytest (the ``pytest11`` entry point), so any
test can ask for a running :class:`~hatsu_sync.testing.LocalGateway`::

    from hatsu_sync import Client


    def test_my_bot_sees_presences(hatsu_gateway):
        with Client("test-session", gateway=hatsu_gateway.http_url) as client:
            hatsu_gateway.wait_for_clients()  # connect() returns before the gateway is ready
            hatsu_gateway.send({"t": "PRESENCE_UPDATE", "id": "42", "d": {"type": 1}})
            names = [client.get_event(timeout=5).name for _ in range(3)]
        assert names == ["HELLO", "READY", "PRESENCE_UPDATE"]

The gateway accepts any session id and is stopped after the test. To configure it, override
``hatsu_gateway_options`` (the keyword arguments of ``LocalGateway``) in a ``conftest.py``::

    @pytest.fixture
    def hatsu_gateway_options():
        return {"session_ids": {"test-session"}, "ready_delay": 0.5}

Loading the plugin costs a pytest run nothing until a test asks for the fixture: importing this
module imports neither the client nor websockets or websocket-client (the package's
names are imported on first use). ``-p no:hatsu_sync`` turns the plugin off.

Without installing the package, enable the plugin with ``-p hatsu_sync.pytest_plugin`` or
``pytest_plugins = ["hatsu_sync.pytest_plugin"]`` in your top-level ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .testing import LocalGateway

__all__ = ["hatsu_gateway", "hatsu_gateway_options"]


@pytest.fixture
def hatsu_gateway_options() -> dict[str, Any]:
    """Keyword arguments for the ``hatsu_gateway`` fixture's LocalGateway; none by default."""
    return {}


@pytest.fixture
def hatsu_gateway(hatsu_gateway_options: dict[str, Any]) -> Iterator[LocalGateway]:
    """A running LocalGateway on 127.0.0.1 (free ports), stopped after the test."""
    # Imported here: pytest loads this plugin in every session of every project that has
    # hatsu-sync installed, and only tests that use the fixture should pay for websockets.
    from .testing import LocalGateway

    with LocalGateway(**hatsu_gateway_options) as gateway:
        yield gateway
