"""hatsu_sync: a synchronous client for the hatsu gateway event stream.

Pull events with :meth:`Client.get_event` (or iterate over the client), or register callbacks
with :meth:`Client.on`. The websocket, keepalive pings, reconnects and zlib decoding run in
background threads; the guide is docs/guide.rst.

The names are imported on first use (PEP 562): ``import hatsu_sync.pytest_plugin`` or
``hatsu_sync.testing._samples`` does not load the client or websocket-client, so
pytest runs that never use the ``hatsu_gateway`` fixture do not pay for them.
``from hatsu_sync import Client`` and ``hatsu_sync.Client`` work as with eager imports.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports these
    from ._client import DEFAULT_FATAL_CLOSE_CODES, DEFAULT_GATEWAY, PRODUCTION_1, Client
    from ._process import DuplicateClientWarning
    from ._state import Connected, Disconnected, State, Stats
    from .exceptions import (
        ClientClosed,
        ConnectError,
        DecodeError,
        DiscoveryError,
        GatewayClosed,
        HatsuError,
    )
    from .models import (
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
    )

logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.2.0"

# Each public name -> the submodule that defines it.
_SOURCES = {
    "DEFAULT_FATAL_CLOSE_CODES": "._client",
    "DEFAULT_GATEWAY": "._client",
    "PRODUCTION_1": "._client",
    "Client": "._client",
    "DuplicateClientWarning": "._process",
    "Connected": "._state",
    "Disconnected": "._state",
    "State": "._state",
    "Stats": "._state",
    **dict.fromkeys(
        (
            "ClientClosed",
            "ConnectError",
            "DecodeError",
            "DiscoveryError",
            "GatewayClosed",
            "HatsuError",
        ),
        ".exceptions",
    ),
    **dict.fromkeys(
        (
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
        ),
        ".models",
    ),
}


def __getattr__(name: str) -> Any:
    """Import a public name's submodule on first use (PEP 562) and cache the name here.

    Raises:
        AttributeError: ``name`` is not a public name of the package (nor a submodule).
    """
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(source, __name__), name)
    globals()[name] = value  # later lookups find it directly, without this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "DEFAULT_FATAL_CLOSE_CODES",
    "DEFAULT_GATEWAY",
    "EVENT_TYPES",
    "PRODUCTION_1",
    "Ack",
    "Channel",
    "ChannelCreate",
    "Client",
    "ClientClosed",
    "ConnectError",
    "Connected",
    "DecodeError",
    "Disconnected",
    "DiscoveryError",
    "DuplicateClientWarning",
    "Embed",
    "EmbedText",
    "Event",
    "GatewayClosed",
    "Guild",
    "GuildCreate",
    "GuildDelete",
    "GuildEvent",
    "GuildInit",
    "GuildJoin",
    "GuildUpdate",
    "HatsuError",
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
    "State",
    "Stats",
    "__version__",
]
