"""Dispatch without sockets: the buffers' count and memory bounds, the handler registry, waits."""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hatsu_sync import Event, PresenceUpdate
from hatsu_sync._build import parse
from hatsu_sync._decode import Decoder, revive
from hatsu_sync._dispatch import BufferClosed, CallbackThread, EventBuffer
from hatsu_sync._registry import Registry
from hatsu_sync._state import Deadline, Latch

from .conftest import T, eventually


def sized(name: str, nbytes: int, data: Any = None) -> Event:
    """An event that says it was decoded from a message of ``nbytes`` bytes."""
    event = Event(name, data)
    event._nbytes = nbytes  # type: ignore[attr-defined]
    return event


def put(buffer: EventBuffer, event: Event) -> None:
    """Put one event, as a read that brought only it does."""
    buffer.put_many([event], [event._nbytes])


def drain(buffer: EventBuffer) -> list[Any]:
    out = []
    while True:
        try:
            out.append(buffer.get(0).data)
        except TimeoutError:
            return out


def test_buffer_drops_the_oldest_over_its_memory_budget() -> None:
    """Unread events over max_bytes push out the oldest, counted in dropped."""
    buffer = EventBuffer(max_items=1000, max_bytes=1000)
    buffer.started = True
    for i in range(10):
        put(buffer, sized("N", 300, i))
    assert drain(buffer) == [7, 8, 9]
    assert buffer.dropped == 7


def test_buffer_budget_counts_only_what_is_unread() -> None:
    """Events already taken no longer count against the budget."""
    buffer = EventBuffer(max_items=1000, max_bytes=1000)
    buffer.started = True
    for i in range(100):
        put(buffer, sized("N", 400, i))
        assert buffer.get(0).data == i
    assert buffer.dropped == 0


def test_an_event_over_the_whole_budget_is_still_delivered() -> None:
    """A single event bigger than the budget replaces everything else, alone."""
    buffer = EventBuffer(max_items=1000, max_bytes=1000)
    buffer.started = True
    put(buffer, sized("N", 10, "small"))
    put(buffer, sized("N", 5000, "huge"))
    put(buffer, sized("N", 10, "after"))
    assert drain(buffer) == ["after"]
    assert buffer.dropped == 2


def test_buffer_is_still_bounded_by_count() -> None:
    """max_items holds for events of no known size (built by hand)."""
    buffer = EventBuffer(max_items=3, max_bytes=1000)
    buffer.started = True
    for i in range(10):
        put(buffer, Event("N", i))
    assert drain(buffer) == [7, 8, 9]
    assert buffer.dropped == 7


