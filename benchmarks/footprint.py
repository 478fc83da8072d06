"""What a client costs besides speed: memory per buffered event, garbage left for the cyclic
collector, threads, idle CPU, and how fast a dead peer is noticed.

Each function runs in a fresh process started by ``measure.py`` and returns one dict of
figures. Every wait has a timeout, every client is closed, and every thread started ends.
"""

from __future__ import annotations

import contextlib
import gc
import re
import resource
import threading
import time
import weakref
from collections import Counter
from typing import Any

from contenders import SESSION, WAIT
from loadgen import raise_fd_limit

from hatsu_sync import Client, ConnectError, GatewayClosed, State

__all__ = ["cycles", "dead_peer", "idle_clients", "memory", "stream_url"]


def stream_url(base: str, mode: str, kind: str, encoding: str, count: int, rate: float = 0) -> str:
    """The load generator URL that asks for one stream."""
    url = f"{base}/?mode={mode}&kind={kind}&encoding={encoding}&count={count}"
    return f"{url}&rate={rate}" if rate else url


def _status(field: str) -> int:
    """A number from /proc/self/status (Linux): ``VmRSS`` in KiB, ``Threads``, ..."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _rss_mb() -> float:
    return _status("VmRSS") / 1024


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu() -> tuple[float, int]:
    """CPU seconds (user + system) and context switches of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_nvcsw + usage.ru_nivcsw


# -- memory per buffered event -----------------------------------------------------------------


def memory(base: str, count: int) -> dict[str, Any]:
    """Peak RSS of this (fresh) process holding ``count`` PRESENCE_UPDATE nobody pulls."""
    url = stream_url(base, "flood", "presence", "json", count)
    client = Client(SESSION, url=url, reconnect=False, max_queue=count)
    gc.collect()
    base_rss = _rss_mb()
    base_tracked = len(gc.get_objects())
    try:
        client.connect()
        with contextlib.suppress(GatewayClosed):
            client.wait(WAIT)  # the load generator closes after the last message
        stats = client.stats
        buffered = stats.events_received - stats.events_dropped
        rss = _rss_mb()
        peak = _peak_rss_mb()
        # After the RSS figures: the list gc.get_objects() makes takes memory of its own.
        tracked = len(gc.get_objects()) - base_tracked
    finally:
        client.close()
    if buffered != count:
        raise RuntimeError(f"{buffered} of {count} events buffered")
    return {
        "buffered": buffered,
        "base_rss_mb": base_rss,
        "rss_mb": rss,
        "peak_rss_mb": peak,
        "bytes_per_event": (rss - base_rss) * 2**20 / count,
        "tracked_per_event": tracked / count,
    }


# -- reference cycles ----------------------------------------------------------------------------


def cycles(base: str, count: int) -> dict[str, Any]:
    """What ``gc.collect()`` finds of a dropped client, pull style and callback style.

    The cyclic collector is off for the whole process, so the count ``gc.collect()`` returns is
    exactly what reference counting left behind. Each style runs once unmeasured first: the
    first client of a process pays for lazy imports and first-use caches, which are no garbage
    of any client.
    """
    gc.disable()
    results = {}
    for style in ("pull", "callback"):
        _dropped_client(base, style, min(count, 200))
        results[style] = _dropped_client(base, style, count)
    return results


def _dropped_client(base: str, style: str, count: int) -> dict[str, Any]:
    """Run one client through ``count`` events, close it, drop it, and collect."""
    gc.collect()
    threads_before = threading.active_count()
    url = stream_url(base, "burst", "presence", "json", count)
    tracked_before = len(gc.get_objects())
    # Room for every event; the callback queue also holds the "connect" notice.
    client = Client(SESSION, url=url, reconnect=False, max_queue=count + 10)
    arrived = threading.Event()
    seen = [0]

    def on_event(event: Any) -> None:
        # A callback that uses its events: reading builds what the library left for it.
        if event.presence is not None:
            seen[0] += 1
        if seen[0] == count:
            arrived.set()

    if style == "callback":
        client.on("PRESENCE_UPDATE", on_event)
    try:
        client.connect()
        if style == "callback":
            deadline = time.monotonic() + WAIT
            # A dropped event would never arrive: look at the counters now and then.
            while not arrived.wait(0.5):
                if client.stats.callbacks_dropped or time.monotonic() > deadline:
                    raise RuntimeError(f"{seen[0]} of {count} events reached the callback")
        else:
            for _ in range(count):
                # No bound method kept (it would hold the client); each event read, as used.
                if client.get_event(WAIT).presence is None:
                    raise AssertionError("a PRESENCE_UPDATE without its presence")
        stats = client.stats
        # Callback style: every event is still buffered for get_event() too.
        per_event = (len(gc.get_objects()) - tracked_before) / count
    finally:
        client.close()
    if stats.events_dropped or stats.callbacks_dropped:
        raise RuntimeError(f"events were dropped: {stats}")
    reference = weakref.ref(client)
    del client
    freed = reference() is None
    # First find what is left without freeing it, to name it; then the real collection, timed:
    # that pause is what would land in the user's program whenever the collector runs.
    gc.set_debug(gc.DEBUG_SAVEALL)
    found = gc.collect()
    kinds = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage)
    gc.set_debug(0)
    gc.garbage.clear()
    start = time.perf_counter()
    gc.collect()
    pause = time.perf_counter() - start
    return {
        "style": style,
        "events": count,
        "found": found,
        "kinds": dict(kinds.most_common(6)),
        "pause_ms": pause * 1000,
        "freed_by_refcount": freed,
        "tracked_per_event": per_event,
        "threads_left": threading.active_count() - threads_before,
    }


