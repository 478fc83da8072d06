"""The throughput contenders: each reads one stream of PRESENCE_UPDATE and builds a typed object
from every message; each returns its count and rate (see :class:`Clock`).

- ``hatsu-get``: hatsu_sync through ``get_event()``, reading each event's typed ``presence``
  (the library builds an event's fields on first read, if not at once);
- ``hatsu-callback``: the same through a callback (the steadiness rounds use it);
- ``websockets``: the websockets sync client, ``json.loads`` and the peers' dataclasses;
- ``ws-recv``: a websocket-client ``recv()`` loop, the same parse and build;
- ``run-forever``: websocket-client's ``WebSocketApp.run_forever``, the same in ``on_message``;
- ``naive``: ``run_forever`` and dataclasses-json's ``from_dict`` (the card's packages used
  naively);
- ``limit``: the peers' parse and build over the pre-encoded stream, with no I/O and no thread.

The websocket-client contenders run with ``skip_utf8_validation=True``, as hatsu_sync does
(its pure-Python UTF-8 check costs ~5x); ``json.loads`` still rejects invalid UTF-8. The clock
starts at the first message and stops at the close frame after the last. Every wait has a
timeout and every connection is closed.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

import payloads
import peers

from hatsu_sync import Client, GatewayClosed

__all__ = ["FUNCTIONS", "SESSION", "WAIT", "Clock", "identify", "limit"]

SESSION = "bench-session"
#: Bounds every wait: a benchmark that stalls fails instead of hanging.
WAIT = 120.0


def identify(encoding: str) -> str:
    """The identify message the load generator expects first."""
    return json.dumps({"session_id": SESSION, "encoding": encoding})


class Clock:
    """Counts messages; remembers when the first came and when the stream ended, by the wall
    clock and by this process's CPU time (which other processes' load does not inflate)."""

    __slots__ = ("count", "cpu_end", "cpu_start", "end", "start")

    def __init__(self) -> None:
        self.count = 0
        self.start = self.end = self.cpu_start = self.cpu_end = 0.0

    def begin(self) -> None:
        """The first message is here."""
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()

    def stop(self) -> None:
        """The stream ended."""
        self.end = time.perf_counter()
        self.cpu_end = time.process_time()

    def result(self, **extra: Any) -> dict[str, Any]:
        """The count, the seconds and the rates (per wall second and per CPU second of the
        process); the first message starts the clock, so n messages span n - 1 intervals."""
        elapsed = self.end - self.start
        cpu = self.cpu_end - self.cpu_start
        done = self.count - 1
        return {
            "events": self.count,
            "seconds": elapsed,
            "rate": done / elapsed if done > 0 and elapsed > 0 else 0.0,
            "cpu_rate": done / cpu if done > 0 and cpu > 0 else 0.0,
            **extra,
        }


def _typed(event: Any) -> None:
    """Read the typed object of a hatsu_sync PRESENCE_UPDATE, as an application does.

    hatsu_sync may build an event's fields on first read (an unread backlog then costs only
    its text): the contenders that build a typed object from every message are matched by
    reading it from every event.

    Raises:
        AssertionError: the event has no presence.
    """
    if event.presence is None:
        raise AssertionError(f"a {event.name} without its presence")


def hatsu_get(url: str, encoding: str, kind: str) -> dict[str, Any]:
    """hatsu_sync, pulling with ``get_event()`` and reading each event's typed object."""
    clock = Clock()
    client = Client(SESSION, url=url, encoding=encoding, reconnect=False)
    try:
        client.connect()
        get = client.get_event
        _typed(get(WAIT))
        clock.begin()
        clock.count = 1
        try:
            while True:
                _typed(get(WAIT))
                clock.count += 1
        except GatewayClosed:
            clock.stop()
        stats = client.stats
    finally:
        client.close()
    return clock.result(dropped=stats.events_dropped)


def hatsu_callback(url: str, encoding: str, kind: str) -> dict[str, Any]:
    """hatsu_sync, a callback for the stream's event name reading each event's typed object."""
    clock = Clock()
    done = threading.Event()
    client = Client(SESSION, url=url, encoding=encoding, reconnect=False)

    def on_event(event: Any) -> None:
        if not clock.count:
            clock.begin()
        _typed(event)
        clock.count += 1

    def on_disconnect(info: Any) -> None:
        clock.stop()
        done.set()

    client.on(payloads.EVENT_NAMES[kind], on_event)
    client.on("disconnect", on_disconnect)
    try:
        client.connect()
        if not done.wait(WAIT):
            raise TimeoutError("the stream did not end")
        stats = client.stats
    finally:
        client.close()
    return clock.result(dropped=stats.callbacks_dropped)