# One step of a buffer's life: a batch of event sizes put at once, or a number of get()s.
STEPS = st.lists(
    st.one_of(
        st.lists(st.integers(0, 700), min_size=1, max_size=12).map(lambda sizes: ("put", sizes)),
        st.integers(1, 6).map(lambda n: ("get", n)),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(steps=STEPS, max_items=st.integers(1, 8), max_bytes=st.integers(1, 2000))
def test_put_many_is_put_one_by_one(
    steps: list[tuple[str, Any]], max_items: int, max_bytes: int
) -> None:
    """A batch put at once leaves the buffer, and its dropped count, as putting its events in
    batches of one does, whatever the bounds, the sizes and the reads in between."""
    batched = EventBuffer(max_items, max_bytes)
    single = EventBuffer(max_items, max_bytes)
    batched.started = single.started = True
    serial = 0
    for kind, arg in steps:
        if kind == "put":
            events = [sized("N", size, serial + i) for i, size in enumerate(arg)]
            serial += len(events)
            batched.put_many(list(events), [e._nbytes for e in events])
            for event in events:
                put(single, event)
        else:
            for _ in range(arg):
                try:
                    assert batched.get(0).data == single.get(0).data
                except TimeoutError:
                    with pytest.raises(TimeoutError):
                        single.get(0)
        assert batched.dropped == single.dropped
    assert drain(batched) == drain(single)


def test_put_many_steady_state_drops_one_per_event() -> None:
    """Full by count and nobody reading (a callback-only client): each batch pushes out as
    many of the oldest as it brings, counted."""
    buffer = EventBuffer(max_items=100, max_bytes=10**6)
    buffer.started = True
    for start in range(0, 1000, 50):
        batch: list[Event | bytes | str] = [sized("N", 10, i) for i in range(start, start + 50)]
        buffer.put_many(batch, [10] * 50)
    assert buffer.dropped == 900
    assert drain(buffer) == list(range(900, 1000))


def test_a_text_in_the_buffer_comes_out_as_its_event() -> None:
    """What the buffer keeps of an event the callbacks took, its message text (bytes, or an
    ASCII str), comes out of get() as an equal event of its own, built, in its place in order."""
    decoder = Decoder()
    message = {"t": "PRESENCE_UPDATE", "id": "5", "d": {"type": 1, "description": "x"}}
    text = json.dumps(message)
    event = decoder.decode(text, False)
    buffer = EventBuffer(max_items=10, max_bytes=10**6)
    buffer.started = True
    before, after = Event("BEFORE", 1), Event("AFTER", 2)
    buffer.put_many([before, text, text.encode(), after], [0, len(text), len(text), 0])
    assert buffer.get(0) is before
    for _ in range(2):
        pulled = buffer.get(0)
        assert type(pulled) is PresenceUpdate
        assert pulled is not event
        assert pulled == event
        assert pulled.raw == message
        assert pulled._nbytes == len(text)
    assert buffer.get(0) is after


def _at_depth(depth: int, function: Any) -> Any:
    return function() if depth <= 0 else _at_depth(depth - 1, function)


def test_revive_from_a_deep_stack() -> None:
    """A message the socket thread parsed comes out of get() whole even when the caller's
    stack is too deep to parse it (Python 3.9-3.11 count both against one recursion limit:
    the message is then parsed on a thread of its own)."""
    nesting = sys.getrecursionlimit() // 2
    text = '{"t":"DEEP","d":' + "[" * nesting + "]" * nesting + "}"
    event = Decoder().decode(text, False)  # on this test's shallow stack: it parses
    depth = sys.getrecursionlimit() - nesting // 2

    def parse_here() -> str:
        try:
            parse(text)
        except RecursionError:
            return "too deep"
        return "parsed"

    outcome = _at_depth(depth, parse_here)
    if sys.version_info < (3, 12):
        assert outcome == "too deep"  # so the revive below takes the other thread
    pulled = _at_depth(depth, lambda: revive(text))
    assert pulled == event
    assert pulled.name == "DEEP"
    assert not [t for t in threading.enumerate() if t.name == "hatsu-sync-revive"]


def test_callback_queue_keeps_lifecycle_notices_and_its_budget() -> None:
    """The callback queue drops its oldest events over budget, never a lifecycle notice."""
    registry = Registry()
    seen: list[Any] = []
    release = threading.Event()
    registry.add("connect", lambda info: (release.wait(T), seen.append(info)))
    registry.add("disconnect", seen.append)
    registry.add("N", lambda event: seen.append(event.data))
    callbacks = CallbackThread(registry, max_items=1000, max_bytes=1000)
    callbacks.start()
    callbacks.submit_lifecycle("connect", "hello")  # blocks the thread until released
    eventually(lambda: not callbacks._items, what="the thread to take the notice")
    for i in range(0, 10, 2):  # batches of two, the second crossing the budget
        callbacks.submit_many([sized("N", 300, i), sized("N", 300, i + 1)], [300, 300])
        if i == 4:
            callbacks.submit_lifecycle("disconnect", "bye")
    release.set()
    callbacks.wake()
    assert callbacks.stop(Deadline(T))
    assert seen == ["hello", "bye", 7, 8, 9]
    assert callbacks.dropped == 7


def test_registry_lookups_follow_changes() -> None:
    """Cached handler lookups see every on/off, by name, class and '*'."""
    registry = Registry()
    event = PresenceUpdate("PRESENCE_UPDATE", None, {})
    assert registry.for_event(event) == ()
    assert not registry.has_event_handlers
    registry.add("PRESENCE_UPDATE", print)
    registry.add(PresenceUpdate, repr)
    registry.add("*", str)
    registry.add("connect", len)
    assert registry.for_event(event) == (print, repr, str)
    assert registry.for_event(Event("OTHER")) == (str,)
    assert registry.for_lifecycle("connect") == (len,)
    assert registry.remove("*") is True
    assert registry.for_event(Event("OTHER")) == ()
    assert registry.remove(PresenceUpdate, repr) is True
    assert registry.for_event(event) == (print,)
    assert registry.remove("PRESENCE_UPDATE") is True
    assert not registry.has_event_handlers
    assert registry.for_event(event) == ()


def test_registry_never_matches_a_lifecycle_key_to_an_event_name() -> None:
    """An event named like a lifecycle key does not reach that key's handlers."""
    registry = Registry()
    registry.add("error", print)
    assert registry.for_event(Event("error")) == ()


@pytest.mark.parametrize("timeout", [None, T])
def test_latch_wakes_waiters_and_times_out(timeout: float | None) -> None:
    """Latch.wait returns True once set (from another thread), False after its timeout."""
    latch = Latch()
    assert latch.wait(0.01) is False
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(latch.wait(timeout)))
    waiter.start()
    latch.set()
    waiter.join(T)
    assert results == [True]
    assert latch.wait(0) is True


def test_buffer_get_leaves_no_waiter_behind() -> None:
    """Polling enlists nothing, and a woken or timed-out get() takes its waiter off the list."""
    buffer = EventBuffer(max_items=10, max_bytes=1000)
    buffer.started = True
    with pytest.raises(TimeoutError, match="no event is waiting"):
        buffer.get(0)
    with pytest.raises(TimeoutError, match="within"):
        buffer.get(0.01)
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(buffer.get(T).data))
    reader.start()
    eventually(lambda: buffer._wakeup, what="the reader to wait")
    put(buffer, Event("N", 1))
    buffer.wake()
    reader.join(T)
    assert got == [1]
    assert not buffer._wakeup
    put(buffer, Event("N", 2))
    buffer.close()
    assert buffer.get(0).data == 2  # buffered events still come first once closed
    with pytest.raises(BufferClosed):
        buffer.get(0)
