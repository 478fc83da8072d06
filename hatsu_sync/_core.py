"""The state a client's threads share, the transport's listener, and how a client closes.

Signal safety: Python runs a signal handler on the main thread between two bytecodes of
whatever it was doing, and the handler may call any method of the client (``close()`` from a
SIGTERM handler, typically). So no lock is taken here or in dispatch on the way of a public
method: the state moves by plain assignments ordered so that every interleaving ends right
(``closing`` is set first and never unset), and waiters sleep on :class:`~._state.Latch` /
:class:`~._state.Wakeup`. The only locks a public call holds are inside websocket-client's send
and the transport's connect; :meth:`_Core.enter_main` records when the main thread is inside
such a call, and a ``close()`` that interrupts it only flags the client closed and leaves the
rest (the close frame, joining the threads) to the interrupted call as it returns.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import deque

from ._dispatch import CallbackThread, EventBuffer, Registry
from ._process import track
from ._redact import redact_known, redact_url
from ._state import Connected, Deadline, Disconnected, Latch, State
from ._transport import Supervisor
from .exceptions import ClientClosed, DecodeError, HatsuError, chain
from .models import Event

__all__ = ["Core", "on_main_thread"]

log = logging.getLogger("hatsu_sync")


def on_main_thread() -> bool:
    """True on the thread where Python runs signal handlers."""
    return threading.get_ident() == threading.main_thread().ident


class Core:
    """What the client's threads share; the transport's listener.

    It holds no reference to the :class:`~hatsu_sync.Client` (and nothing here refers back to
    it), so a client its user forgot is freed by reference counting, which closes it.
    """

    def __init__(self, max_queue: int, max_buffer_bytes: int) -> None:
        self.state = State.IDLE
        self.closing = False  # set first by every way of closing, and never unset
        self.forked = False  # this is a copy inherited by a child process
        self.error: HatsuError | None = None  # why the client closed
        self.closed = Latch()
        self.buffer = EventBuffer(max_queue, max_buffer_bytes)
        self.registry = Registry()
        self.callbacks = CallbackThread(self.registry, max_queue, max_buffer_bytes)
        self.supervisor: Supervisor | None = None
        self.transport_thread: threading.Thread | None = None  # of a finished supervisor
        self.url: str | None = None
        # The lock-holding public call ("connect", "send", "close") the main thread is in.
        self.main_call: str | None = None
        # A close() deferred to main_call's end: (its timeout,), or None when there is none.
        self.close_pending: tuple[float | None] | None = None
        self.deferred_sends: deque[str] = deque()
        # What deliver() took since the last flush(): get_event()'s items and their sizes, and
        # the events for the callbacks. The transport thread's alone.
        self._batch: list[Event | bytes | str] = []
        self._batch_sizes: list[int] = []
        self._for_callbacks: list[Event] = []
        # Written by the transport thread only; read as snapshots.
        self.events_received = 0
        self.decode_errors = 0
        self.connections = 0
        track(self)

    # -- the transport's Listener ---------------------------------------------------------------

    def deliver(self, event: Event) -> None:
        """Take an event for get_event() and the callbacks; :meth:`flush` queues what one read
        of the socket delivered, at once, and wakes their readers.

        An event that some handler matches goes to the callbacks, and get_event() gets an
        equal event of its own, built from the same message text when it is taken (see
        :meth:`EventBuffer.put_many`): the buffer keeps only that text meanwhile, so a
        program that only uses callbacks keeps ``max_queue`` texts, not events full of what
        its handlers read, and a handler's changes to an event never show in get_event()'s.
        """
        registry = self.registry
        if registry.has_event_handlers:
            # The registry's cache, read inline as the callback thread does: once per event.
            by_name = registry._cache.get(type(event))
            handlers = by_name.get(event._name) if by_name is not None else None
            if handlers is None:
                handlers = registry.for_event(event)
            if handlers:
                text = event._text
                self._batch.append(event if text is None else text)
                self._batch_sizes.append(event._nbytes)
                self._for_callbacks.append(event)
                return
        self._batch.append(event)
        self._batch_sizes.append(event._nbytes)

    def flush(self) -> None:
        """Queue what :meth:`deliver` took, and wake whoever waits for it (called before each
        read that may block, and before anything else reaches the callback queue)."""
        self._hand_over()
        self.buffer.wake()
        self.callbacks.wake()

    def _hand_over(self) -> None:
        batch = self._batch
        if not batch:
            return
        sizes = self._batch_sizes
        self._batch, self._batch_sizes = [], []
        # get_event()'s first: a callback never runs before its event can be taken there.
        self.buffer.put_many(batch, sizes)
        events = self._for_callbacks
        if events:
            self._for_callbacks = []
            self.callbacks.submit_many(events, [event._nbytes for event in events])
        # Counted last: once the count shows an event, both queues have it (and its drops).
        self.events_received += len(batch)

    def decode_failed(self, error: DecodeError) -> None:
        self._hand_over()  # the events before it first, for the callbacks too
        self.decode_errors += 1
        log.warning("a gateway message was discarded: %s", redact_known(str(error)))
        self.callbacks.submit_lifecycle("error", error)

    def connected(self, url: str) -> None:
        self.connections += 1
        shown = redact_url(url)
        self.url = shown
        self.callbacks.submit_lifecycle("connect", Connected(shown))

    def disconnected(self, info: Disconnected) -> None:
        self.callbacks.submit_lifecycle("disconnect", info)

    def state_changed(self, state: State) -> None:
        self.state = state
        if self.closing:  # a close() that came meanwhile has the last word
            self.state = State.CLOSED

    def finished(self, error: HatsuError | None) -> None:
        if error is not None:
            _drop_tracebacks(error)
        self.mark_closed(error)
        self._forget_supervisor()
        self.callbacks.request_stop()  # runs what is queued (the last "disconnect"), then ends

    # -- the main thread inside a lock-holding call ---------------------------------------------

    def enter_main(self, call: str) -> str | None:
        """Record that the main thread enters ``call``; returns what to pass to
        :meth:`leave_main` (the call it was in before, or ``call`` itself off the main thread)."""
        if not on_main_thread():
            return call
        previous = self.main_call
        self.main_call = call
        return previous

    def leave_main(self, previous: str | None, call: str) -> None:
        """Undo :meth:`enter_main`; the outermost call finishes what a signal handler deferred."""
        if previous == call:  # not the main thread, or re-entered: nothing recorded
            return
        if previous is not None:
            self.main_call = previous
            return
        while True:
            # Still marked as inside a call while finishing the handlers' work, which takes
            # locks: a handler that lands meanwhile defers its own work to this loop instead
            # of running a close inside this one (it would wait for locks held below it).
            self.main_call = "close"
            try:
                while self.deferred_sends:
                    self.send_deferred(self.deferred_sends.popleft())
                pending = self.close_pending
                if pending is not None:
                    self.close_pending = None
                    self.shutdown(Deadline(pending[0]))
            finally:
                self.main_call = None
            # A handler that landed between the last look and here deferred to this loop.
            if not self.deferred_sends and self.close_pending is None:
                return

    def send_deferred(self, text: str) -> None:
        """Send what a signal handler's ``send()`` left for the interrupted call: before the
        close that the same handler may have asked for, which runs right after."""
        supervisor = self.supervisor
        connection = supervisor.current() if supervisor is not None else None
        if connection is None:
            log.warning("a send() from a signal handler was dropped: the client is not connected")
            return
        try:
            connection.send_text(text)
        except HatsuError as exc:
            log.warning("a send() from a signal handler failed: %s", exc)

    # -- closing --------------------------------------------------------------------------------

    def mark_closed(self, error: HatsuError | None) -> None:
        """Move to CLOSED, remember why (the first reason wins) and wake every waiter."""
        self.closing = True
        if self.error is None:
            self.error = error or ClientClosed("the client was closed")
        self.state = State.CLOSED
        self.buffer.close()
        self.closed.set()

    def request_close(self, timeout: float | None) -> None:
        """``close()`` from a signal handler that interrupted a lock-holding call of the main
        thread: flag the client closed and wake everyone, without waiting for anything; the
        interrupted call finishes the close when it returns (see :meth:`leave_main`)."""
        self.mark_closed(None)
        self.callbacks.request_stop()
        supervisor = self.supervisor
        if self.main_call == "connect" and supervisor is not None:
            # The attempt runs on the transport thread: cancel it now rather than wait for it
            # (none of the locks this takes is held by the interrupted connect()).
            supervisor.stop(Deadline(0.0))
        if self.close_pending is None:
            self.close_pending = (timeout,)

    def shutdown(self, deadline: Deadline) -> None:
        """Close for good: stop the transport, then the callbacks, within ``deadline``."""
        self.mark_closed(None)
        supervisor = self.supervisor
        if supervisor is not None:
            if supervisor.stop(deadline):
                self._forget_supervisor()
            else:
                log.warning("close: the transport thread is still running at the deadline")
        ending = self.transport_thread
        if ending is not None and ending.is_alive() and ending is not threading.current_thread():
            ending.join(deadline.remaining())  # it is returning from finished()
        callbacks = self.callbacks
        in_callback = threading.current_thread() is callbacks.thread
        if not callbacks.stop(deadline) and not in_callback:
            log.warning("close: a callback is still running at the deadline")

    def _forget_supervisor(self) -> None:
        # The supervisor refers to this core (its listener): kept, the pair would be a cycle
        # that only the cyclic garbage collector frees. Its thread is kept to be joined.
        supervisor = self.supervisor
        if supervisor is not None:
            self.transport_thread = supervisor.thread
            self.supervisor = None

    def disown(self, parent: int) -> None:
        """In a forked child: close this inherited copy by flags alone.

        The parent's connection, threads and locks are left untouched: the child never reads,
        writes, shuts down or sends a close frame on the parent's socket, and takes no lock a
        parent thread may have held when it forked.
        """
        self.forked = True
        self.closing = True
        self.error = ClientClosed(
            f"this client belongs to the parent process (pid {parent}) and cannot be used in "
            "a child process: create a new Client in the child"
        )
        self.state = State.CLOSED
        self.main_call = None
        self.close_pending = None
        self.deferred_sends.clear()
        self._batch, self._batch_sizes, self._for_callbacks = [], [], []
        self.buffer.discard()  # the parent's events, handled there
        self.callbacks.discard()
        self.closed = Latch()  # the old one may list parent threads' waits
        self.closed.set()

    def closed_error(self) -> HatsuError:
        """A new copy of why the client closed, to raise.

        A copy: the raise gives it a traceback that holds the caller's frame (and the client),
        which the core must not keep. The cause is kept, without a traceback of its own.
        """
        error = self.error or ClientClosed("the client was closed")
        try:
            fresh = copy.copy(error)
        except Exception:  # an error type that cannot be rebuilt from its args
            fresh = ClientClosed(str(error))
        fresh.__cause__ = error.__cause__
        fresh.__suppress_context__ = True
        return fresh


def _drop_tracebacks(error: BaseException) -> None:
    """Forget the tracebacks along ``error``'s chain.

    They were raised on the transport thread, and their frames hold the supervisor and this
    core: kept here they would make cycles. The messages and the chain stay.
    """
    for exc in chain(error):
        exc.__traceback__ = None
