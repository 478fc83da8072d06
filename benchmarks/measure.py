"""The client side of the benchmarks: each subcommand measures one thing and prints one JSON line.

``benchmarks/run.py`` runs these in fresh subprocesses (so that one measurement's threads,
garbage and peak memory cannot leak into the next) against ``loadgen.py`` running in a process
of its own. They can be run by hand too, with the repository root on ``PYTHONPATH``::

    PYTHONPATH=. python benchmarks/measure.py models
    PYTHONPATH=. python benchmarks/measure.py throughput ws://127.0.0.1:PORT presence json 50000

Every wait here has a timeout, every client is closed, and every thread started ends.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import resource
import statistics
import sys
import threading
import time
import zlib
from typing import Any, Callable

import payloads

import hatsu_sync
from hatsu_sync import Client, GatewayClosed

__all__ = ["main"]

SESSION = "bench-session"
#: The event name of each payload kind, for callbacks registered by name.
EVENT_NAMES = {
    "presence": "PRESENCE_UPDATE",
    "guild_init": "GUILD_INIT",
    "notification": "NOTIFICATION",
}
#: The throughput contenders, in the order the tables show them.
CONTENDERS = ("ws-recv", "run-forever", "websockets", "hatsu-get", "hatsu-callback")
# Messages per timed zlib stream.
_ZLIB_STREAM = 100
# Bounds every wait: a benchmark that stalls fails instead of hanging.
_WAIT = 120.0


def stream_url(base: str, mode: str, kind: str, encoding: str, count: int, rate: float = 0) -> str:
    """The load generator URL that asks for one stream."""
    url = f"{base}/?mode={mode}&kind={kind}&encoding={encoding}&count={count}"
    return f"{url}&rate={rate}" if rate else url


def _identify(encoding: str) -> str:
    return json.dumps({"session_id": SESSION, "encoding": encoding})


def _rss_mb() -> float:
    """The current resident set size, from /proc (Linux)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class _Clock:
    """Counts messages; remembers when the first came and when the stream ended."""

    __slots__ = ("count", "end", "start")

    def __init__(self) -> None:
        self.count = 0
        self.start = 0.0
        self.end = 0.0

    def result(self, **extra: Any) -> dict[str, Any]:
        # The first message starts the clock, so n messages span n - 1 intervals.
        elapsed = self.end - self.start
        rate = (self.count - 1) / elapsed if self.count > 1 and elapsed > 0 else 0.0
        return {"events": self.count, "seconds": elapsed, "rate": rate, **extra}


# -- throughput contenders -------------------------------------------------------------------------


def ws_recv(url: str, encoding: str, kind: str) -> dict[str, Any]:
    """A bare websocket-client ``recv()`` loop, counting only."""
    import websocket

    ws = websocket.create_connection(url, skip_utf8_validation=True, timeout=_WAIT)
    ws.settimeout(None)  # blocking reads, as hatsu_sync's; a socket timeout adds a poll per read
    clock = _Clock()
    perf = time.perf_counter
    try:
        ws.send(_identify(encoding))
        recv = ws.recv
        if recv():  # "" on the close frame; no message of the streams is empty
            clock.start = perf()
            clock.count = 1
            while recv():
                clock.count += 1
        clock.end = perf()
    finally:
        ws.close()
    return clock.result()


def run_forever(url: str, encoding: str, kind: str) -> dict[str, Any]:
    """websocket-client's ``WebSocketApp.run_forever``, its ``on_message`` counting only."""
    import websocket

    clock = _Clock()
    perf = time.perf_counter

    def on_open(ws: Any) -> None:
        ws.send(_identify(encoding))

    def on_message(ws: Any, message: Any) -> None:
        if not clock.count:
            clock.start = perf()
        clock.count += 1

    def on_close(ws: Any, code: Any, reason: Any) -> None:
        clock.end = perf()

    app = websocket.WebSocketApp(url, on_open=on_open, on_message=on_message, on_close=on_close)
    app.run_forever(skip_utf8_validation=True)
    return clock.result()


