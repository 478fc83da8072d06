"""Small value types shared by the client's stages: its state, its stats and lifecycle info."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

__all__ = ["Connected", "Deadline", "Disconnected", "State", "Stats"]


class State(enum.Enum):
    """Where a :class:`~hatsu_sync.Client` is in its life."""

    IDLE = "idle"
    """Created, not connected yet (or the last ``connect()`` failed)."""
    CONNECTING = "connecting"
    """``connect()`` is running: discovery, handshake, identify."""
    CONNECTED = "connected"
    """Identified on a live connection."""
    RECONNECTING = "reconnecting"
    """The connection was lost; backing off or trying again."""
    CLOSED = "closed"
    """Closed for good, by its user or by the gateway; it cannot be reopened."""


@dataclass(frozen=True)
class Stats:
    """A snapshot of a client's counters, read by attribute."""

    events_received: int = 0
    """Every event decoded (HELLO and READY included, dropped ones too)."""
    events_dropped: int = 0
    """Events pushed out of the full ``get_event()`` buffer (the oldest go first)."""
    callbacks_dropped: int = 0
    """Events pushed out of the full queue of a callback thread that could not keep up."""
    decode_errors: int = 0
    """Messages that could not be decoded (bad JSON, no ``t``, corrupt zlib, too big)."""
    reconnects: int = 0
    """Successful reconnections."""


@dataclass(frozen=True)
class Connected:
    """Given to ``"connect"`` callbacks once the identify is sent on a new connection."""

    url: str
    """The websocket URL connected to (never the session id)."""


@dataclass(frozen=True)
class Disconnected:
    """Given to ``"disconnect"`` callbacks when a connection ends, for any reason."""

    code: int | None
    """The close code the gateway sent; None when no close frame came."""
    reason: str
    """The close reason, or how the connection was lost."""
    reconnecting: bool
    """True when the client is going to reconnect."""


class Deadline:
    """One timeout spread over several steps (None: no limit)."""

    __slots__ = ("_end",)

    def __init__(self, timeout: float | None) -> None:
        self._end = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left (never negative), or None when there is no limit."""
        if self._end is None:
            return None
        return max(0.0, self._end - time.monotonic())
