"""Decoded events keep their message and build on first read: equality, copies, memory, threads."""

from __future__ import annotations

import copy
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest

from hatsu_sync import _decode
from hatsu_sync._decode import Decoder
from hatsu_sync.models import (
    Event,
    GuildInit,
    Notification,
    PresenceUpdate,
    Ready,
    event_from_message,
)

from .conftest import T

REPO = Path(__file__).resolve().parent.parent
SECRET = "sess-51aa-SECRET-lazy"

USER = {"_id": "907362914021453111", "username": "kiri", "session_ids": [SECRET]}
PRESENCE = {
    "t": "PRESENCE_UPDATE",
    "id": "907362914021453103",
    "d": {
        "type": 4,
        "description": "Listening to lo-fi beats, track 3",
        "emoji": "907362914021453203",
        "embed": {
            "name": "Spotify",
            "description": "Chillhop essentials, volume 3",
            "banner_url": "https://cdn.example.invalid/banners/907362914021453303.png",
            "text": {"top": "Track 3 - Some Artist", "bottom": "3:03 left"},
        },
    },
}
MESSAGES: list[dict[str, Any]] = [
    {"t": "HELLO", "s": SECRET, "d": None, "i": "wait for READY"},
    {"t": "READY", "s": SECRET, "d": json.dumps(USER), "i": None},
    PRESENCE,
    {"t": "NOTIFICATION", "type": "MENTION", "excerpt": {"text": "héllo ✨"}, "_id": 3},
    {"t": "GUILD_INIT", "d": {"_id": "9", "name": "Owls", "channels": [{"id": "1"}, {"_id": 2}]}},
    {"t": "PRESENCE_UPDATE", "id": "1", "d": {"type": "not an int"}},  # a misfit: base Event
    {"t": "SOMETHING_NEW", "d": [1, 2, 3], "extra": {"kept": True}},
]
IDS = [f"{i}-{m['t']}" for i, m in enumerate(MESSAGES)]


def encode(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, ensure_ascii=False).encode()


def expected(msg: dict[str, Any]) -> Event:
    """The event built at once from the message (READY's d decoded by hand)."""
    if msg["t"] == "READY":
        return event_from_message(msg, json.loads(msg["d"]))
    return event_from_message(msg)


def field_names(event: Event) -> list[str]:
    return [f for f in event.__dataclass_fields__ if f != "name"]


def unread(event: Event) -> bool:
    """True while nobody has read a field of the event (it holds its text, maybe built)."""
    return event._lazy


@pytest.mark.parametrize("msg", MESSAGES, ids=IDS)
def test_every_field_read_first_gives_the_same_event(msg: dict[str, Any]) -> None:
    """Whichever field is read first, the event equals the one built at once from the message."""
    want = expected(msg)
    for name in field_names(want):
        event = Decoder().decode(encode(msg), binary=False)
        assert type(event) is type(want)
        assert unread(event)
        assert getattr(event, name) == getattr(want, name)
        assert not unread(event)
        assert event == want
        assert event.raw == msg


@pytest.mark.parametrize("msg", MESSAGES, ids=IDS)
def test_name_and_size_are_read_without_building(msg: dict[str, Any]) -> None:
    """name and _nbytes come without building anything: the event still holds only its text."""
    payload = encode(msg)
    event = Decoder().decode(payload, binary=False)
    assert event.name == msg["t"]
    assert event._nbytes == len(payload)
    assert unread(event)


def test_bytes_are_kept_as_received_not_copied() -> None:
    """A text message given as bytes is the very object the event keeps."""
    payload = encode(PRESENCE)
    event = Decoder().decode(payload, binary=False)
    assert event._text is payload


@pytest.mark.parametrize("msg", MESSAGES, ids=IDS)
def test_unread_events_round_trip_through_dataclasses_json(msg: dict[str, Any]) -> None:
    """to_dict, to_json, from_dict and from_json work on a decoded event, read or not."""
    event = Decoder().decode(encode(msg), binary=False)
    again = type(event).from_dict(event.to_dict())
    assert again == event
    assert json.loads(event.to_json())["raw"] == msg
    assert type(event).from_json(Decoder().decode(encode(msg), binary=False).to_json()) == event


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("read_first", [False, True], ids=["unread", "read"])
def test_pickle_keeps_the_event(protocol: int, read_first: bool) -> None:
    """A decoded event pickles with every protocol, read or not, and comes back equal."""
    payload = encode(PRESENCE)
    event = Decoder().decode(payload, binary=False)
    if read_first:
        assert event.presence is not None
    data = pickle.dumps(event, protocol)
    back = pickle.loads(data)
    assert type(back) is PresenceUpdate
    assert back._nbytes == len(payload)
    assert unread(back) == (not read_first)
    if not read_first:
        # An unread event travels as its text: about the message's size, not its objects'.
        assert len(data) < len(payload) + 300
    assert back == expected(PRESENCE)


