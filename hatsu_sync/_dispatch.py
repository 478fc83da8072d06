"""Where decoded events go: a bounded buffer for ``get_event()`` and one callback thread.

The socket thread only ever appends to these two queues, so user code (a slow consumer, a
handler that blocks for minutes) can never delay the reads that keep the connection alive.
Both queues are bounded: when one is full its oldest event is dropped and counted.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any, Callable, Union

from ._state import Deadline
from .models import Event

__all__ = ["LIFECYCLE", "CallbackThread", "EventBuffer", "Registry"]

log = logging.getLogger("hatsu_sync")

LIFECYCLE = frozenset({"connect", "disconnect", "error"})

Handler = Callable[[Any], Any]
Key = Union[str, "type[Event]"]


class BufferClosed(Exception):
    """Raised by :meth:`EventBuffer.get` once the buffer is closed and empty."""


class EventBuffer:
    """A bounded FIFO of events read by any number of threads; the oldest go when it is full.

    One thread puts (the transport thread), any number get. The deque's own atomic
    ``append``/``popleft`` carry the events; ``get`` takes the lock only to wait.

    ``put`` does not wake the waiting readers: :meth:`wake` does, and the transport calls it
    (through ``_Core.flush``) before each socket read that may block, so a burst of events read
    from one chunk of the socket wakes a reader once, not once per event. A woken reader
    competes for the GIL with the transport thread, and per event that costs more than the
    event itself (zlib's inflate and every socket read release the GIL).
    """

    def __init__(self, maxlen: int) -> None:
        self._maxlen = maxlen
        self._items: deque[Event] = deque()
        # Guards _waiting and _closed; waiters sleep on it until an event or the close arrives.
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._waiting = 0  # threads inside get() that found the buffer empty
        self._closed = False
        self.dropped = 0

    def put(self, event: Event) -> None:
        """Append an event (from the socket thread), pushing out the oldest if full."""
        items = self._items
        if len(items) >= self._maxlen:
            # Only this thread adds, so the length cannot grow meanwhile; if a reader takes
            # the oldest first, the next oldest goes instead: one event dropped either way.
            try:
                items.popleft()
                self.dropped += 1
            except IndexError:
                pass
        items.append(event)

    def wake(self) -> None:
        """Wake the threads waiting in :meth:`get` (``put`` does not: see the class notes)."""
        # A get() counts itself in _waiting before it looks at the deque (under the lock):
        # either it saw the events put so far, or it is counted here and gets woken.
        if self._waiting:
            with self._lock:
                self._ready.notify_all()

    def get(self, timeout: float | None) -> Event:
        """Return the next event.

        ``timeout=None`` blocks; ``> 0`` waits that long; ``<= 0`` only polls.

        Raises:
            TimeoutError: no event arrived in time.
            BufferClosed: the buffer is closed and every buffered event has been taken.
        """
        try:
            return self._items.popleft()
        except IndexError:
            pass
        with self._lock:
            self._waiting += 1
            try:
                deadline: Deadline | None = None
                while True:
                    try:
                        return self._items.popleft()
                    except IndexError:
                        pass
                    if self._closed:
                        raise BufferClosed
                    if timeout is not None and timeout <= 0:
                        raise TimeoutError("no event is waiting")
                    if deadline is None:
                        deadline = Deadline(timeout)
                    remaining = deadline.remaining()
                    if remaining == 0.0:
                        raise TimeoutError(f"no event arrived within {timeout} s")
                    self._ready.wait(remaining)
            finally:
                self._waiting -= 1

    def close(self) -> None:
        """Wake every waiter; buffered events are still handed out, then BufferClosed."""
        with self._lock:
            self._closed = True
            self._ready.notify_all()


class Registry:
    """Callbacks by key: an event name, a model class, ``"*"`` or a lifecycle name.

    Readers get an immutable snapshot, so the callback thread never takes a lock and
    ``on``/``off`` from inside a handler take effect from the next event on.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # serialises writers of _entries
        self._entries: tuple[tuple[Key, Handler], ...] = ()
        self.has_event_handlers = False

    def add(self, key: Key, handler: Handler) -> None:
        """Register ``handler`` for ``key``.

        Raises:
            TypeError: ``handler`` is not callable, or ``key`` is neither a non-empty str nor an
                :class:`Event` subclass.
        """
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        self.check_key(key)
        with self._lock:
            self._publish((*self._entries, (key, handler)))

    @staticmethod
    def check_key(key: object) -> None:
        """Raise TypeError unless ``key`` is a non-empty str or an :class:`Event` subclass."""
        if isinstance(key, str):
            if not key:
                raise TypeError("an event name must not be empty")
        elif not (isinstance(key, type) and issubclass(key, Event)):
            raise TypeError(
                "key must be an event name, '*', 'connect', 'disconnect', 'error' or an "
                f"Event subclass, not {key!r}"
            )

    def remove(self, key: Key, handler: Handler) -> bool:
        """Unregister one registration of ``handler`` for ``key``; True if there was one."""
        with self._lock:
            for index, (k, h) in enumerate(self._entries):
                if k == key and h == handler:
                    self._publish(self._entries[:index] + self._entries[index + 1 :])
                    return True
        return False

    def _publish(self, entries: tuple[tuple[Key, Handler], ...]) -> None:
        self._entries = entries
        self.has_event_handlers = any(k not in LIFECYCLE for k, _ in entries)

    def for_event(self, event: Event) -> list[Handler]:
        """The handlers matching ``event``, in registration order."""
        name = event.name
        return [
            h
            for k, h in self._entries
            if k == name or k == "*" or (isinstance(k, type) and isinstance(event, k))
        ]

    def for_lifecycle(self, kind: str) -> list[Handler]:
        """The handlers of a lifecycle name, in registration order."""
        return [h for k, h in self._entries if k == kind]


class _Lifecycle:
    """A lifecycle item in the callback queue (never dropped, unlike events)."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value: object) -> None:
        self.kind = kind
        self.value = value


class CallbackThread:
    """Runs every callback, in arrival order, on one thread that lives as long as its client.

    A handler that raises is logged with its traceback and reported to the ``"error"``
    handlers; it stops neither the other handlers nor later events.
    """

    def __init__(self, registry: Registry, maxlen: int) -> None:
        self._registry = registry
        self._maxlen = maxlen
        # Appended to by the transport thread (events without the lock: deque.append is
        # atomic), taken from by the callback thread under the lock.
        self._items: deque[Event | _Lifecycle] = deque()
        # Guards taking from _items, dropping from it, _stopping, _abandon and _idle.
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._idle = False  # the thread is about to wait, or waiting, for items
        self._stopping = False
        self._abandon = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="hatsu-sync-callbacks", daemon=True)

    def start(self) -> None:
        """Start the thread (once)."""
        self._thread.start()

    @property
    def started(self) -> bool:
        """True once :meth:`start` has been called."""
        return self._thread.ident is not None

    @property
    def maxlen(self) -> int:
        """How many events may wait for their handlers."""
        return self._maxlen

    def request_stop(self) -> None:
        """Ask the thread to end once the queue is empty, without waiting for it."""
        with self._ready:
            self._stopping = True
            self._ready.notify_all()

    def submit_event(self, event: Event) -> None:
        """Queue an event for its handlers (a no-op while no event handler is registered).

        Like :meth:`EventBuffer.put`, this does not wake the thread: :meth:`wake` does.
        """
        if not self._registry.has_event_handlers:
            return
        items = self._items
        if len(items) >= self._maxlen:
            with self._lock:
                self._drop_oldest_event()
        items.append(event)

    def wake(self) -> None:
        """Wake the thread for the events submitted since it last looked."""
        # The thread sets _idle (under the lock) before it looks at the deque: either it saw
        # the events submitted so far, or it is idle here and gets woken.
        if self._idle:
            with self._lock:
                self._ready.notify()

    def submit_lifecycle(self, kind: str, value: object) -> None:
        """Queue a lifecycle notice (``"connect"``, ``"disconnect"``, ``"error"``)."""
        with self._ready:
            self._items.append(_Lifecycle(kind, value))
            self._ready.notify()

    def _drop_oldest_event(self) -> None:
        # Lifecycle notices are few and must not be lost: drop the oldest event instead.
        for index, item in enumerate(self._items):
            if not isinstance(item, _Lifecycle):
                del self._items[index]
                self.dropped += 1
                return

    def stop(self, deadline: Deadline) -> bool:
        """Let the thread run what is queued until ``deadline``, then end it.

        Returns True if the thread has ended (always False when called from the thread itself,
        for instance by ``close()`` inside a callback: it ends once that callback returns).
        """
        self.request_stop()
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            return not self._thread.is_alive()
        self._thread.join(deadline.remaining())
        if self._thread.is_alive():
            with self._ready:
                self._abandon = True  # stop after the handler that is running now
                self._ready.notify_all()
            self._thread.join(0.05)
        return not self._thread.is_alive()

    @property
    def thread(self) -> threading.Thread:
        """The callback thread."""
        return self._thread

    def _run(self) -> None:
        items = self._items
        while True:
            with self._lock:
                self._idle = True
                while not items and not self._stopping:
                    self._ready.wait()
                self._idle = False
                if self._abandon or not items:
                    if items:
                        log.warning("close: %d queued callback items discarded", len(items))
                        items.clear()
                    return
                item = items.popleft()
            if isinstance(item, _Lifecycle):
                self._call_all(self._registry.for_lifecycle(item.kind), item.value, item.kind)
            else:
                self._call_all(self._registry.for_event(item), item, item.name)

    def _call_all(self, handlers: list[Handler], value: object, what: str) -> None:
        for handler in handlers:
            try:
                handler(value)
            except (Exception, SystemExit) as exc:
                name = getattr(handler, "__qualname__", repr(handler))
                if what == "error":
                    log.exception("an 'error' handler %s raised", name)
                    continue
                log.exception("handler %s for %s raised", name, what)
                for on_error in self._registry.for_lifecycle("error"):
                    try:
                        on_error(exc)
                    except (Exception, SystemExit):
                        log.exception(
                            "an 'error' handler %s raised",
                            getattr(on_error, "__qualname__", repr(on_error)),
                        )
