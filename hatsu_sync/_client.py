"""``Client``: the user's API, wiring discovery, the transport and dispatch together.

The shared state and the closing logic live in ``_core``, argument checks in ``_options``, and
the process edges (fork, exit, garbage collection, duplicate clients) in ``_process``.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Collection, Iterator
from typing import Any, Callable, NoReturn, TypeVar, Union, overload

from . import _process
from ._core import Core, on_main_thread
from ._dispatch import BufferClosed, NotStarted
from ._options import check_number, make_settings, presence_payload
from ._redact import register
from ._registry import check_key
from ._state import Deadline, State, Stats
from ._transport import Supervisor
from .exceptions import ClientClosed, ConnectError, GatewayClosed
from .models import Embed, Event

__all__ = ["DEFAULT_FATAL_CLOSE_CODES", "DEFAULT_GATEWAY", "PRODUCTION_1", "Client"]

DEFAULT_GATEWAY = "https://gateway.vincentrps.xyz"
"""The documented discovery endpoint's base URL."""
PRODUCTION_1 = "wss://gateway-prod-1.vincentrps.xyz"
"""The documented production-1 websocket URL (``Client(url=PRODUCTION_1)`` skips discovery)."""

DEFAULT_FATAL_CLOSE_CODES: frozenset[int] = frozenset({1002, 1003, 1007, 1008, 4001, 4002, 4004})
"""Close codes after which reconnecting cannot help (bad identify, bad session id, ...)."""

MAX_CLIENT_MESSAGE = 2**20
"""The deployed gateway closed with 1009 on client messages over 1 MiB."""

DEFAULT_MAX_BUFFER_BYTES = 64 * 2**20
"""The default memory budget of unread events (``max_buffer_bytes``)."""

F = TypeVar("F", bound=Callable[..., Any])
Key = Union[str, "type[Event]"]

_NOT_CONNECTED = (
    "the client is not connected: call client.connect() first, or use "
    "`with Client(...) as client:`, which connects and closes it"
)


