"""hatsu_sync: a synchronous client for the hatsu gateway event stream.

Pull events with :meth:`Client.get_event` or register callbacks with :meth:`Client.on`; the
client runs the websocket, keepalive pings, reconnects and zlib decoding in background threads.
"""

import logging

from .exceptions import (
    ClientClosed,
    ConnectError,
    DecodeError,
    DiscoveryError,
    GatewayClosed,
    HatsuError,
)

logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"

DEFAULT_GATEWAY = "https://gateway.vincentrps.xyz"
PRODUCTION_1 = "wss://gateway-prod-1.vincentrps.xyz"

__all__ = [
    "DEFAULT_GATEWAY",
    "PRODUCTION_1",
    "ClientClosed",
    "ConnectError",
    "DecodeError",
    "DiscoveryError",
    "GatewayClosed",
    "HatsuError",
    "__version__",
]
