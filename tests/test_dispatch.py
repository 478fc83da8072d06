"""Dispatch without sockets: the buffers' count and memory bounds, the handler registry, waits."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from hatsu_sync import Event, PresenceUpdate
from hatsu_sync._dispatch import BufferClosed, CallbackThread, EventBuffer
from hatsu_sync._registry import Registry
from hatsu_sync._state import Deadline, Latch

from .conftest import T, eventually


def sized(name: str, nbytes: int, data: Any = None) -> Event:
    """An event that says it was decoded from a message of ``nbytes`` bytes."""
    event = Event(name, data)
    event._nbytes = nbytes  # type: ignore[attr-defined]
    return event


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
        buffer.put(sized("N", 300, i))
    assert drain(buffer) == [7, 8, 9]
    assert buffer.dropped == 7


def test_buffer_budget_counts_only_what_is_unread() -> None:
    """Events already taken no longer count against the budget."""
    buffer = EventBuffer(max_items=1000, max_bytes=1000)
    buffer.started = True
    for i in range(100):
        buffer.put(sized("N", 400, i))
        assert buffer.get(0).data == i
    assert buffer.dropped == 0


def test_an_event_over_the_whole_budget_is_still_delivered() -> None:
    """A single event bigger than the budget replaces everything else, alone."""
    buffer = EventBuffer(max_items=1000, max_bytes=1000)
    buffer.started = True
    buffer.put(sized("N", 10, "small"))
    buffer.put(sized("N", 5000, "huge"))
    buffer.put(sized("N", 10, "after"))
    assert drain(buffer) == ["after"]
    assert buffer.dropped == 2


def test_buffer_is_still_bounded_by_count() -> None:
    """max_items holds for events of no known size (built by hand)."""
    buffer = EventBuffer(max_items=3, max_bytes=1000)
    buffer.started = True
    for i in range(10):
        buffer.put(Event("N", i))
    assert drain(buffer) == [7, 8, 9]
    assert buffer.dropped == 7


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
    for i in range(10):
        callbacks.submit_event(sized("N", 300, i))
        if i == 5:
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
    buffer.put(Event("N", 1))
    buffer.wake()
    reader.join(T)
    assert got == [1]
    assert not buffer._wakeup
    buffer.put(Event("N", 2))
    buffer.close()
    assert buffer.get(0).data == 2  # buffered events still come first once closed
    with pytest.raises(BufferClosed):
        buffer.get(0)
