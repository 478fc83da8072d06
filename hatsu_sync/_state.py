"""Small types shared by the client's stages: its state, stats, lifecycle info and waits."""

from __future__ import annotations

import contextlib
import enum
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = ["Connected", "Deadline", "Disconnected", "Latch", "State", "Stats", "Wakeup"]


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


# -- waiting without a lock that a signal handler could find held ------------------------------
#
# Python runs signal handlers on the main thread, between two bytecodes of whatever it was
# doing. A handler that takes a threading.Lock (or a Condition's) which the interrupted frame
# holds waits for itself for ever; threading.Event.set() is such a call, since Event.wait()
# holds its Condition's lock between checking the flag and sleeping. So the client's waits are
# built differently: a sleeper takes a fresh lock of its own, locks it, lists it, and blocks on
# locking it again; a waker takes the sleepers off the list (atomically: one waker per sleeper)
# and releases them. Releasing never blocks, the list is a deque whose append/popleft/remove are
# atomic, and a sleeper lists itself *before* it looks at the condition it waits for, so a wake
# that comes between the look and the sleep (from another thread or from a signal handler on
# the sleeper's own thread) releases a lock that is already listed: nothing is lost.

_allocate_lock = threading.Lock
# Lock.acquire refuses timeouts over TIMEOUT_MAX; longer waits are for ever in practice.
_LONGEST = threading.TIMEOUT_MAX
# The main thread never sleeps longer than this at a time. A signal (Ctrl-C) interrupts a
# sleeping lock, but one that lands just before the sleep begins (after the interpreter's last
# look for signals: Python 3.13's locks spin a while first) finds nothing to interrupt, and its
# handler would wait until the lock is released. Waking now and then bounds that delay.
MAIN_THREAD_SLICE = 0.25


class Wakeup:
    """Threads wait in :meth:`wait` until :meth:`wake_all` (safe from a signal handler)."""

    __slots__ = ("_sleepers",)

    def __init__(self) -> None:
        self._sleepers: deque[Any] = deque()

    def enlist(self) -> Any:
        """A token to :meth:`wait` on; take it *before* checking what is waited for."""
        token = _allocate_lock()
        token.acquire()
        self._sleepers.append(token)
        return token

    def wait(self, token: Any, timeout: float | None) -> None:
        """Block until woken or ``timeout`` (None: no limit), then forget ``token``.

        On the main thread it may return sooner, after :data:`MAIN_THREAD_SLICE` seconds
        (so that a signal's handler runs): callers look at what they wait for and wait again.
        """
        limit = _LONGEST
        if threading.current_thread() is threading.main_thread():
            limit = MAIN_THREAD_SLICE
        try:
            token.acquire(True, limit if timeout is None else min(timeout, limit))
        finally:
            self.cancel(token)

    def cancel(self, token: Any) -> None:
        """Forget ``token`` without sleeping (the awaited condition already holds)."""
        with contextlib.suppress(ValueError):  # a waker took it off the list first
            self._sleepers.remove(token)

    def wake_all(self) -> None:
        """Wake every thread enlisted so far; never blocks."""
        sleepers = self._sleepers
        while sleepers:
            try:
                token = sleepers.popleft()
            except IndexError:  # another waker emptied it meanwhile
                return
            token.release()

    def __bool__(self) -> bool:
        """True while some thread is enlisted."""
        return bool(self._sleepers)


class Latch:
    """A flag that is set once and waited for: :class:`threading.Event` without its lock."""

    __slots__ = ("_set", "_wakeup")

    def __init__(self) -> None:
        self._set = False
        self._wakeup = Wakeup()

    def is_set(self) -> bool:
        """True once :meth:`set` has been called."""
        return self._set

    def set(self) -> None:
        """Set the flag and wake every waiter; never blocks (safe from a signal handler)."""
        self._set = True
        self._wakeup.wake_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set or ``timeout`` passes; return the flag."""
        deadline = Deadline(timeout)
        while not self._set:
            remaining = deadline.remaining()
            if remaining == 0.0:
                return False
            token = self._wakeup.enlist()
            if self.is_set():  # set between the loop's test and the enlisting
                self._wakeup.cancel(token)
                break
            self._wakeup.wait(token, remaining)
        return True
