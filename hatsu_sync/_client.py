"""``Client``: the user's API, wiring discovery, the transport and dispatch together."""

from __future__ import annotations

import atexit
import json
import logging
import numbers
import ssl
import threading
import warnings
import weakref
from collections.abc import Collection, Iterator
from typing import Any, Callable, TypeVar, Union, overload
from urllib.parse import urlsplit

from ._dispatch import BufferClosed, CallbackThread, EventBuffer, Registry
from ._state import Connected, Deadline, Disconnected, State, Stats
from ._transport import Settings, Supervisor
from .exceptions import ClientClosed, ConnectError, DecodeError, GatewayClosed, HatsuError
from .models import Embed, EmbedText, Event

__all__ = ["DEFAULT_FATAL_CLOSE_CODES", "DEFAULT_GATEWAY", "PRODUCTION_1", "Client"]

log = logging.getLogger("hatsu_sync")

DEFAULT_GATEWAY = "https://gateway.vincentrps.xyz"
"""The documented discovery endpoint's base URL."""
PRODUCTION_1 = "wss://gateway-prod-1.vincentrps.xyz"
"""The documented production-1 websocket URL (``Client(url=PRODUCTION_1)`` skips discovery)."""

DEFAULT_FATAL_CLOSE_CODES: frozenset[int] = frozenset({1002, 1003, 1007, 1008, 4001, 4002, 4004})
"""Close codes after which reconnecting cannot help (bad identify, bad session id, ...)."""

MAX_CLIENT_MESSAGE = 2**20
"""The deployed gateway closed with 1009 on client messages over 1 MiB."""

F = TypeVar("F", bound=Callable[..., Any])
Key = Union[str, "type[Event]"]


class _Core:
    """The state the client's threads share, and the transport's listener.

    It holds no reference to the :class:`Client`, so a client its user forgot to close can be
    garbage-collected, which warns and closes it (as an unclosed socket does).
    """

    def __init__(self, max_queue: int) -> None:
        self.lock = threading.Lock()  # guards state and error
        self.state = State.IDLE
        self.error: HatsuError | None = None  # why the client closed
        self.closed = threading.Event()
        self.buffer = EventBuffer(max_queue)
        self.registry = Registry()
        self.callbacks = CallbackThread(self.registry, max_queue)
        self.supervisor: Supervisor | None = None
        self.url: str | None = None
        # Written by the transport thread only; read as snapshots.
        self.events_received = 0
        self.decode_errors = 0
        self.connections = 0

    # -- the transport's Listener ---------------------------------------------------------------

    def deliver(self, event: Event) -> None:
        """Queue an event for get_event() and the callbacks; :meth:`flush` wakes their readers."""
        self.events_received += 1
        self.buffer.put(event)
        self.callbacks.submit_event(event)

    def flush(self) -> None:
        """Wake whoever waits for what :meth:`deliver` queued (called before a blocking read)."""
        self.buffer.wake()
        self.callbacks.wake()

    def decode_failed(self, error: DecodeError) -> None:
        self.decode_errors += 1
        log.warning("a gateway message was discarded: %s", error)
        self.callbacks.submit_lifecycle("error", error)

    def connected(self, url: str) -> None:
        self.connections += 1
        self.url = url
        self.callbacks.submit_lifecycle("connect", Connected(url))

    def disconnected(self, info: Disconnected) -> None:
        self.callbacks.submit_lifecycle("disconnect", info)

    def state_changed(self, state: State) -> None:
        with self.lock:
            if self.state is not State.CLOSED:
                self.state = state

    def finished(self, error: HatsuError | None) -> None:
        self.mark_closed(error)
        self.callbacks.request_stop()  # runs what is queued (the last "disconnect"), then ends

    # -- closing --------------------------------------------------------------------------------

    def mark_closed(self, error: HatsuError | None) -> None:
        """Move to CLOSED (once), remember why, and wake every waiter."""
        with self.lock:
            self.state = State.CLOSED
            if self.error is None:
                self.error = error or ClientClosed("the client was closed")
        self.buffer.close()
        self.closed.set()

    def shutdown(self, deadline: Deadline) -> None:
        """Close for good: stop the transport, then the callbacks, within ``deadline``."""
        self.mark_closed(None)
        supervisor = self.supervisor
        if supervisor is not None and not supervisor.stop(deadline):
            log.warning("close: the transport thread is still running at the deadline")
        callbacks = self.callbacks
        in_callback = threading.current_thread() is callbacks.thread
        if callbacks.started and not callbacks.stop(deadline) and not in_callback:
            log.warning("close: a callback is still running at the deadline")

    def closed_error(self) -> HatsuError:
        """A fresh raise of why the client closed (its traceback is not piled up)."""
        error = self.error or ClientClosed("the client was closed")
        return error.with_traceback(None)


_live: weakref.WeakSet[Client] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    # The threads are daemons, so the interpreter never waits for them; this only says goodbye
    # to the gateway with a close frame instead of dropping the TCP connection.
    for client in list(_live):
        client.close(timeout=1.0)


