"""Where decoded events go: a bounded buffer for ``get_event()`` and one callback thread.

The socket thread only ever appends to these two queues, so user code (a slow consumer, a
handler that blocks for minutes) can never delay the reads that keep the connection alive.
Both queues are bounded by a count and by a memory budget: when one is over either, its oldest
events are dropped and counted.

No lock here is ever taken by a thread calling the client's public methods, and no wait relies
on one (see :class:`~hatsu_sync._state.Wakeup`): a signal handler may call any of them while
the main thread is inside another.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from ._decode import revive
from ._redact import redact_known
from ._registry import LIFECYCLE, Handler, Handlers, Registry, check_key
from ._state import Deadline, Wakeup
from .models import Event

__all__ = [
    "LIFECYCLE",
    "BufferClosed",
    "CallbackThread",
    "EventBuffer",
    "NotStarted",
    "Registry",
    "check_key",
    "report_to_excepthook",
]

log = logging.getLogger("hatsu_sync")


class BufferClosed(Exception):
    """Raised by :meth:`EventBuffer.get` once the buffer is closed and empty."""


class NotStarted(Exception):
    """Raised by :meth:`EventBuffer.get` when nothing was ever connected to fill it."""


# Both queues keep their memory budget the same way, without locking against their readers.
# Readers only pop from the left, so the queued items are always the last ``len(items)`` that
# the one producer thread appended: the producer keeps their sizes, in the same order, in
# ``_sizes`` (and their sum in ``_total``), and forgets the oldest sizes once their items are
# gone. Between those clean-ups ``_total`` overestimates (it still counts what readers took),
# which only ever makes room early. The clean-up runs only when a bound may be reached, so the
# per-event cost is one comparison and two appends.


class EventBuffer:
    """A bounded FIFO of events read by any number of threads; the oldest go when it is full.

    One thread puts (the transport thread), any number get. The deque's own atomic
    ``append``/``popleft`` carry the events, and nobody takes a lock.

    ``put_many`` does not wake the waiting readers: :meth:`wake` does, and the transport calls it
    (through ``_Core.flush``) before each socket read that may block, so a burst of events read
    from one chunk of the socket wakes a reader once, not once per event. A woken reader
    competes for the GIL with the transport thread, and per event that costs more than the
    event itself (zlib's inflate and every socket read release the GIL).
    """

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self._items: deque[Event | bytes | str] = deque()
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._sizes: deque[int] = deque()  # see the notes above the class
        self._total = 0
        self._wakeup = Wakeup()
        self._closed = False
        self.started = False  # set once a connection may fill the buffer
        self.dropped = 0

    def _put(self, item: Event | bytes | str, size: int) -> None:
        # One item of put_many's, when its batch may not fit: push out the oldest as needed.
        # (The steady state of a full buffer nobody reads is put_many's own, faster path.)
        if self._total + size > self._max_bytes or len(self._sizes) >= self._max_items:
            self._make_room(size)
        self._items.append(item)
        self._sizes.append(size)
        self._total += size

    def put_many(self, batch: list[Event | bytes | str], batch_sizes: list[int]) -> None:
        """Append what the socket thread decoded from one read, in order, with one ``extend``
        while the budget holds; over it, the oldest items go (a batch as big as the budget
        or bigger keeps its newest items, at least one), counted in :attr:`dropped`.

        An item is an event, or the message text of an event that went to the callbacks:
        :meth:`get` then hands out an equal event of its own, decoded again from the text, so
        that an unread backlog costs its texts alone, and a handler's changes to its event
        never show in get_event()'s.
        """
        sizes = self._sizes
        items = self._items
        added = sum(batch_sizes)
        over = len(sizes) + len(batch) - self._max_items
        if over > 0 and len(sizes) == len(items) and over <= len(items):
            # Full by count with nobody reading (the steady state of a callback-only client):
            # drop the oldest at once, then see below whether the bytes fit.
            popleft, forget = items.popleft, sizes.popleft
            total = self._total
            dropped = 0
            try:
                for _ in range(over):
                    popleft()
                    dropped += 1
                    total -= forget()
            except IndexError:  # readers took the rest meanwhile
                pass
            self.dropped += dropped
            self._total = total
            over = 0
        if over > 0 or self._total + added > self._max_bytes:
            for item, size in zip(batch, batch_sizes):
                self._put(item, size)
            return
        items.extend(batch)
        sizes.extend(batch_sizes)
        self._total += added

    def _make_room(self, size: int) -> None:
        items = self._items
        sizes = self._sizes
        total = self._total
        taken = len(sizes) - len(items)  # by readers, since the last clean-up
        while taken > 0:
            total -= sizes.popleft()
            taken -= 1
        dropped = 0
        while len(items) >= self._max_items or (items and total + size > self._max_bytes):
            try:
                items.popleft()
            except IndexError:  # readers took the rest meanwhile
                break
            dropped += 1
            total -= sizes.popleft()
        self.dropped += dropped
        self._total = total

    def wake(self) -> None:
        """Wake the threads waiting in :meth:`get` (``put_many`` does not: see the class notes)."""
        if self._wakeup:
            self._wakeup.wake_all()

    def get(self, timeout: float | None) -> Event:
        """Return the next event.

        ``timeout=None`` blocks; ``> 0`` waits that long; ``<= 0`` only polls.

        Raises:
            TimeoutError: no event arrived in time.
            BufferClosed: the buffer is closed and every buffered event has been taken.
            NotStarted: the buffer is empty and nothing was ever connected to fill it.
        """
        items = self._items
        try:
            item = items.popleft()
        except IndexError:
            pass
        else:
            return item if isinstance(item, Event) else revive(item)
        if not self.started and not self._closed:
            raise NotStarted
        if timeout is not None and timeout <= 0:
            if self._closed:
                return self._last(items)
            raise TimeoutError("no event is waiting")
        deadline = Deadline(timeout)
        wakeup = self._wakeup
        while True:
            # Listed before looking: a put or close from now on wakes this thread.
            token = wakeup.enlist()
            try:
                item = items.popleft()
            except IndexError:
                pass
            else:
                wakeup.cancel(token)
                return item if isinstance(item, Event) else revive(item)
            if self._closed:
                wakeup.cancel(token)
                return self._last(items)
            remaining = deadline.remaining()
            if remaining == 0.0:
                wakeup.cancel(token)
                raise TimeoutError(f"no event arrived within {timeout} s")
            wakeup.wait(token, remaining)

    @staticmethod
    def _last(items: deque[Event | bytes | str]) -> Event:
        # Closed: the transport has stopped adding, but may have added one since the last look.
        try:
            item = items.popleft()
        except IndexError:
            raise BufferClosed from None
        return item if isinstance(item, Event) else revive(item)

    def close(self) -> None:
        """Wake every waiter; buffered events are still handed out, then BufferClosed."""
        self._closed = True
        self._wakeup.wake_all()

    def discard(self) -> None:
        """Close and drop whatever is buffered (the events of a parent process, after fork)."""
        self._closed = True
        self._items.clear()


class _Lifecycle:
    """A lifecycle item in the callback queue (never dropped, unlike events)."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value: object) -> None:
        self.kind = kind
        self.value = value


class CallbackThread:
    """Runs every callback, in arrival order, on one thread that lives as long as its client.

    A handler that raises is reported to the ``"error"`` handlers, or, when there is none, to
    :func:`threading.excepthook` (with its traceback, as an exception escaping a thread is);
    it stops neither the other handlers nor later events.
    """

    def __init__(self, registry: Registry, max_items: int, max_bytes: int) -> None:
        self._registry = registry
        # Appended to by the transport thread only (events without the lock: deque.append is
        # atomic), taken from by the callback thread under the lock.
        self._items: deque[Event | _Lifecycle] = deque()
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._sizes: deque[int] = deque()  # as in EventBuffer
        self._total = 0
        # Guards taking from _items against dropping from its middle. Only the transport and
        # callback threads ever take it: never a thread inside a public method of the client.
        self._lock = threading.Lock()
        self._wakeup = Wakeup()
        self._stopping = False
        self._abandon = False
        self.dropped = 0
        # Made in start(): a thread object that never ran would keep this object in a cycle
        # (its target is a bound method of this object).
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (again, after a :meth:`stop` that ended it)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping = self._abandon = False
        self._thread = threading.Thread(target=self._run, name="hatsu-sync-callbacks", daemon=True)
        self._thread.start()

    @property
    def started(self) -> bool:
        """True once :meth:`start` has been called."""
        return self._thread is not None

    @property
    def thread(self) -> threading.Thread | None:
        """The callback thread, once started."""
        return self._thread

    def request_stop(self) -> None:
        """Ask the thread to end once the queue is empty, without waiting for it (never
        blocks: safe from a signal handler)."""
        self._stopping = True
        self._wakeup.wake_all()

    def _submit(self, event: Event, size: int) -> None:
        # One event of submit_many's, when its batch may not fit: drop the oldest as needed.
        sizes = self._sizes
        if self._total + size > self._max_bytes or len(sizes) >= self._max_items:
            with self._lock:
                self._make_room(size)
        self._items.append(event)
        sizes.append(size)
        self._total += size

    def submit_many(self, events: list[Event], event_sizes: list[int]) -> None:
        """Queue the events of one read that some handler takes (the caller has looked: see
        ``Core.deliver``), in order, with one ``extend`` while the budget holds; over it,
        the oldest events go, never a lifecycle notice.

        Like :meth:`EventBuffer.put_many`, this does not wake the thread: :meth:`wake` does.
        """
        sizes = self._sizes
        added = sum(event_sizes)
        if self._total + added > self._max_bytes or len(sizes) + len(events) > self._max_items:
            for event, size in zip(events, event_sizes):
                self._submit(event, size)
            return
        self._items.extend(events)
        sizes.extend(event_sizes)
        self._total += added

    def submit_lifecycle(self, kind: str, value: object) -> None:
        """Queue a lifecycle notice (``"connect"``, ``"disconnect"``, ``"error"``) and wake."""
        with self._lock:  # the sizes must stay in step with the items: no drop meanwhile
            self._items.append(_Lifecycle(kind, value))
            self._sizes.append(0)
        self._wakeup.wake_all()

    def wake(self) -> None:
        """Wake the thread for the events submitted since it last looked."""
        if self._wakeup:
            self._wakeup.wake_all()

    def _make_room(self, size: int) -> None:
        # Under the lock: the callback thread cannot take from the queue meanwhile, so the
        # sizes line up with the items exactly once the taken ones are forgotten.
        items = self._items
        sizes = self._sizes
        total = self._total
        for _ in range(len(sizes) - len(items)):
            total -= sizes.popleft()
        while len(items) >= self._max_items or (items and total + size > self._max_bytes):
            # Lifecycle notices are few and must not be lost: drop the oldest event instead.
            for index, item in enumerate(items):
                if not isinstance(item, _Lifecycle):
                    del items[index]
                    total -= sizes[index]
                    del sizes[index]
                    self.dropped += 1
                    break
            else:
                break
        self._total = total

    def stop(self, deadline: Deadline) -> bool:
        """Let the thread run what is queued until ``deadline``, then end it.

        Returns True if the thread has ended (always False when called from the thread itself,
        for instance by ``close()`` inside a callback: it ends once that callback returns).
        """
        self.request_stop()
        thread = self._thread
        if thread is None:
            return True
        if threading.current_thread() is thread or not thread.is_alive():
            return not thread.is_alive()
        thread.join(deadline.remaining())
        if thread.is_alive():
            self._abandon = True  # stop after the handler that is running now
            self._wakeup.wake_all()
            thread.join(0.05)
        return not thread.is_alive()

    def discard(self) -> None:
        """Forget the queue without running it (the callbacks of a parent process, after fork)."""
        self._stopping = self._abandon = True
        self._items.clear()

    def _run(self) -> None:
        items = self._items
        lock = self._lock
        wakeup = self._wakeup
        registry = self._registry
        while True:
            if not items:
                token = wakeup.enlist()  # before looking again: a wake from now on counts
                if items or self._stopping:
                    wakeup.cancel(token)
                else:
                    wakeup.wait(token, None)
                    continue
            # A batch per lock: the transport thread only takes the lock to drop events.
            with lock:
                batch = [items.popleft() for _ in range(min(len(items), 64))]
            if not batch and self._stopping:
                return
            for item in batch:
                if self._abandon:
                    break
                if isinstance(item, _Lifecycle):
                    self._call_all(registry.for_lifecycle(item.kind), item.value, item.kind)
                    continue
                # The registry's cache, read inline: this runs for every event.
                by_name = registry._cache.get(type(item))
                handlers = by_name.get(item._name) if by_name is not None else None
                if handlers is None:
                    handlers = registry.for_event(item)
                for handler in handlers:
                    try:
                        handler(item)
                    except (Exception, SystemExit) as exc:
                        self._handler_failed(handler, exc, item.name)
            if self._abandon:
                break
        if items:
            log.warning("close: %d queued callback items discarded", len(items))
            items.clear()

    def _call_all(self, handlers: Handlers, value: object, what: str) -> None:
        for handler in handlers:
            try:
                handler(value)
            except (Exception, SystemExit) as exc:
                self._handler_failed(handler, exc, what)

    def _handler_failed(self, handler: Handler, exc: BaseException, what: str) -> None:
        name = getattr(handler, "__qualname__", type(handler).__name__)
        # The event name may echo the session id; the message is left out (it may quote data).
        shown = redact_known(what)
        error_handlers = self._registry.for_lifecycle("error") if what != "error" else ()
        if not error_handlers:
            # Reported once, on stderr by default, by the hook that reports an exception
            # escaping a thread; the log keeps a quiet record.
            log.debug("handler %s for %s raised %s", name, shown, type(exc).__name__)
            report_to_excepthook(exc)
            return
        log.info(
            "handler %s for %s raised %s: given to the 'error' handlers",
            name,
            shown,
            type(exc).__name__,
        )
        for on_error in error_handlers:
            try:
                on_error(exc)
            except (Exception, SystemExit) as again:
                log.debug("the 'error' handler %s raised", getattr(on_error, "__qualname__", ""))
                report_to_excepthook(again)


def report_to_excepthook(exc: BaseException) -> None:
    """Report ``exc`` as :mod:`threading` reports an exception that escapes a thread."""
    args: Any = threading.ExceptHookArgs(
        [type(exc), exc, exc.__traceback__, threading.current_thread()]
    )
    try:
        threading.excepthook(args)
    except Exception:  # a hook that fails must not end the callback thread
        log.exception("threading.excepthook failed")
    finally:
        del args  # it holds the traceback, which holds this frame