@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy], ids=["copy", "deepcopy"])
def test_copies_of_unread_and_read_events(copier: Any) -> None:
    """copy and deepcopy give an equal event of the same class, with its size, read or not."""
    for read_first in (False, True):
        event = Decoder().decode(encode(MESSAGES[1]), binary=False)
        if read_first:
            assert isinstance(event, Ready)
            assert event.user == USER
        twin = copier(event)
        assert type(twin) is Ready
        assert twin._nbytes == event._nbytes
        assert twin == event
        assert twin.user == USER


def test_hand_built_events_have_no_size_and_work_as_dataclasses() -> None:
    """Events made by hand, by event_from_message or from_dict have _nbytes 0 and plain fields."""
    by_hand = Notification("NOTIFICATION", None, {"t": "NOTIFICATION"}, type="MENTION")
    assert (by_hand._nbytes, by_hand.type, by_hand.excerpt) == (0, "MENTION", None)
    by_hand.excerpt = {"x": 1}
    assert by_hand.excerpt == {"x": 1}
    assert event_from_message(PRESENCE)._nbytes == 0
    assert PresenceUpdate.from_dict({"name": "PRESENCE_UPDATE"})._nbytes == 0
    assert Event("X")._nbytes == 0
    assert Event("X").raw == {}


def test_setting_a_field_of_an_unread_event_keeps_the_others() -> None:
    """Setting one field of an unread event builds the others first; the set value stays."""
    event = Decoder().decode(encode(PRESENCE), binary=False)
    assert isinstance(event, PresenceUpdate)
    event.user_id = "someone else"
    assert event.user_id == "someone else"
    assert event.presence == expected(PRESENCE).presence  # type: ignore[attr-defined]
    assert event.raw == PRESENCE


def test_str_message_sizes_in_utf8_bytes() -> None:
    """A str message's _nbytes is its UTF-8 size; only an ASCII str is kept as a str."""
    decoder = Decoder()
    ascii_text = json.dumps(PRESENCE)
    assert decoder.decode(ascii_text, binary=False)._text is ascii_text
    text = json.dumps(MESSAGES[3], ensure_ascii=False)
    event = decoder.decode(text, binary=False)
    assert event._nbytes == len(text.encode()) > len(text)
    assert isinstance(event._text, bytes)
    assert event == expected(MESSAGES[3])


def test_zlib_events_keep_the_inflated_message() -> None:
    """In zlib mode _nbytes is the inflated size, and the event reads back what was sent."""
    compressor = zlib.compressobj()
    decoder = Decoder("zlib")
    for msg in MESSAGES:
        data = encode(msg)
        chunk = compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)
        event = decoder.decode(chunk, binary=True)
        assert event._nbytes == len(data) != len(chunk)
        assert event == expected(msg)


def built(event: Event) -> bool:
    """True while the decoder's building of the event waits for its first reader."""
    return bool(event._hot) and hasattr(event, "_raw")


def test_unread_events_leaving_the_window_go_back_to_their_text() -> None:
    """Unread events are built only while recent; the older ones hold their text, all equal."""
    decoder = Decoder()
    window = _decode._HOT_EVENTS
    events = [decoder.decode(encode(PRESENCE), binary=False) for _ in range(window + 5)]
    assert not built(events[0])
    assert not hasattr(events[0], "_raw")  # undone: only the text is left
    assert built(events[window - 1])
    # An event left the window unread: the reader is behind, so later ones wait to be read.
    assert not built(events[-1])
    assert all(unread(event) for event in events)
    want = expected(PRESENCE)
    assert all(event == want for event in events)


def test_a_reader_that_keeps_up_reads_events_the_decoder_built() -> None:
    """Events read soon after decoding come built, for as long as the reader keeps up."""
    decoder = Decoder()
    for _ in range(3 * _decode._HOT_EVENTS):
        event = decoder.decode(encode(PRESENCE), binary=False)
        assert built(event)
        assert isinstance(event, PresenceUpdate)
        assert event.presence is not None
        assert not built(event)  # claimed: the decoder will not undo it
    assert event == expected(PRESENCE)


def test_a_reader_that_catches_up_gets_built_events_again() -> None:
    """After a backlog, events are built on first read until the reader keeps up again."""
    decoder = Decoder()
    window = _decode._HOT_EVENTS
    backlog = [decoder.decode(encode(PRESENCE), binary=False) for _ in range(window + 1)]
    kinds = []
    for _ in range(2 * window + 1):
        event = decoder.decode(encode(PRESENCE), binary=False)
        kinds.append(built(event))
        assert event.raw == PRESENCE  # read as soon as decoded
    assert kinds[0] is False
    assert kinds[-1] is True
    assert all(event == expected(PRESENCE) for event in backlog)