class Client:
    """A synchronous client for the hatsu gateway.

    Pull events with :meth:`get_event` (or iterate), or register callbacks with :meth:`on`.
    The websocket, keepalive pings, reconnects and decoding run in background threads.

    The constructor does no I/O.

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
        fatal_close_codes: Collection[int] = DEFAULT_FATAL_CLOSE_CODES,
        ssl_context: ssl.SSLContext | None = None,
        proxy: str | None = None,
    ) -> None:
        if not isinstance(session_id, str):
            raise TypeError(f"session_id must be a str, not {type(session_id).__name__}")
        if not session_id.strip():
            raise ValueError("session_id must not be empty")
        if encoding not in ("json", "zlib"):
            raise ValueError(f"encoding must be 'json' or 'zlib', not {encoding!r}")
        _check_url(gateway, ("http", "https"), "gateway")
        if url is not None:
            _check_url(url, ("ws", "wss"), "url")
        for name, value in (("ping_interval", ping_interval), ("ping_timeout", ping_timeout)):
            if value is not None:
                _check_number(name, value, minimum=0.0, exclusive=True)
        if ping_interval is not None and ping_timeout is not None and ping_interval <= ping_timeout:
            raise ValueError(
                f"ping_interval ({ping_interval}) must be greater than ping_timeout "
                f"({ping_timeout})"
            )
        if max_retries is not None:
            _check_int("max_retries", max_retries, minimum=0)
        _check_number("backoff_base", backoff_base, minimum=0.0)
        _check_number("backoff_max", backoff_max, minimum=0.0)
        _check_int("max_queue", max_queue, minimum=1)
        _check_int("max_message_size", max_message_size, minimum=1)
        codes = frozenset(fatal_close_codes)
        if not all(isinstance(code, int) and not isinstance(code, bool) for code in codes):
            raise TypeError("fatal_close_codes must hold ints")
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise TypeError(f"ssl_context must be an ssl.SSLContext, not {type(ssl_context)}")
        if proxy is not None:
            _check_url(proxy, ("http",), "proxy")
            if urlsplit(proxy).port is None:
                raise ValueError(f"proxy must name a port (http://host:port), not {proxy!r}")

        self._settings = Settings(
            session_id=session_id,
            gateway=gateway.rstrip("/"),
            url=url,
            encoding=encoding,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            reconnect=bool(reconnect),
            max_retries=max_retries,
            backoff_base=float(backoff_base),
            backoff_max=float(backoff_max),
            max_message_size=max_message_size,
            fatal_close_codes=codes,
            ssl_context=ssl_context,
            proxy=proxy,
        )
        self._core = _Core(max_queue)
        self._connect_lock = threading.Lock()  # one connect() at a time

    # -- connecting -----------------------------------------------------------------------------

    def connect(self, timeout: float = 10.0) -> None:
        """Run discovery, the websocket handshake and the identify.

        Returns once the identify is sent. Reconnection attempts later use the same timeout.

        Raises:
            ConnectError: the connection failed (``DiscoveryError`` when discovery did); no
                thread is left running and ``connect()`` may be called again.
            RuntimeError: the client is already connecting or connected.
            ClientClosed: the client is closed (or was closed while connecting).
        """
        _check_number("timeout", timeout, minimum=0.0, exclusive=True)
        core = self._core
        with core.lock:
            if core.state is State.CLOSED:
                raise ClientClosed("the client is closed; create a new Client")
            if core.state is not State.IDLE:
                raise RuntimeError(f"the client is already {core.state.value}")
            core.state = State.CONNECTING
            supervisor = Supervisor(self._settings, core)
            core.supervisor = supervisor
            if not core.callbacks.started:
                core.callbacks.start()
        _live.add(self)
        try:
            supervisor.start(timeout)
        except BaseException:
            with core.lock:
                failed_while_open = core.state is State.CONNECTING
                if failed_while_open:
                    core.state = State.IDLE
            if failed_while_open:
                # connect() promises no thread left behind: a new one starts on the next try.
                core.callbacks.stop(Deadline(1.0))
                core.callbacks = CallbackThread(core.registry, core.callbacks.maxlen)
                _live.discard(self)
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
            ClientClosed: the client was closed by its user, likewise.
        """
        try:
            return self._core.buffer.get(timeout)
        except BufferClosed:
            error = self._core.closed_error()
            raise error from error.__cause__  # keeps the chain (max_retries: the last failure)

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Yield events until the client is closed or none arrived for ``timeout`` seconds.

        Raises:
            GatewayClosed, ConnectError: as :meth:`get_event`, once the buffered events are
                yielded (a ``ClientClosed`` just ends the iteration).
        """
        while True:
            try:
                event = self.get_event(timeout)
            except (TimeoutError, ClientClosed):
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

        ``key`` is an event name (``"PRESENCE_UPDATE"``), a model class (matched with
        ``isinstance``), ``"*"`` (every gateway event) or a lifecycle name: ``"connect"``
        (with a :class:`Connected`), ``"disconnect"`` (with a :class:`Disconnected`) or
        ``"error"`` (with the exception). Handlers run on the client's callback thread, one
        argument each, in arrival order.

        Raises:
            TypeError: ``key`` or ``handler`` is not of a usable kind.
        """
        registry = self._core.registry
        if handler is None:
            registry.check_key(key)

            def register(function: F) -> F:
                registry.add(key, function)
                return function

            return register
        registry.add(key, handler)
        return handler

    def off(self, key: Key, handler: Callable[..., Any]) -> bool:
        """Remove a callback registered with :meth:`on`; True if it was registered."""
        return self._core.registry.remove(key, handler)

    # -- closing --------------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Close the client for good; idempotent and safe from any thread, callbacks included.

        Stops reconnecting at once (a backoff wait too), sends a close frame and waits for the
        gateway's answer, wakes every blocked :meth:`get_event`, :meth:`events` and
        :meth:`wait`, and returns once the client's threads have ended, or at ``timeout``.
        """
        self._core.shutdown(Deadline(timeout))
        _live.discard(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the client is closed; True if it closed, False on timeout.

        Returns as soon as the client is closed, whether or not events are still buffered.

        Raises:
            GatewayClosed: the connection ended for good.
            ConnectError: reconnecting gave up after ``max_retries``.
        """
        if not self._core.closed.wait(timeout):
            return False
        error = self._core.closed_error()
        if isinstance(error, (GatewayClosed, ConnectError)):
            raise error
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
        if core.state is State.CLOSED:
            raise ClientClosed("the client is closed")
        supervisor = core.supervisor
        connection = supervisor.current() if supervisor is not None else None
        if connection is None or core.state is not State.CONNECTED:
            raise ConnectError(f"not connected (the client is {core.state.value})")
        text = json.dumps(payload)
        if len(text) > MAX_CLIENT_MESSAGE or len(text.encode("utf-8")) > MAX_CLIENT_MESSAGE:
            raise ValueError(f"a message over {MAX_CLIENT_MESSAGE} bytes would be refused")
        connection.send_text(text)

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
        if isinstance(type, bool) or not isinstance(type, int):
            raise TypeError(f"type must be an int, not {_type_name(type)}")
        if type not in (1, 2, 3, 4):
            raise ValueError(f"type must be 1, 2, 3 or 4, not {type}")
        _check_optional(str, "description", description)
        if isinstance(emoji, bool) or not isinstance(emoji, (str, int, _NoneType)):
            raise TypeError(f"emoji must be a str or int id or None, not {_type_name(emoji)}")
        payload: dict[str, Any] = {
            "t": "PRESENCE",
            "type": type,
            "description": description,
            "emoji": emoji,
        }
        if embed is not None:
            if not isinstance(embed, Embed):
                raise TypeError(f"embed must be a hatsu_sync.Embed, not {_type_name(embed)}")
            for name in ("name", "description"):
                value = getattr(embed, name)
                if value is None:
                    raise ValueError(f"a presence embed needs a {name}")
                _check_optional(str, f"embed.{name}", value)
            _check_optional(str, "embed.banner_url", embed.banner_url)
            _check_optional(EmbedText, "embed.text", embed.text)
            text = embed.text or EmbedText()
            _check_optional(str, "embed.text.top", text.top)
            _check_optional(str, "embed.text.bottom", text.bottom)
            # The gateway's own field names: the text lines go flat, as top_text/bottom_text.
            payload["embed"] = {
                "name": embed.name,
                "description": embed.description,
                "banner_url": embed.banner_url,
                "top_text": text.top,
                "bottom_text": text.bottom,
            }
        self.send(payload)

    # -- inspection -----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the client is closed (by its user or for good by the gateway)."""
        return self._core.state is State.CLOSED

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

    def __repr__(self) -> str:
        settings = self._settings
        where = self._core.url or settings.url or settings.gateway
        return (
            f"<{type(self).__module__.split('.')[0]}.Client {self._core.state.name} "
            f"url={where!r} encoding={settings.encoding!r}>"
        )

    def __del__(self) -> None:
        core = getattr(self, "_core", None)
        if core is None or core.state in (State.IDLE, State.CLOSED):
            return
        warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self, stacklevel=1)
        core.shutdown(Deadline(1.0))


_NoneType = type(None)


def _type_name(value: object) -> str:
    return type(value).__name__


def _check_optional(kind: type, name: str, value: object) -> None:
    if value is not None and not isinstance(value, kind):
        raise TypeError(f"{name} must be a {kind.__name__} or None, not {_type_name(value)}")


def _check_url(value: object, schemes: tuple[str, ...], name: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        wanted = " or ".join(f"{scheme}://" for scheme in schemes)
        raise ValueError(f"{name} must be a {wanted} URL, not {value!r}")


def _check_number(name: str, value: object, *, minimum: float, exclusive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if value < minimum or (exclusive and value == minimum):
        relation = ">" if exclusive else ">="
        raise ValueError(f"{name} must be {relation} {minimum}, not {value}")


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")