# -- threads, idle clients, idle CPU ---------------------------------------------------------------


def _thread_kinds() -> Counter[str]:
    # "Thread-12 (run)" and "Thread-13 (run)" are one kind of thread.
    return Counter(re.sub(r"\d+", "N", t.name) for t in threading.enumerate())


def _threads_settled(expected: int, within: float = 1.0) -> int:
    """The OS threads of this process, once they are down to ``expected`` or after ``within``
    seconds: a thread that ``join()`` saw end may still be leaving the kernel for a moment."""
    deadline = time.monotonic() + within
    while True:
        threads = _status("Threads")
        if threads <= expected or time.monotonic() >= deadline:
            return threads
        time.sleep(0.01)  # polling the kernel's count; there is nothing to wait on


def _idle(seconds: float) -> dict[str, float]:
    before, switches_before = _cpu()
    start = time.monotonic()
    time.sleep(seconds)  # the measurement window, not a synchronisation
    wall = time.monotonic() - start
    after, switches_after = _cpu()
    return {
        "seconds": wall,
        "cpu_seconds": after - before,
        "cpu_percent": 100 * (after - before) / wall,
        "switches": switches_after - switches_before,
    }


def idle_clients(base: str, n: int, interval: float) -> dict[str, Any]:
    """Threads, RSS and idle CPU of this process with one, then ``n``, idle connected clients.

    The clients ping every ``interval`` seconds (the default, 15, in the full run), with a
    ``ping_timeout`` of two thirds of it (the default ratio). Idle CPU is measured over one
    ping interval, so that it holds one ping and pong of every client whatever their phases:
    1.1 intervals right after the first client connects, then one interval once all are
    connected. Threads per client is the slope between one client and ``n``, so threads shared
    by every client of a process (a common keepalive timer, say) are counted apart. If the
    machine cannot hold ``n`` connections, it measures as many as connected and says why.
    """
    fd_limit = raise_fd_limit()
    url = stream_url(base, "idle", "presence", "json", 0)
    settings = {"url": url, "ping_interval": interval, "ping_timeout": interval * 2 / 3}
    with Client(SESSION, **settings):  # the first client pays for lazy imports and caches
        pass
    gc.collect()
    base_threads = _status("Threads")
    base_kinds = _thread_kinds()
    base_rss = _rss_mb()
    clients: list[Client] = []
    stopped = ""
    try:
        client = Client(SESSION, **settings)
        client.connect()
        clients.append(client)
        one_threads = _status("Threads")
        one = _idle(interval * 1.1)
        start = time.perf_counter()
        for i in range(1, n):
            client = Client(SESSION, **settings)
            try:
                client.connect(timeout=30.0)
            except ConnectError as exc:
                stopped = f"connect() of client {i + 1} failed: {exc} (open files limit {fd_limit})"
                break
            clients.append(client)
        connected = time.perf_counter() - start
        if not all(c.state is State.CONNECTED for c in clients):
            raise RuntimeError("an idle client lost its connection")
        threads = _status("Threads")
        rss = _rss_mb()
        kinds = _thread_kinds() - base_kinds
        many = _idle(interval)
        if not all(c.state is State.CONNECTED for c in clients):
            raise RuntimeError("an idle client lost its connection")
    finally:
        start = time.perf_counter()
        for client in clients:
            client.close()
        closing = time.perf_counter() - start
    k = len(clients)
    per_client = (threads - one_threads) / (k - 1) if k > 1 else float(one_threads - base_threads)
    return {
        "wanted": n,
        "clients": k,
        "stopped": stopped,
        "ping_interval": interval,
        "threads": threads,
        "base_threads": base_threads,
        "threads_per_client": per_client,
        "shared_threads": one_threads - base_threads - per_client,
        "thread_kinds": dict(kinds),
        "rss_mb": rss,
        "rss_per_client_kb": (rss - base_rss) * 1024 / k,
        "connect_seconds": connected,
        "close_seconds": closing,
        "threads_after_close": _threads_settled(base_threads) - base_threads,
        "one": one,
        "many": many,
    }


def dead_peer(base: str, n: int, interval: float, timeout: float) -> dict[str, Any]:
    """Seconds from ``connect()`` returning to the ``"disconnect"`` callback, for ``n`` clients
    of one process whose gateway goes silent after the identify (no pong, no close frame)."""
    raise_fd_limit()
    url = stream_url(base, "silent", "presence", "json", 0)
    clients: list[Client] = []
    connected: list[float] = []
    lost: list[float] = []
    reasons: list[str] = []
    events: list[threading.Event] = []
    perf = time.perf_counter
    try:
        for i in range(n):
            client = Client(
                SESSION, url=url, ping_interval=interval, ping_timeout=timeout, reconnect=False
            )
            gone = threading.Event()
            events.append(gone)
            connected.append(0.0)
            lost.append(0.0)
            reasons.append("")

            def on_disconnect(info: Any, i: int = i, gone: threading.Event = gone) -> None:
                lost[i] = perf()
                reasons[i] = info.reason
                gone.set()

            client.on("disconnect", on_disconnect)
            clients.append(client)
            client.connect()
            connected[i] = perf()
        for gone in events:
            if not gone.wait(interval + timeout + WAIT):
                raise TimeoutError("a client never noticed its silent gateway")
    finally:
        for client in clients:
            client.close()
    detections = sorted(b - a for a, b in zip(connected, lost))
    return {
        "clients": n,
        "ping_interval": interval,
        "ping_timeout": timeout,
        "median_s": detections[len(detections) // 2],
        "max_s": detections[-1],
        "min_s": detections[0],
        "reasons": dict(Counter(reasons)),
    }
