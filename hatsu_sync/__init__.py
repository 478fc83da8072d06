"""hatsu_sync: a synchronous client for the hatsu gateway event stream.

Pull events with :meth:`Client.get_event` (or iterate over the client), or register callbacks
with :meth:`Client.on`. The websocket, keepalive pings, reconnects and zlib decoding run in
background threads; the guide is docs/guide.rst.
"""

import logging

from ._client import DEFAULT_FATAL_CLOSE_CODES, DEFAULT_GATEWAY, PRODUCTION_1, Client
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