class Client:
    """A synchronous client for the hatsu gateway.

    Pull events with :meth:`get_event` (or iterate), or register callbacks with :meth:`on`.
    The websocket, keepalive pings, reconnects and decoding run in background threads.

    The constructor does no I/O. Besides the settings described in the README:

    - ``max_buffer_bytes``: the memory budget of unread events, in bytes of the messages they
      were decoded from (64 MiB by default). It bounds the :meth:`get_event` buffer and,
      separately, the events waiting for callbacks, as ``max_queue`` bounds their number; over
      it the oldest are dropped and counted in ``stats.events_dropped`` /
      ``stats.callbacks_dropped``.
    - ``retry_first_connect``: when True, the first :meth:`connect` retries a failed attempt
      under the reconnect backoff policy (``backoff_base``, ``backoff_max``, ``max_retries``)
      until it succeeds or its ``timeout`` runs out, for services that may start before their
      network is up. False (the default) fails at the first failed attempt.

    A client cannot be copied or pickled (it owns a connection and threads).

    Raises:
        ValueError: an empty ``session_id``, an unknown ``encoding``, ``ping_interval <=
            ping_timeout``, a ``url`` that is not ws(s)://, or another out-of-range setting.
        TypeError: an argument of the wrong type.
    """

    def __init__(
        self,
        session_id: str,
        *,
        gateway: str = DEFAULT_GATEWAY,
        url: str | None = None,
        encoding: str = "json",
        ping_interval: float | None = 15.0,
        ping_timeout: float | None = 10.0,
        reconnect: bool = True,
        max_retries: int | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        max_queue: int = 10_000,
        max_message_size: int = 16 * 2**20,
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
        fatal_close_codes: Collection[int] = DEFAULT_FATAL_CLOSE_CODES,
        ssl_context: ssl.SSLContext | None = None,
        proxy: str | None = None,
        retry_first_connect: bool = False,
    ) -> None:
        self._settings = make_settings(
            session_id,
            gateway=gateway,
            url=url,
            encoding=encoding,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            reconnect=reconnect,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            max_queue=max_queue,
            max_message_size=max_message_size,
            max_buffer_bytes=max_buffer_bytes,
            fatal_close_codes=fatal_close_codes,
            ssl_context=ssl_context,
            proxy=proxy,
            retry_first_connect=retry_first_connect,
        )
        register(session_id)  # displays of events redact it from now on
        self._core = Core(max_queue, max_buffer_bytes)
        # Where this client was made, for the warning if it is collected open (see _process).
        self._origin = _process.Origin()
        # One connect() at a time; only ever tried without blocking (see _core's notes).
        self._connect_lock = threading.Lock()

    # -- connecting -----------------------------------------------------------------------------

    def connect(self, timeout: float = 10.0) -> None:
        """Run discovery, the websocket handshake and the identify.

        Returns once the identify is sent. Reconnection attempts later use the same timeout.

        Raises:
            ConnectError: the connection failed (``DiscoveryError`` when discovery did); no
                thread is left running and ``connect()`` may be called again.
            RuntimeError: the client is already connecting or connected.
            ClientClosed: the client is closed (or was closed while connecting), or it was
                inherited from a parent process.
        """
        check_number("timeout", timeout, minimum=0.0, exclusive=True)
        core = self._core
        if core.closing:
            self._raise_closed("the client is closed; create a new Client")
        if not self._connect_lock.acquire(False):
            raise RuntimeError("the client is already connecting")
        try:
            # Looked at again under the lock: a close() from a signal handler may have landed
            # since the first look.
            if core.closing or core.state is State.CLOSED:
                self._raise_closed("the client is closed; create a new Client")
            if core.state is not State.IDLE:
                raise RuntimeError(f"the client is already {core.state.value}")
            previous = core.enter_main("connect")
            try:
                self._start(timeout)
            finally:
                core.leave_main(previous, "connect")
        finally:
            self._connect_lock.release()

    def _start(self, timeout: float) -> None:
        core = self._core
        # First, while nothing is started: with warnings as errors (pytest -W error) the
        # duplicate-client warning raises here, and must not leave a thread behind.
        _process.opened(self, self._settings.session_id)
        core.state = State.CONNECTING
        supervisor = Supervisor(self._settings, core)
        core.supervisor = supervisor
        if core.closing:  # close() came meanwhile (a signal handler, another thread)
            core.state = State.CLOSED
            _process.closed(self)
            raise ClientClosed("the client was closed while connecting")
        core.buffer.started = True  # get_event() may wait from now on
        core.callbacks.start()
        try:
            supervisor.start(timeout)
        except BaseException:
            if core.state is State.CONNECTING:  # failed; a close() meanwhile made it CLOSED
                core.state_changed(State.IDLE)
                core.supervisor = None
                core.buffer.started = False
                _process.closed(self)
                # connect() promises no thread left behind: start() makes a new one next time.
                core.callbacks.stop(Deadline(1.0))
            raise

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- pulling events -------------------------------------------------------------------------

    def get_event(self, timeout: float | None = None) -> Event:
        """Return the next gateway event, in arrival order.

        ``timeout=None`` blocks; ``timeout > 0`` waits that long; ``timeout <= 0`` only polls.
        Safe from several threads at once: each event goes to one caller. Once the client is
        closed, events already received are still returned first.

        Raises:
            TimeoutError: no event within ``timeout``.
            GatewayClosed: the connection ended for good (a fatal close code, or any loss with
                ``reconnect=False``) and every buffered event has been returned.
            ConnectError: reconnecting gave up after ``max_retries`` (chained to the last
                failure), likewise after the buffered events.
            ClientClosed: the client was closed by its user, likewise, or it was inherited
                from a parent process.
            RuntimeError: the client was never connected (call :meth:`connect` first).
        """
        try:
            return self._core.buffer.get(timeout)
        except BufferClosed:
            pass
        except NotStarted:
            raise RuntimeError(_NOT_CONNECTED) from None
        # Raised out of the except block: a ConnectError keeps its cause, not this context.
        raise self._core.closed_error()

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Yield events until the client is closed or none arrived for ``timeout`` seconds.

        Raises:
            GatewayClosed, ConnectError: as :meth:`get_event`, once the buffered events are
                yielded (a ``ClientClosed`` just ends the iteration, unless the client was
                inherited from a parent process).
            RuntimeError: at once, when the client was never connected.
        """
        core = self._core
        if core.forked:
            raise core.closed_error()
        if core.state is State.IDLE and not core.buffer.started:
            raise RuntimeError(_NOT_CONNECTED)
        return self._events(timeout)

    def _events(self, timeout: float | None) -> Iterator[Event]:
        while True:
            try:
                event = self.get_event(timeout)
            except TimeoutError:
                return
            except ClientClosed:
                if self._core.forked:
                    raise
                return
            yield event

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    # -- callbacks ------------------------------------------------------------------------------

    @overload
    def on(self, key: Key, handler: None = None) -> Callable[[F], F]: ...

    @overload
    def on(self, key: Key, handler: F) -> F: ...

    def on(self, key: Key, handler: F | None = None) -> F | Callable[[F], F]:
        """Register a callback; returns it, so it also works as a decorator.

        ``key`` is an upper-case event name (``"PRESENCE_UPDATE"``; unknown names are allowed),
        a model class (matched with ``isinstance``), ``"*"`` (every gateway event) or a
        lifecycle name: ``"connect"`` (with a :class:`Connected`), ``"disconnect"`` (with a
        :class:`Disconnected`) or ``"error"`` (with the exception). Handlers run on the
        client's callback thread, one argument each, in arrival order. A handler that raises
        is given to the ``"error"`` handlers, or, when there is none, reported with its
        traceback through :func:`threading.excepthook`. ``get_event()`` gets every event too:
        an equal event of its own, not the object the handlers get.

        Raises:
            ValueError: ``key`` is a str that is none of the above (``"connected"``,
                ``"presence_update"``).
            TypeError: ``key`` or ``handler`` is not of a usable kind.
            ClientClosed: the client was inherited from a parent process.
        """
        core = self._core
        if core.forked:
            raise core.closed_error()
        registry = core.registry
        if handler is None:
            check_key(key)

            def register(function: F) -> F:
                registry.add(key, function)
                return function

            return register
        registry.add(key, handler)
        return handler

    def off(self, key: Key, handler: Callable[..., Any] | None = None) -> bool:
        """Remove a callback registered with :meth:`on`, or every handler of ``key`` when no
        ``handler`` is given (after a notebook cell is run again, say); True if there was one.

        Raises:
            ValueError, TypeError: ``key`` is not a key :meth:`on` accepts.
        """
        check_key(key)
        return self._core.registry.remove(key, handler)

    # -- closing --------------------------------------------------------------------------------

    def close(self, timeout: float | None = 5.0) -> None:
        """Close the client for good; idempotent and safe from any thread, callbacks included,
        and from a signal handler.

        Stops reconnecting at once (a backoff wait too), sends a close frame and waits for the
        gateway's answer, wakes every blocked :meth:`get_event`, :meth:`events` and
        :meth:`wait`, and returns once the client's threads have ended, or at ``timeout``.
        From a signal handler that interrupted the main thread inside :meth:`connect`,
        :meth:`send` or :meth:`close`, it returns at once, and the interrupted call finishes
        the close as it returns.
        """
        if timeout is not None:  # None: no limit
            check_number("timeout", timeout, minimum=0.0)
        core = self._core
        if core.forked:
            return
        if core.main_call is not None and on_main_thread():
            core.request_close(timeout)
        else:
            previous = core.enter_main("close")
            try:
                core.shutdown(Deadline(timeout))
            finally:
                core.leave_main(previous, "close")
        _process.closed(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the client is closed; True if it closed, False on timeout.

        Returns as soon as the client is closed, whether or not events are still buffered.

        Raises:
            GatewayClosed: the connection ended for good.
            ConnectError: reconnecting gave up after ``max_retries``.
            ClientClosed: the client was inherited from a parent process.
            RuntimeError: the client was never connected (call :meth:`connect` first).
        """
        core = self._core
        if core.state is State.IDLE and not core.buffer.started:
            raise RuntimeError(_NOT_CONNECTED)
        if not core.closed.wait(timeout):
            return False
        error = core.closed_error()
        if isinstance(error, (GatewayClosed, ConnectError)) or core.forked:
            try:
                raise error
            finally:
                del error  # this frame would hold the error that holds this frame
        return True

    # -- sending --------------------------------------------------------------------------------

    def send(self, payload: dict[str, Any]) -> None:
        """Send one JSON text message to the gateway; thread-safe.

        Raises:
            TypeError: ``payload`` is not a dict, or not JSON serialisable.
            ValueError: the message is over the gateway's 1 MiB limit.
            ClientClosed: the client is closed.
            ConnectError: the client is not connected right now.
        """
        if not isinstance(payload, dict):
            raise TypeError(f"payload must be a dict, not {type(payload).__name__}")
        core = self._core
        if core.closing:
            self._raise_closed("the client is closed")
        text = json.dumps(payload)
        if len(text) > MAX_CLIENT_MESSAGE or len(text.encode("utf-8")) > MAX_CLIENT_MESSAGE:
            raise ValueError(f"a message over {MAX_CLIENT_MESSAGE} bytes would be refused")
        supervisor = core.supervisor
        connection = supervisor.current() if supervisor is not None else None
        if connection is None or core.state is not State.CONNECTED:
            raise ConnectError(f"not connected (the client is {core.state.value})")
        if core.main_call == "send" and on_main_thread():
            # A signal handler interrupted a send() that may hold the socket's send lock:
            # this message goes out right after that one, when it returns.
            core.deferred_sends.append(text)
            return
        previous = core.enter_main("send")
        try:
            connection.send_text(text)
        finally:
            core.leave_main(previous, "send")

    def update_presence(
        self,
        *,
        type: int,
        description: str | None = None,
        emoji: str | int | None = None,
        embed: Embed | None = None,
    ) -> None:
        """Set the user's presence: the gateway sends it as PRESENCE_UPDATE to the users who
        share a guild with you, you included.

        ``type`` is 1, 2, 3 or 4; ``emoji`` an emoji id; ``embed`` the rich part (a game, a
        song): its ``name`` and ``description`` are required, ``banner_url`` and ``text``
        (:class:`EmbedText`, the ``top`` and ``bottom`` lines) optional. The gateway does not
        answer, and drops a presence it does not accept without a word: hence the checks here.

        Raises:
            ValueError: ``type`` is not 1-4, or ``embed`` has no name or no description.
            TypeError: an argument (or an embed field) of the wrong type.
            ClientClosed: the client is closed.
            ConnectError: the client is not connected right now.
        """
        self.send(presence_payload(type, description, emoji, embed))

    # -- inspection -----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the client is closed (by its user or for good by the gateway)."""
        return self._core.closing

    @property
    def state(self) -> State:
        """Where the client is: IDLE, CONNECTING, CONNECTED, RECONNECTING or CLOSED."""
        return self._core.state

    @property
    def stats(self) -> Stats:
        """A snapshot of the client's counters."""
        core = self._core
        return Stats(
            events_received=core.events_received,
            events_dropped=core.buffer.dropped,
            callbacks_dropped=core.callbacks.dropped,
            decode_errors=core.decode_errors,
            reconnects=max(0, core.connections - 1),
        )

    def _raise_closed(self, message: str) -> NoReturn:
        core = self._core
        if core.forked:
            raise core.closed_error()
        raise ClientClosed(message)

    def __repr__(self) -> str:
        # Safe on a client whose constructor raised (traceback renderers show locals).
        name = f"{type(self).__module__.split('.')[0]}.Client"
        settings = getattr(self, "_settings", None)
        core = getattr(self, "_core", None)
        if settings is None or core is None:
            return f"<{name} (not initialised)>"
        where = core.url or settings.url or settings.gateway
        state = "CLOSED (inherited from the parent process)" if core.forked else core.state.name
        return f"<{name} {state} url={where!r} encoding={settings.encoding!r}>"

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        # copy, deepcopy and pickle all come here: a copy would share the connection and
        # threads, and closing (or collecting) it would close the original.
        raise TypeError(
            "a hatsu_sync Client cannot be copied or pickled: it owns a connection and "
            "threads; create another Client with the same arguments"
        )

    def __del__(self) -> None:
        core = getattr(self, "_core", None)
        if core is None or core.forked or core.closing or core.state is State.IDLE:
            return
        shown = repr(self)
        # Closed first: a warning turned into an error (-W error) must not skip the close.
        try:
            core.shutdown(Deadline(1.0))
        finally:
            _process.warn_unclosed(self, shown, getattr(self, "_origin", None))
