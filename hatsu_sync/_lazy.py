"""How an event keeps its message and builds its fields on first read (no I/O).

The classes here are the bases of every model in :mod:`hatsu_sync.models`, which documents the
behaviour users see. A decoded event is in one of four states:

- unread: its message text only (``_lazy``);
- hot: the text, and every field the decoder built while the reader kept up (``_lazy`` and
  ``_hot``); a first read claims them, the decoder undoes them for an event left unread;
- typed: the text and the typed fields, after a first read of a typed field (``presence``);
  ``raw`` and ``data`` are parsed from the text if they are ever read;
- whole: every field and no text, after a read of ``raw`` or ``data`` (or a change to any
  field). Events built by hand are whole from the start.

How to parse a message and build a model's fields is the subclass's part (``_parse``), so that
this module needs neither the models nor their builders. It must not use ``from __future__
import annotations``: dataclasses-json reads the annotations of the models' bases at run time.
"""

# ruff: noqa: UP006, UP035

import threading
from dataclasses import fields
from operator import attrgetter
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Type, TypeVar, Union

from dataclasses_json import DataClassJsonMixin

from ._display import show

__all__ = ["_Lazy", "_Model", "_lazy_fields"]


class _Model(DataClassJsonMixin):
    """Base of every model: a ``repr()`` (and so ``str()``) that never shows a session id."""

    __slots__ = ()

    def __repr__(self) -> str:
        return show(self)


# Taken by the last step of a first read, so that two threads reading one event at once (a
# program's own threads, or the decoder undoing a hot event) agree on one `raw`, ... Held only
# while assigning: the parsing runs outside it. Re-entrant: a signal handler that reads an
# event while the main thread holds it (inside a first read) must not deadlock; it builds
# from the same text, so whichever assignment comes last holds the same values.
_commit_lock = threading.RLock()

_UNSET: Any = object()
_SlotCache = Dict[type, Tuple[str, ...]]
_all_slots_of: _SlotCache = {}


def _all_slots(cls: type) -> Tuple[str, ...]:
    slots = _all_slots_of.get(cls)
    if slots is None:
        names: List[str] = []
        for klass in reversed(cls.__mro__):
            declared = klass.__dict__.get("__slots__", ())
            names.extend((declared,) if isinstance(declared, str) else declared)
        slots = tuple(n for n in names if n not in ("__dict__", "__weakref__"))
        _all_slots_of[cls] = slots
    return slots


_built_slots_of: _SlotCache = {}


def _built_slots(cls: type) -> Tuple[str, ...]:
    """The slots that building fills: raw, data and the typed fields."""
    slots = _built_slots_of.get(cls)
    if slots is None:
        slots = tuple(f"_{f.name}" for f in fields(cls) if f.name != "name")
        _built_slots_of[cls] = slots
    return slots