@pytest.mark.parametrize("backlog", [False, True], ids=["built-by-decoder", "built-on-read"])
def test_a_typed_read_keeps_the_text_for_raw_and_data(backlog: bool) -> None:
    """Reading a typed field first keeps the text instead of raw's dicts; raw and data come
    from the text when asked, equal to the message, and the typed objects stay the same."""
    decoder = Decoder()
    count = _decode._HOT_EVENTS + 2 if backlog else 1
    events = [decoder.decode(encode(PRESENCE), binary=False) for _ in range(count)]
    event = events[0]  # with a backlog, out of the decoder's window: back to its text
    assert isinstance(event, PresenceUpdate)
    presence = event.presence
    assert presence is not None
    assert not hasattr(event, "_raw")
    assert event._text is not None
    assert event.raw == PRESENCE
    assert event.data is event.raw["d"]
    assert event._text is None  # whole now: the text is gone
    assert event.presence is presence
    assert event == expected(PRESENCE)


def test_a_typed_event_pickles_with_what_was_changed_in_it() -> None:
    """A change made inside a typed field that was read survives pickle and deepcopy."""
    event = Decoder().decode(encode(PRESENCE), binary=False)
    assert isinstance(event, PresenceUpdate)
    assert event.presence is not None
    event.presence.description = "changed"
    for twin in (pickle.loads(pickle.dumps(event)), copy.deepcopy(event)):
        assert isinstance(twin, PresenceUpdate)
        assert twin.presence is not None
        assert twin.presence.description == "changed"
        assert twin.raw == PRESENCE
        assert twin._nbytes == event._nbytes


def test_an_event_pickled_by_0_2_0_unread_loads_unread() -> None:
    """0.2.0 pickled an unread event as name, text and size (no _lazy): it loads unread."""
    event = Decoder().decode(encode(PRESENCE), binary=False)
    old_state = (None, {"_name": event.name, "_text": event._text, "_nbytes": event._nbytes})
    twin = PresenceUpdate.__new__(PresenceUpdate)
    twin.__setstate__(old_state)
    assert unread(twin)
    assert twin == expected(PRESENCE)