def websockets_sync(url: str, encoding: str, kind: str) -> dict[str, Any]:
    """The websockets sync client, with ``json.loads`` (after inflating, in zlib mode)."""
    from websockets.exceptions import ConnectionClosedOK
    from websockets.sync.client import connect

    clock = _Clock()
    perf = time.perf_counter
    loads = json.loads
    inflater = zlib.decompressobj()

    def inflate(data: str | bytes) -> bytes:
        assert isinstance(data, bytes)  # zlib mode: binary messages
        return inflater.decompress(data)

    with connect(url, compression=None, max_size=None, proxy=None, open_timeout=_WAIT) as ws:
        ws.send(_identify(encoding))
        recv = ws.recv
        try:
            first = recv(_WAIT)
            clock.start = perf()
            clock.count = 1
            loads(inflate(first) if encoding == "zlib" else first)
            if encoding == "zlib":
                while True:
                    loads(inflate(recv()))
                    clock.count += 1
            else:
                while True:
                    loads(recv())
                    clock.count += 1
        except ConnectionClosedOK:
            clock.end = perf()
    return clock.result()


def hatsu_get(url: str, encoding: str, kind: str) -> dict[str, Any]:
    """hatsu_sync, pulling with ``get_event()``."""
    clock = _Clock()
    perf = time.perf_counter
    client = Client(SESSION, url=url, encoding=encoding, reconnect=False)
    try:
        client.connect()
        get = client.get_event
        get(_WAIT)
        clock.start = perf()
        clock.count = 1
        try:
            while True:
                get(_WAIT)
                clock.count += 1
        except GatewayClosed:
            clock.end = perf()
        stats = client.stats
    finally:
        client.close()
    return clock.result(dropped=stats.events_dropped)


def hatsu_callback(url: str, encoding: str, kind: str) -> dict[str, Any]:
    """hatsu_sync, a callback registered for the stream's event name, counting only."""
    clock = _Clock()
    perf = time.perf_counter
    done = threading.Event()
    client = Client(SESSION, url=url, encoding=encoding, reconnect=False)

    @client.on(EVENT_NAMES[kind])
    def on_event(event: Any) -> None:
        if not clock.count:
            clock.start = perf()
        clock.count += 1

    @client.on("disconnect")
    def on_disconnect(info: Any) -> None:
        clock.end = perf()
        done.set()

    try:
        client.connect()
        if not done.wait(_WAIT):
            raise TimeoutError("the stream did not end")
        stats = client.stats
    finally:
        client.close()
    return clock.result(dropped=stats.callbacks_dropped)


CONTENDER_FUNCTIONS: dict[str, Callable[[str, str, str], dict[str, Any]]] = {
    "ws-recv": ws_recv,
    "run-forever": run_forever,
    "websockets": websockets_sync,
    "hatsu-get": hatsu_get,
    "hatsu-callback": hatsu_callback,
}


def throughput(base: str, kind: str, encoding: str, count: int, order: list[str]) -> None:
    """Each contender in ``order`` reads its own connection of ``count`` messages."""
    results = {}
    for name in order:
        gc.collect()
        url = stream_url(base, "flood", kind, encoding, count)
        results[name] = CONTENDER_FUNCTIONS[name](url, encoding, kind)
        seen = results[name]["events"] + results[name].get("dropped", 0)
        if seen != count:
            raise RuntimeError(f"{name} saw {seen} of {count} messages")
    _emit(results)


# -- latency ---------------------------------------------------------------------------------------


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000

    return {"p50": at(0.50), "p99": at(0.99), "max": ordered[-1] * 1000, "n": len(ordered)}