def websockets_sync(url: str, encoding: str, kind: str) -> dict[str, Any]:
    """The websockets sync client, ``json.loads`` (after inflating) and the peers' dataclasses."""
    from websockets.exceptions import ConnectionClosedOK
    from websockets.sync.client import connect

    clock = Clock()
    parse = peers.parser(encoding)
    with connect(url, compression=None, max_size=None, proxy=None, open_timeout=WAIT) as ws:
        ws.send(identify(encoding))
        recv = ws.recv
        try:
            first = recv(WAIT)
            clock.begin()
            clock.count = 1
            parse(first)
            while True:
                parse(recv())
                clock.count += 1
        except ConnectionClosedOK:
            clock.stop()
    return clock.result()


def ws_recv(url: str, encoding: str, kind: str) -> dict[str, Any]:
    """A websocket-client ``recv()`` loop, the peers' parse and build."""
    import websocket

    ws = websocket.create_connection(url, skip_utf8_validation=True, timeout=WAIT)
    ws.settimeout(None)  # blocking reads, as hatsu_sync's; a socket timeout adds a poll per read
    clock = Clock()
    parse = peers.parser(encoding)
    try:
        ws.send(identify(encoding))
        recv = ws.recv
        message = recv()
        if message:  # "" on the close frame; no message of the streams is empty
            clock.begin()
            clock.count = 1
            parse(message)
            message = recv()
            while message:
                parse(message)
                clock.count += 1
                message = recv()
        clock.stop()
    finally:
        ws.close()
    return clock.result()


def _app(url: str, encoding: str, parse: Callable[[Any], object]) -> dict[str, Any]:
    """websocket-client's ``run_forever``, ``parse`` in its ``on_message``."""
    import websocket

    clock = Clock()

    errors: list[BaseException] = []

    def on_open(ws: Any) -> None:
        ws.send(identify(encoding))

    def on_message(ws: Any, message: Any) -> None:
        if not clock.count:
            clock.begin()
        try:
            parse(message)
        except Exception as exc:
            # run_forever would only pass it to on_error and carry on: fail the benchmark.
            errors.append(exc)
            ws.close()
        clock.count += 1

    def on_close(ws: Any, code: Any, reason: Any) -> None:
        clock.stop()

    app = websocket.WebSocketApp(url, on_open=on_open, on_message=on_message, on_close=on_close)
    app.run_forever(skip_utf8_validation=True)
    if errors:
        raise RuntimeError(f"parsing failed in on_message: {errors[0]!r}") from errors[0]
    return clock.result()


def run_forever(url: str, encoding: str, kind: str) -> dict[str, Any]:
    """websocket-client's ``run_forever``, the peers' parse and build in ``on_message``."""
    return _app(url, encoding, peers.parser(encoding))


def naive(url: str, encoding: str, kind: str) -> dict[str, Any]:
    """``run_forever`` and dataclasses-json's ``from_dict`` in ``on_message``."""
    return _app(url, encoding, peers.naive_parse(encoding))


def limit(count: int, encoding: str, kind: str) -> dict[str, Any]:
    """The peers' parse and build over ``count`` pre-encoded messages: no I/O, no thread."""
    stream = payloads.encoded_stream(kind, encoding, count)
    parse = peers.parser(encoding)
    clock = Clock()
    parse(stream[0])  # the clock starts at the first message, as for the others
    rest = stream[1:]
    clock.begin()
    for message in rest:
        parse(message)
    clock.stop()
    clock.count = count
    return clock.result()


#: The contenders that read a connection: name -> function(url, encoding, kind).
FUNCTIONS: dict[str, Callable[[str, str, str], dict[str, Any]]] = {
    "hatsu-get": hatsu_get,
    "hatsu-callback": hatsu_callback,
    "websockets": websockets_sync,
    "ws-recv": ws_recv,
    "run-forever": run_forever,
    "naive": naive,
}