def test_threads_reading_different_fields_first_agree_on_one_object_each() -> None:
    """One thread reading presence first and another reading raw first, on the same events
    at once, see one presence and one raw per event."""
    decoder = Decoder()
    events = [decoder.decode(encode(PRESENCE), binary=False) for _ in range(2000)]
    seen: list[list[tuple[int, int]]] = [[], []]
    start = threading.Barrier(2, timeout=T)

    def typed_first(out: list[tuple[int, int]]) -> None:
        start.wait()
        for event in events:
            presence = id(event.presence)  # type: ignore[attr-defined]
            out.append((presence, id(event.raw)))

    def raw_first(out: list[tuple[int, int]]) -> None:
        start.wait()
        for event in events:
            raw = id(event.raw)
            out.append((id(event.presence), raw))  # type: ignore[attr-defined]

    threads = [
        threading.Thread(target=typed_first, args=(seen[0],)),
        threading.Thread(target=raw_first, args=(seen[1],)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(T)
    assert seen[0] == seen[1]
    assert all(e == expected(PRESENCE) for e in events)


def test_two_threads_reading_one_event_get_the_same_objects() -> None:
    """A callback and get_event() reading one event at once see one raw, one data, one presence."""
    decoder = Decoder()
    events = [decoder.decode(encode(PRESENCE), binary=False) for _ in range(2000)]
    seen: list[list[tuple[int, int, int]]] = [[], []]
    start = threading.Barrier(2, timeout=T)

    def read(out: list[tuple[int, int, int]]) -> None:
        start.wait()
        for event in events:
            out.append((id(event.presence), id(event.raw), id(event.data)))  # type: ignore[attr-defined]

    threads = [threading.Thread(target=read, args=(out,)) for out in seen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(T)
    assert seen[0] == seen[1]
    assert all(e.raw["d"] is e.data for e in events)


SIGNAL_CHILD = r"""
import json, signal, sys
from hatsu_sync._decode import Decoder

text = sys.stdin.read().encode()
decoder = Decoder()
latest = [decoder.decode(text, False)]

def on_alarm(signum, frame):
    # Read a fresh event (its first read takes the commit lock) while the main thread may be
    # inside a first read of its own, holding that lock.
    decoder.decode(text, False).presence

signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
for _ in range(30):
    # Past the decoder's window of built events: each first read below builds from the text,
    # calling the builder while it holds the commit lock (where a signal handler can run).
    batch = [decoder.decode(text, False) for _ in range(600)]
    for event in batch:
        event.presence
signal.setitimer(signal.ITIMER_REAL, 0)
print("done")
"""


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="no setitimer (Windows)")
def test_a_signal_handler_reading_an_event_during_a_first_read_does_not_deadlock() -> None:
    """A handler that reads an event while the main thread is inside a first read (thousands
    of timer signals) neither deadlocks nor breaks the events."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, "-c", SIGNAL_CHILD],
        input=json.dumps(PRESENCE),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"


# --- memory and garbage, in a child process -------------------------------------------------

CHILD = r"""
import gc, json, sys, tracemalloc
from hatsu_sync._decode import Decoder

mode, count = sys.argv[1], int(sys.argv[2])
template = json.dumps(json.loads(sys.stdin.read())).encode()
decoder = Decoder()
gc.collect()
objects_before = len(gc.get_objects())
tracemalloc.start()
# A fresh bytes object per message, as the transport hands them over, made inside the trace.
events = []
for _ in range(count):
    event = decoder.decode(bytes(bytearray(template)), False)
    if mode == "typed":  # as a callback that reads a typed field, the event kept buffered
        event.presence
    elif mode == "whole":
        event.raw
    events.append(event)
current, _ = tracemalloc.get_traced_memory()
tracemalloc.stop()
gc.collect()
tracked = len(gc.get_objects()) - objects_before
print(json.dumps({
    "bytes_per_event": current / count,
    "tracked_per_event": tracked / count,
    "nbytes": events[0]._nbytes,
    "name": events[0].name,
}))
"""


def run_child(msg: dict[str, Any], count: int, mode: str = "unread") -> dict[str, Any]:
    """Decode ``count`` copies of ``msg`` in a fresh interpreter that keeps them all (and,
    in mode "typed", reads each one's ``presence`` at once, in mode "whole" its ``raw``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(count)],
        input=json.dumps(msg),
        capture_output=True,
        text=True,
        env=env,
        timeout=T * 12,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


def test_a_buffered_presence_update_costs_under_1000_bytes_and_one_gc_object() -> None:
    """20,000 unread PRESENCE_UPDATEs hold under 1,000 bytes and ~1 GC-tracked object each."""
    result = run_child(PRESENCE, 20_000)
    assert result["name"] == "PRESENCE_UPDATE"
    assert result["bytes_per_event"] <= 1000, result
    # One object per event, plus the parsed messages of the decoder's recent window.
    assert result["tracked_per_event"] < 1.2, result


def test_an_event_kept_after_its_typed_field_was_read_holds_no_dict_of_raw() -> None:
    """20,000 PRESENCE_UPDATEs kept after a read of ``presence`` (a callback's, with the event
    still buffered for get_event()) hold the event, its typed objects and the text, but none of
    raw's three nested dicts: three GC-tracked objects and some 900 bytes fewer each than
    events whose raw was read (4 and ~1,470 on Python 3.11+; 3.9 and 3.10 add the typed
    objects' instance dicts)."""
    typed = run_child(PRESENCE, 20_000, "typed")
    whole = run_child(PRESENCE, 20_000, "whole")
    assert typed["tracked_per_event"] <= whole["tracked_per_event"] - 2.9, (typed, whole)
    assert typed["bytes_per_event"] <= whole["bytes_per_event"] - 500, (typed, whole)
    if sys.version_info >= (3, 11):
        assert typed["tracked_per_event"] < 4.2, typed


def test_retained_memory_follows_the_message_size() -> None:
    """A 1 MiB message of `{}` objects keeps about 1 MiB, not the ~25 MiB its parse makes."""
    channels = [{}] * (2**20 // 3)
    msg = {"t": "GUILD_INIT", "d": {"_id": "9", "channels": channels}}
    result = run_child(msg, 2)
    assert result["name"] == "GUILD_INIT"
    assert result["nbytes"] > 2**20
    assert result["bytes_per_event"] <= result["nbytes"] * 1.05 + 1000, result


def test_decoded_misfit_guild_init_is_a_base_event() -> None:
    """A GUILD_INIT whose channels hold a null is decoded as a base Event, as built at once."""
    msg = {"t": "GUILD_INIT", "d": {"_id": "9", "channels": [{"id": "1"}, None]}}
    event = Decoder().decode(encode(msg), binary=False)
    assert type(event) is Event
    assert event == expected(msg)
    good = Decoder().decode(encode(MESSAGES[4]), binary=False)
    assert isinstance(good, GuildInit)
