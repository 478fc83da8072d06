"""The client side of the benchmarks: each subcommand measures one thing and prints one JSON line.

``benchmarks/run.py`` runs these in fresh subprocesses (so that one measurement's threads,
garbage and peak memory cannot leak into the next) against ``loadgen.py`` running in a process
of its own. They can be run by hand too, with the repository root on ``PYTHONPATH``::

    PYTHONPATH=. python benchmarks/measure.py models
    PYTHONPATH=. python benchmarks/measure.py throughput ws://127.0.0.1:PORT json 50000

The contenders are in ``contenders.py``, the memory, garbage, thread and idle measurements in
``footprint.py``. Every wait has a timeout, every client is closed, and every thread started
ends.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import sys
import threading
import time
import tracemalloc
import zlib
from typing import Any, Callable

import contenders
import footprint
import payloads
from contenders import SESSION, WAIT
from footprint import stream_url
from report import CONTENDERS

from hatsu_sync import Client, GatewayClosed

__all__ = ["main"]

# Messages per timed zlib stream.
_ZLIB_STREAM = 100
# Events held to weigh one event with tracemalloc (fewer of the big ones: tracing is slow).
_WEIGHED = 500
_WEIGHED_BYTES = 500_000


# -- throughput and steadiness -------------------------------------------------------------------


def throughput(
    base: str, encoding: str, count: int, naive_count: int, passes: int, order: list[str]
) -> None:
    """Each contender reads ``passes`` connections of ``count`` PRESENCE_UPDATE each (the naive
    one ``naive_count``: it is some fifty times slower); ``limit`` reads no connection.

    The passes go through ``order``, then back, and so on, so that every contender meets the
    machine's other work at several moments; a contender's figure is its best pass, as timeit
    takes its best loop. A ``gc.collect()`` before each pass starts it clean: garbage the one
    before left is not charged to it (the steadiness rounds measure that effect).
    """
    passes_of: dict[str, list[dict[str, Any]]] = {name: [] for name in order}
    for i in range(passes):
        for name in order if i % 2 == 0 else order[::-1]:
            gc.collect()
            n = naive_count if name == "naive" else count
            if name == "limit":
                passes_of[name].append(contenders.limit(n, encoding, "presence"))
                continue
            url = stream_url(base, "flood", "presence", encoding, n)
            got = contenders.FUNCTIONS[name](url, encoding, "presence")
            seen = got["events"] + got.get("dropped", 0)
            if seen != n:
                raise RuntimeError(f"{name} saw {seen} of {n} messages")
            passes_of[name].append(got)
    results = {}
    for name, got in passes_of.items():
        results[name] = {
            "rate": max(g["rate"] for g in got),
            "cpu_rate": max(g["cpu_rate"] for g in got),
            "rates": [g["rate"] for g in got],
        }
    _emit(results)


def steady(base: str, encoding: str, count: int, rounds: int) -> None:
    """``rounds`` rounds of a ``get_event()`` client then a callback client (the other way
    round every other round), one process, each client of ``count`` PRESENCE_UPDATE.

    No ``gc.collect()`` between them: whatever a closed client leaves to the cyclic collector
    lands, as in a user's program, in whichever run the collector happens to interrupt.

    Each round also times the no-I/O limit over the same messages (``contenders.limit``, one
    thread, no client): a control, which shows how steady the machine itself was meanwhile.
    """
    rates: dict[str, list[float]] = {"hatsu-get": [], "hatsu-callback": [], "control": []}
    cpu_rates: dict[str, list[float]] = {"hatsu-get": [], "hatsu-callback": [], "control": []}
    dropped: dict[str, int] = {"hatsu-get": 0, "hatsu-callback": 0}
    for i in range(rounds):
        order = ("hatsu-get", "hatsu-callback") if i % 2 == 0 else ("hatsu-callback", "hatsu-get")
        for name in order:
            url = stream_url(base, "flood", "presence", encoding, count)
            got = contenders.FUNCTIONS[name](url, encoding, "presence")
            if got["events"] + got["dropped"] != count:
                raise RuntimeError(f"{name} saw {got['events'] + got['dropped']} of {count}")
            rates[name].append(got["rate"])
            cpu_rates[name].append(got["cpu_rate"])
            dropped[name] += got["dropped"]
        control = contenders.limit(count, encoding, "presence")
        rates["control"].append(control["rate"])
        cpu_rates["control"].append(control["cpu_rate"])
    _emit({"rates": rates, "cpu_rates": cpu_rates, "dropped": dropped})


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
            if not done.wait(seconds + WAIT):
                raise TimeoutError("the stream did not end")
        else:
            get = client.get_event
            try:
                while True:
                    event = get(WAIT)
                    samples.append(monotonic() - event.raw["ts"])
            except GatewayClosed:
                pass
    finally:
        client.close()
    if len(samples) != count:
        raise RuntimeError(f"{len(samples)} of {count} events arrived")
    _emit(_percentiles(samples[warmup:]))


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
        "held_bytes": _held_bytes(Decoder("json").decode, text),  # a fresh decoder
    }


def _held_bytes(decode: Callable[[bytes, bool], Any], text: bytes) -> float:
    """Bytes that one decoded event keeps allocated once read, by tracemalloc, over up to
    :data:`_WEIGHED` events (as many as :data:`_WEIGHED_BYTES` of messages make, at least 20).

    Each event is decoded from a fresh copy of the message, as each arrives in its own buffer
    (an event that keeps the bytes it came from is charged for them), then read (``data`` and
    ``raw``), so that what the decoder may build only on first read is counted whatever it
    built in advance. What an unread event costs is the memory section's figure.
    """
    n = max(20, min(_WEIGHED, _WEIGHED_BYTES // len(text)))
    held: list[object] = [None] * n  # allocated before tracing starts
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            event = decode(bytes(bytearray(text)), False)
            # Reading data and raw builds what the decoder may have left for the first read.
            if event.data != event.raw.get("d"):
                raise AssertionError(f"{event.name}: data is not the message's d")
            held[i] = event
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / n


def _emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("throughput")
    p.add_argument("base")
    p.add_argument("encoding", choices=["json", "zlib"])
    p.add_argument("count", type=int)
    p.add_argument("--naive-count", type=int, default=1_000)
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--order", default=",".join(CONTENDERS))
    p = sub.add_parser("steady")
    p.add_argument("base")
    p.add_argument("encoding", choices=["json", "zlib"])
    p.add_argument("count", type=int)
    p.add_argument("rounds", type=int)
    p = sub.add_parser("latency")
    p.add_argument("base")
    p.add_argument("path", choices=["get", "callback"])
    p.add_argument("encoding", choices=["json", "zlib"])
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--seconds", type=float, default=3.0)
    p = sub.add_parser("memory")
    p.add_argument("base")
    p.add_argument("count", type=int)
    p = sub.add_parser("cycles")
    p.add_argument("base")
    p.add_argument("count", type=int)
    p = sub.add_parser("idle-clients")
    p.add_argument("base")
    p.add_argument("n", type=int)
    p.add_argument("--interval", type=float, default=15.0)
    p = sub.add_parser("dead-peer")
    p.add_argument("base")
    p.add_argument("n", type=int)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=0.5)
    sub.add_parser("gateway")
    p = sub.add_parser("connect")
    p.add_argument("http_url")
    p.add_argument("n", type=int)
    p = sub.add_parser("models")
    p.add_argument("--budget", type=float, default=0.5)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse the subcommand and run it."""
    args = _parser().parse_args(argv)
    command = args.command
    if command == "throughput":
        order = args.order.split(",")
        throughput(args.base, args.encoding, args.count, args.naive_count, args.passes, order)
    elif command == "steady":
        steady(args.base, args.encoding, args.count, args.rounds)
    elif command == "latency":
        latency(args.base, args.path, args.encoding, args.rate, args.seconds)
    elif command == "memory":
        _emit(footprint.memory(args.base, args.count))
    elif command == "cycles":
        _emit(footprint.cycles(args.base, args.count))
    elif command == "idle-clients":
        _emit(footprint.idle_clients(args.base, args.n, args.interval))
    elif command == "dead-peer":
        _emit(footprint.dead_peer(args.base, args.n, args.interval, args.timeout))
    elif command == "gateway":
        serve_gateway()
    elif command == "connect":
        connect(args.http_url, args.n)
    else:
        models(args.budget)


if __name__ == "__main__":
    main()