class _Lazy(_Model):
    """What every event stores: slots, and the message text until its first read."""

    __slots__ = ("_data", "_hot", "_lazy", "_name", "_nbytes", "_raw", "_text")
    _name: str
    # The message as received (UTF-8 bytes, or an ASCII str) until ``raw`` and ``data`` are
    # this event's own; None from then on (and for an event built by hand).
    _text: Union[bytes, str, None]
    _nbytes: int
    _data: Any
    _raw: Dict[str, Any]
    # True until the typed fields are this event's own (a decoded event nobody read yet).
    _lazy: bool
    # True while every field is built (by the decoder, for one of the connection's latest
    # events) but nobody read it yet: the first read then only claims it. The decoder undoes
    # the building of an event nobody claimed once it is older (see _decode.Decoder).
    _hot: bool
    # So a decoded event is in one of four states: unread (text; lazy), hot (text, every
    # field; lazy and hot), typed (text and the typed fields, after a first read of one of
    # them) and whole (every field, no text). Events built by hand are whole from the start.

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # Every way of making an event by hand (the constructor, from_dict, copy, pickle) comes
        # here first; the decoder makes its events without calling this.
        self = object.__new__(cls)
        self._text = None
        self._hot = self._lazy = False
        self._nbytes = 0
        return self

    def _load(self) -> None:
        """Make ``raw``, ``data`` and the typed fields this event's own, building what is not
        yet (from the message text) unless the decoder already has. Typed fields already read
        are kept as they are.

        Raises:
            RecursionError: the message is nested so deeply that it parsed in the client's
                thread but not at the depth of the caller's stack (nothing is changed).
        """
        text = self._text
        if text is None:
            return
        if self._hot:
            with _commit_lock:
                if self._hot:  # still built: claim it (the decoder will leave it alone)
                    self._hot = self._lazy = False
                    self._text = None
                    return
            # Undone by the decoder or claimed by a typed read meanwhile: build below.
        msg, data, build = self._parse(text)  # outside the lock: it is the slow part
        with _commit_lock:
            if self._text is None:  # another thread finished first: keep what it built
                return
            self._raw = msg
            self._data = data
            if self._lazy:
                if build is not None:  # cannot misfit: the decoder checked this very text
                    build(self, data, msg)
                self._lazy = False
            self._text = None  # last: from here on readers take the slots as they are

    def _load_typed(self) -> None:
        """Make the typed fields this event's own, building them from the message text unless
        the decoder already has; the text stays, for ``raw`` and ``data`` (which the decoder's
        building is not kept for: a typed field read first is what most programs read).

        Raises:
            RecursionError: as :meth:`_load`.
        """
        if self._hot:
            with _commit_lock:
                if self._hot:  # claim the typed fields; raw and data come back from the text
                    self._hot = self._lazy = False
                    del self._raw, self._data
                    return
        text = self._text
        if not self._lazy or text is None:
            return
        msg, data, build = self._parse(text)
        with _commit_lock:
            if self._lazy:  # else another thread finished first: keep what it built
                if build is not None:
                    build(self, data, msg)
                self._lazy = False

    def _parse(self, text: Union[bytes, str]) -> Tuple[Dict[str, Any], Any, Any]:
        """The message parsed from ``text``, its ``data``, and the function that builds this
        event's typed fields from them (None when it has none): :class:`~.models.Event`
        says how."""
        raise NotImplementedError

    def _unbuild(self) -> None:
        """Drop what the decoder built, if nobody claimed it: back to the text alone."""
        with _commit_lock:
            if not self._hot:
                return
            self._hot = False  # still lazy: unread
            for slot in _built_slots(type(self)):
                delattr(self, slot)

    def __getstate__(self) -> Tuple[Optional[Dict[str, Any]], Dict[str, Any]]:
        # An unread event pickles and copies as its text alone, and stays unread.
        if self._lazy:
            state = {
                "_name": self._name,
                "_text": self._text,
                "_nbytes": self._nbytes,
                "_lazy": True,
            }
        else:
            state = {}
            for slot in _all_slots(type(self)):
                value = getattr(self, slot, _UNSET)
                if value is not _UNSET:
                    state[slot] = value
        return getattr(self, "__dict__", None) or None, state

    def __setstate__(self, state: Tuple[Optional[Dict[str, Any]], Dict[str, Any]]) -> None:
        attributes, slots = state
        self._hot = False  # protocols 0 and 1 do not call __new__
        # Pickled by 0.2.0, which had no _lazy: an event with its text was an unread one.
        self._lazy = "_lazy" not in slots and slots.get("_text") is not None
        if attributes:
            self.__dict__.update(attributes)
        for slot, value in slots.items():
            setattr(self, slot, value)


_E = TypeVar("_E", bound=_Lazy)


def _name_property() -> property:
    def get(self: _Lazy) -> str:
        return self._name

    def set_(self: _Lazy, value: str) -> None:
        self._name = value

    # No docstring: the class's "Attributes" section documents ``name`` (once, for Sphinx).
    return property(get, set_)


def _setter(slot: str) -> Callable[[_Lazy, Any], None]:
    def set_(self: _Lazy, value: Any) -> None:
        if self._text is not None:
            self._load()  # every other field first, or building it later would undo this
        setattr(self, slot, value)

    return set_


def _lazy_property(slot: str) -> property:
    """``data`` or ``raw``, stored in ``slot``, built from the message text on first read."""
    read = attrgetter(slot)

    def get(self: _Lazy) -> Any:
        if self._text is not None:
            self._load()
        return read(self)

    return property(get, _setter(slot))


def _typed_property(slot: str) -> property:
    """A model's own field, stored in ``slot``, built from the message text on first read."""
    read = attrgetter(slot)

    def get(self: _Lazy) -> Any:
        if self._lazy:
            self._load_typed()
        return read(self)

    return property(get, _setter(slot))


def _lazy_fields(cls: Type[_E]) -> Type[_E]:
    """Turn the dataclass fields that ``cls`` declares into properties backed by slots.

    Raises:
        TypeError: a field has no slot ``_<name>`` (each event class declares them).
    """
    inherited: Set[str] = set()
    for base in cls.__mro__[1:]:
        inherited.update(getattr(base, "__dataclass_fields__", ()))
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in inherited:
            continue
        slot = f"_{f.name}"
        if not any(slot in klass.__dict__.get("__slots__", ()) for klass in cls.__mro__):
            raise TypeError(f"{cls.__name__}.{f.name} has no slot {slot}")
        if f.name == "name":
            made = _name_property()
        elif f.name in ("data", "raw"):  # declared by Event only
            made = _lazy_property(slot)
        else:
            made = _typed_property(slot)
        setattr(cls, f.name, made)
    return cls