def latency(base: str, path: str, encoding: str, rate: float, seconds: float) -> None:
    """Latency from the gateway's send to ``get_event()`` returning or to callback entry."""
    count = int(rate * seconds)
    warmup = min(50, count // 10)  # the connection's first messages are not steady state
    url = stream_url(base, "rate", "presence", encoding, count, rate)
    samples: list[float] = []
    monotonic = time.monotonic
    client = Client(SESSION, url=url, encoding=encoding, reconnect=False)
    done = threading.Event()
    if path == "callback":

        @client.on("PRESENCE_UPDATE")
        def on_event(event: Any) -> None:
            samples.append(monotonic() - event.raw["ts"])

        @client.on("disconnect")
        def on_disconnect(info: Any) -> None:
            done.set()

    try:
        client.connect()
        if path == "callback":
            if not done.wait(seconds + _WAIT):
                raise TimeoutError("the stream did not end")
        else:
            get = client.get_event
            try:
                while True:
                    event = get(_WAIT)
                    samples.append(monotonic() - event.raw["ts"])
            except GatewayClosed:
                pass
    finally:
        client.close()
    if len(samples) != count:
        raise RuntimeError(f"{len(samples)} of {count} events arrived")
    _emit(_percentiles(samples[warmup:]))


# -- memory, idle clients, idle CPU ----------------------------------------------------------------


def memory(base: str, count: int) -> None:
    """Peak RSS of a fresh process holding ``count`` PRESENCE_UPDATE events that nobody pulls."""
    url = stream_url(base, "flood", "presence", "json", count)
    client = Client(SESSION, url=url, reconnect=False, max_queue=count)
    gc.collect()
    base_rss = _rss_mb()
    try:
        client.connect()
        with contextlib.suppress(GatewayClosed):
            client.wait(_WAIT)  # the load generator closes after the last message
        stats = client.stats
        buffered = stats.events_received - stats.events_dropped
        rss = _rss_mb()
    finally:
        client.close()
    if buffered != count:
        raise RuntimeError(f"{buffered} of {count} events buffered")
    _emit(
        {
            "buffered": buffered,
            "base_rss_mb": base_rss,
            "rss_mb": rss,
            "peak_rss_mb": _peak_rss_mb(),
            "bytes_per_event": (rss - base_rss) * 2**20 / count,
        }
    )


def idle_clients(base: str, n: int) -> None:
    """Threads and RSS of one process with ``n`` connected, idle clients."""
    url = stream_url(base, "idle", "presence", "json", 0)
    gc.collect()
    base_threads = threading.active_count()
    base_rss = _rss_mb()
    clients = [Client(SESSION, url=url) for _ in range(n)]
    try:
        for client in clients:
            client.connect()
        threads = threading.active_count()
        rss = _rss_mb()
    finally:
        for client in clients:
            client.close()
    _emit(
        {
            "clients": n,
            "threads": threads,
            "threads_per_client": (threads - base_threads) / n,
            "rss_mb": rss,
            "rss_per_client_kb": (rss - base_rss) * 1024 / n,
        }
    )


def idle_cpu(base: str, seconds: float) -> None:
    """CPU time and wake-ups of a process whose one client sits connected and idle."""
    url = stream_url(base, "idle", "presence", "json", 0)
    with Client(SESSION, url=url) as client:
        assert client.state is hatsu_sync.State.CONNECTED
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.monotonic()
        time.sleep(seconds)  # the measurement window, not a synchronisation
        after = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.monotonic() - start
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    switches = (after.ru_nvcsw - before.ru_nvcsw) + (after.ru_nivcsw - before.ru_nivcsw)
    _emit(
        {"seconds": wall, "cpu_seconds": cpu, "cpu_percent": 100 * cpu / wall, "switches": switches}
    )


# -- connect through discovery ---------------------------------------------------------------------


def serve_gateway() -> None:
    """Run a LocalGateway (in this process) until standard input closes; print its http URL."""
    from hatsu_sync.testing import LocalGateway

    with LocalGateway(ready_delay=0.0) as gateway:
        print(gateway.http_url, flush=True)
        sys.stdin.read()


def connect(http_url: str, n: int) -> None:
    """``connect()`` through discovery against a LocalGateway in another process."""
    samples = []
    for i in range(n + 1):
        client = Client(SESSION, gateway=http_url)
        start = time.perf_counter()
        client.connect()
        elapsed = time.perf_counter() - start
        client.close()
        if i:  # the first one pays for lazy imports and the first TCP connections
            samples.append(elapsed * 1000)
    _emit({"median_ms": statistics.median(samples), "min_ms": min(samples), "max_ms": max(samples)})


# -- model construction ----------------------------------------------------------------------------


def _per_call_us(function: Callable[[], object], budget: float) -> float:
    """Microseconds per call: the best of 5 timed loops, each about ``budget / 5`` seconds."""
    perf = time.perf_counter
    start = perf()
    function()
    one = max(perf() - start, 1e-7)
    loops = max(1, int(budget / 5 / one))
    best = math.inf
    for _ in range(5):
        start = perf()
        for _ in range(loops):
            function()
        best = min(best, (perf() - start) / loops)
    return best * 1e6


def models(budget: float) -> None:
    """Per event type: ``event_from_message``, ``Decoder.decode`` (json, zlib) and ``from_dict``."""
    _emit({kind: _model_costs(kind, budget) for kind in payloads.KINDS})


def _model_costs(kind: str, budget: float) -> dict[str, Any]:
    from hatsu_sync._decode import Decoder
    from hatsu_sync.models import event_from_message

    message = payloads.messages(kind)[0]
    text = payloads.encode(message)
    event = event_from_message(message)
    as_dict = event.to_dict(encode_json=False)
    model = type(event)
    json_decoder = Decoder("json")
    # The zlib path is timed over a whole stream: its messages only inflate in order.
    compressor = zlib.compressobj()
    stream = [
        compressor.compress(text) + compressor.flush(zlib.Z_FULL_FLUSH) for _ in range(_ZLIB_STREAM)
    ]

    def zlib_decode() -> list[object]:
        decode = Decoder("zlib").decode
        return [decode(data, True) for data in stream]

    if any(e != event for e in zlib_decode()) or model.from_dict(as_dict) != event:
        raise AssertionError("the paths built different events")
    return {
        "model": model.__name__,
        "bytes": len(text),
        "event_from_message_us": _per_call_us(lambda: event_from_message(message), budget),
        "decode_json_us": _per_call_us(lambda: json_decoder.decode(text, False), budget),
        "decode_zlib_us": _per_call_us(zlib_decode, budget) / _ZLIB_STREAM,
        "json_loads_us": _per_call_us(lambda: json.loads(text), budget),
        "from_dict_us": _per_call_us(lambda: model.from_dict(as_dict), budget),
    }


def _emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> None:
    """Parse the subcommand and run it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("throughput")
    p.add_argument("base")
    p.add_argument("kind", choices=list(payloads.KINDS))
    p.add_argument("encoding", choices=["json", "zlib"])
    p.add_argument("count", type=int)
    p.add_argument("--order", default=",".join(CONTENDERS))
    p = sub.add_parser("latency")
    p.add_argument("base")
    p.add_argument("path", choices=["get", "callback"])
    p.add_argument("encoding", choices=["json", "zlib"])
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--seconds", type=float, default=3.0)
    p = sub.add_parser("memory")
    p.add_argument("base")
    p.add_argument("count", type=int)
    p = sub.add_parser("idle-clients")
    p.add_argument("base")
    p.add_argument("n", type=int)
    p = sub.add_parser("idle-cpu")
    p.add_argument("base")
    p.add_argument("seconds", type=float)
    sub.add_parser("gateway")
    p = sub.add_parser("connect")
    p.add_argument("http_url")
    p.add_argument("n", type=int)
    p = sub.add_parser("models")
    p.add_argument("--budget", type=float, default=0.5)
    args = parser.parse_args(argv)

    if args.command == "throughput":
        throughput(args.base, args.kind, args.encoding, args.count, args.order.split(","))
    elif args.command == "latency":
        latency(args.base, args.path, args.encoding, args.rate, args.seconds)
    elif args.command == "memory":
        memory(args.base, args.count)
    elif args.command == "idle-clients":
        idle_clients(args.base, args.n)
    elif args.command == "idle-cpu":
        idle_cpu(args.base, args.seconds)
    elif args.command == "gateway":
        serve_gateway()
    elif args.command == "connect":
        connect(args.http_url, args.n)
    else:
        models(args.budget)


if __name__ == "__main__":
    main()
