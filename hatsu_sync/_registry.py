"""Which handlers an event goes to: the callback registry and the keys it accepts (no I/O)."""

from __future__ import annotations

from typing import Any, Callable, Union

from ._redact import redact_known
from .models import Event

__all__ = ["LIFECYCLE", "Handler", "Handlers", "Key", "Registry", "check_key"]

LIFECYCLE = frozenset({"connect", "disconnect", "error"})
"""The lifecycle names a handler may be registered for."""

Handler = Callable[[Any], Any]
Key = Union[str, "type[Event]"]
Handlers = tuple[Handler, ...]


class Registry:
    """Callbacks by key: an event name, a model class, ``"*"`` or a lifecycle name.

    Writers change the list with single atomic list operations and then replace the lookup
    cache whole; readers never lock. So ``on``/``off`` may come from any thread, a signal
    handler or a handler (taking effect from the next event on), and the callback thread finds
    an event's handlers with two dict lookups.
    """

    # A hostile gateway may send any number of distinct names: the cache stops growing here.
    _MAX_CACHED_NAMES = 512

    def __init__(self) -> None:
        self._entries: list[tuple[Key, Handler]] = []
        # type(event) -> event name -> handlers; lifecycle name -> handlers.
        self._cache: dict[Any, Any] = {}
        self.has_event_handlers = False

    def add(self, key: Key, handler: Handler) -> None:
        """Register ``handler`` for ``key`` (checked with :func:`check_key`).

        Raises:
            TypeError: ``handler`` is not callable, or ``key`` is neither a str nor an
                :class:`Event` subclass.
            ValueError: ``key`` is a str that names no event, ``"*"`` nor a lifecycle.
        """
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        check_key(key)
        self._entries.append((key, handler))
        self._changed()

    def remove(self, key: Key, handler: Handler | None = None) -> bool:
        """Unregister one registration of ``handler`` for ``key``, or every handler of ``key``
        when ``handler`` is None; True if there was one."""
        entries = self._entries
        found = False
        if handler is not None:
            try:
                entries.remove((key, handler))
                found = True
            except ValueError:
                pass
        else:
            for entry in tuple(entries):
                if entry[0] == key and type(entry[0]) is type(key):
                    try:
                        entries.remove(entry)
                        found = True
                    except ValueError:  # another thread removed it first
                        pass
        if found:
            self._changed()
        return found

    def _changed(self) -> None:
        self._cache = {}
        # Two writers may interleave: whoever stores the flag last checks it against the list
        # as it is after that store, so the last word is always right.
        while True:
            flag = self._any_event_handler()
            self.has_event_handlers = flag
            if self._any_event_handler() == flag:
                return

    def _any_event_handler(self) -> bool:
        return any(key not in LIFECYCLE for key, _ in tuple(self._entries))

    def for_event(self, event: Event) -> Handlers:
        """The handlers matching ``event``, in registration order."""
        cache = self._cache
        by_name = cache.get(type(event))
        if by_name is None:
            by_name = cache[type(event)] = {}
        name = event.name
        handlers: Handlers | None = by_name.get(name)
        if handlers is None:
            handlers = tuple(
                h
                for k, h in tuple(self._entries)
                if (k == name and k not in LIFECYCLE)
                or k == "*"
                or (isinstance(k, type) and isinstance(event, k))
            )
            if len(by_name) < self._MAX_CACHED_NAMES:
                by_name[name] = handlers
        return handlers

    def for_lifecycle(self, kind: str) -> Handlers:
        """The handlers of a lifecycle name, in registration order."""
        cache = self._cache
        handlers: Handlers | None = cache.get(kind)
        if handlers is None:
            handlers = cache[kind] = tuple(h for k, h in tuple(self._entries) if k == kind)
        return handlers


def check_key(key: object) -> None:
    """Check a callback key: an upper-case event name, a model class, ``"*"`` or a lifecycle.

    Raises:
        TypeError: ``key`` is neither a str nor an :class:`Event` subclass.
        ValueError: ``key`` is a str that is none of the names above.
    """
    if isinstance(key, str):
        if key == "*" or key in LIFECYCLE or _is_event_name(key):
            return
        hint = ""
        near = [name for name in sorted(LIFECYCLE) if _near(key.lower(), name)]
        if near:
            hint = f" (did you mean {near[0]!r}?)"
        elif _is_event_name(key.upper()):
            hint = f" (event names are upper case: {key.upper()!r})"
        raise ValueError(
            f"unknown callback key {redact_known(repr(key))}{hint}: use an upper-case event "
            "name such as 'PRESENCE_UPDATE', a model class such as PresenceUpdate, '*' for "
            "every event, or a lifecycle name: 'connect', 'disconnect' or 'error'"
        )
    if not (isinstance(key, type) and issubclass(key, Event)):
        raise TypeError(
            "key must be an event name, '*', 'connect', 'disconnect', 'error' or an "
            f"Event subclass, not {type(key).__name__}"
        )


def _is_event_name(key: str) -> bool:
    # Gateway event names are upper case words joined by '_' (digits allowed): PRESENCE_UPDATE.
    return bool(key) and key[0].isalpha() and key.isupper() and key.replace("_", "").isalnum()


def _near(word: str, name: str) -> bool:
    """True if ``word`` is ``name`` with a small slip: a prefix/suffix added, or a letter off."""
    if word.startswith(name) or (len(word) >= 4 and name.startswith(word[:4])):
        return True
    if abs(len(word) - len(name)) > 1:
        return False
    mismatches = sum(a != b for a, b in zip(word, name))
    return mismatches + abs(len(word) - len(name)) <= 2
