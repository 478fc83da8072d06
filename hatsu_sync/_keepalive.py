"""One timer thread for the whole process: keepalive pings, pong deadlines and write deadlines.

Every connection of every client in the process schedules its timed work here instead of
owning a thread: the next ping, the check that something arrived since the last one, and the
deadline of a write in progress (a write still blocked at its deadline has its socket shut
down, which makes the blocked call fail). The thread (``hatsu-sync-timer``) starts with the
first registration and ends as soon as nothing is registered or scheduled, so a process with no
open connection has no such thread.

Callbacks run on the timer thread and must not block: they set flags, shut sockets down, and
write small control frames only when the socket can take them at once.

After ``os.fork()`` the child starts from a fresh, empty timer (``os.register_at_fork``): the
parent's entries, which refer to the parent's sockets, are forgotten, so the child never pings
or shuts down the parent's connections, and clients created in the child get their own thread.
:func:`generation` changes in the child, so that an inherited connection can tell it is one.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from typing import Callable

__all__ = ["Handle", "Timer", "generation", "timer"]

log = logging.getLogger("hatsu_sync")


class Handle:
    """A scheduled callback. Cancelling sets ``callback`` to None (the heap drops the entry
    when it comes up), so a cancelled entry keeps no reference to its connection."""

    __slots__ = ("callback", "seq", "when")

    def __init__(self, when: float, seq: int, callback: Callable[[], None]) -> None:
        self.when = when
        self.seq = seq
        self.callback: Callable[[], None] | None = callback

    def __lt__(self, other: Handle) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)


class Timer:
    """A heap of deadlines served by one lazily started daemon thread."""

    def __init__(self) -> None:
        # Guards everything below. Re-entrant: a signal handler that closes a client may run
        # on a thread that is inside call_at() or cancel() at that moment.
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._heap: list[Handle] = []
        self._live = 0  # entries not cancelled
        self._registered = 0  # connections that keep the thread up between entries
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    # -- registration -----------------------------------------------------------------------------

    def register(self) -> None:
        """Keep the thread running (even with nothing scheduled) until :meth:`unregister`."""
        with self._lock:
            self._registered += 1
            self._ensure_thread()

    def unregister(self) -> None:
        """Undo one :meth:`register`; the thread ends once nothing is registered or scheduled."""
        with self._lock:
            self._registered = max(0, self._registered - 1)
            self._changed.notify()

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        """Run ``callback`` on the timer thread at ``when`` (``time.monotonic()`` clock).

        Returns a handle for :meth:`cancel`.
        """
        entry = Handle(when, next(self._seq), callback)
        with self._lock:
            heapq.heappush(self._heap, entry)
            self._live += 1
            self._ensure_thread()
            if self._heap[0] is entry:  # earlier than what the thread sleeps towards
                self._changed.notify()
        return entry

    def cancel(self, handle: Handle | None) -> None:
        """Forget a scheduled callback (nothing happens if it already ran or was cancelled)."""
        if handle is None:
            return
        with self._lock:
            if handle.callback is not None:
                handle.callback = None
                self._live -= 1
                if not self._live and not self._registered:
                    self._changed.notify()  # idle: let the thread end now

    def settle(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the thread to end if nothing keeps it (after a failure:
        callers that promise "no thread left" then keep their word)."""
        with self._lock:
            thread = self._thread
            if thread is None or self._live or self._registered:
                return
            self._changed.notify()
        if thread is not threading.current_thread():
            thread.join(timeout)

    # -- the thread -------------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        # Called with the lock held.
        if self._thread is None:
            thread = threading.Thread(target=self._serve, name="hatsu-sync-timer", daemon=True)
            thread.start()
            self._thread = thread

    def _serve(self) -> None:
        heap = self._heap
        while True:
            with self._lock:
                while True:
                    while heap and heap[0].callback is None:
                        heapq.heappop(heap)
                    if not heap and not self._registered:
                        self._thread = None
                        return
                    now = time.monotonic()
                    if heap and heap[0].when <= now:
                        entry = heapq.heappop(heap)
                        callback = entry.callback
                        entry.callback = None
                        self._live -= 1
                        assert callback is not None  # cancelled entries were dropped above
                        break
                    wait = heap[0].when - now if heap else None
                    self._changed.wait(wait)
            try:
                callback()
            except Exception:  # a bug in a callback must not stop every client's keepalive
                log.exception("a timer callback failed")


_generation = 0
timer = Timer()
"""The process's timer."""


def generation() -> int:
    """A number that changes in a child process after ``os.fork()``."""
    return _generation


def _after_fork_in_child() -> None:
    # The parent's thread does not exist here and its lock may have been held at the fork:
    # start from nothing. Connections inherited from the parent see a new generation.
    global timer, _generation
    _generation += 1
    timer = Timer()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent on Windows only
    os.register_at_fork(after_in_child=_after_fork_in_child)
