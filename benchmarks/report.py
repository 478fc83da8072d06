"""The benchmarks' report: one table per section, then every target with PASS or FAIL.

Each ``_section`` function prints its table from the raw figures ``run.py`` gathered and returns
its targets as ``(issue, text, met)``. Nothing here measures anything.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable

__all__ = ["CONTENDERS", "LABELS", "PEERS", "report"]

#: The throughput contenders' names in the table, in its order.
LABELS = {
    "hatsu-get": "hatsu_sync get_event()",
    "websockets": "websockets sync client + json.loads + a dataclass",
    "ws-recv": "websocket-client recv() + the same",
    "run-forever": "websocket-client run_forever + the same",
    "naive": "run_forever + dataclasses-json from_dict (naive)",
    "limit": "the same parse + build, no I/O, no threads (the limit)",
}
#: The throughput contenders, in the order the table shows them.
CONTENDERS = tuple(LABELS)
#: The contenders that do I/O and are not hatsu_sync: "the best peer" is the fastest of them.
PEERS = ("websockets", "ws-recv", "run-forever", "naive")
ENCODINGS = ("json", "zlib")
Target = tuple[str, str, bool]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _table(header: list[str], rows: list[list[str]], left: bool = False) -> str:
    """An RST-style table: the first column left-aligned, the others right-aligned (numbers),
    or left-aligned too with ``left`` (text)."""
    rows = [r + [""] * (len(header) - len(r)) for r in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.ljust(w) if left else c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    return "\n".join([rule, line(header), rule, *(line(r) for r in rows), rule])


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def _title(text: str) -> None:
    print(f"\n{text}\n")


def _throughput(results: dict[str, Any]) -> list[Target]:
    runs = len(results["json"]["ratios"]["best"])
    _title(
        "Throughput: PRESENCE_UPDATE with an embed, every contender parsing each message and "
        f"building a typed object\nfrom it; events/s, median of {runs} run{'s' * (runs > 1)} "
        "(one fresh process per encoding, each contender's best of its passes)"
    )
    rows = []
    for name, label in LABELS.items():
        rows.append([label, *(f"{_median(results[e]['rates'][name]):,.0f}" for e in ENCODINGS)])
    for key, label in (
        ("best", "hatsu_sync / the best peer"),
        ("limit", "hatsu_sync / the limit"),
        ("best_cpu", "  (hatsu_sync / the best peer, per CPU second)"),
    ):
        rows.append([label, *(f"{_median(results[e]['ratios'][key]):.2f}x" for e in ENCODINGS)])
    print(_table(["contender", *ENCODINGS], rows))
    targets = []
    for encoding in ENCODINGS:
        ratio = _median(results[encoding]["ratios"]["best"])
        best = max(set(results[encoding]["best"]), key=results[encoding]["best"].count)
        targets.append(
            (
                "5",
                f"hatsu_sync get_event() against the best peer ({LABELS[best].split(' +')[0]}), "
                f"{encoding}: {ratio:.2f}x (target >= 1.20x)",
                ratio >= 1.2,
            )
        )
    return targets


def _steady(results: dict[str, Any]) -> list[Target]:
    first = results[ENCODINGS[0]]
    rounds, count = len(first["rates"]["hatsu-get"]), first["count"]
    _title(
        f"Steadiness: {rounds} interleaved rounds of a get_event() client and a callback client, "
        f"{count:,} PRESENCE_UPDATE\neach, in one process, with no gc.collect() between; events/s "
        "(and by CPU time, which other processes' load\ndoes not skew but a collector pause does). "
        "The control, not a target, is the no-I/O limit\ntimed in each round: how steady the "
        "machine itself was"
    )
    rows = []
    targets = []
    for encoding in ENCODINGS:
        medians = {}
        cpu_medians = {}
        for name, label in (("hatsu-get", "get_event()"), ("hatsu-callback", "callback")):
            rates = results[encoding]["rates"][name]
            cpu = results[encoding]["cpu_rates"][name]
            median, slowest = _median(rates), min(rates)
            medians[name], cpu_medians[name] = median, _median(cpu)
            rows.append(
                [
                    f"{label}, {encoding}",
                    f"{median:,.0f}",
                    f"{slowest:,.0f}",
                    _pct(slowest / median),
                    f"{max(rates):,.0f}",
                    _pct(min(cpu) / _median(cpu)),
                ]
            )
            targets.append(
                (
                    "3",
                    f"{label} slowest round, {encoding}: {_pct(slowest / median)} of its median "
                    "(target >= 80%)",
                    slowest >= 0.8 * median,
                )
            )
        ratio = medians["hatsu-callback"] / medians["hatsu-get"]
        cpu_ratio = cpu_medians["hatsu-callback"] / cpu_medians["hatsu-get"]
        rows.append(
            [
                f"callback / get_event(), {encoding}",
                f"{ratio:.2f}x",
                "",
                "",
                "",
                f"{cpu_ratio:.2f}x",
            ]
        )
        targets.append(
            (
                "3",
                f"callbacks against get_event(), {encoding}: {ratio:.2f}x (medians; "
                "target >= 0.90x)",
                ratio >= 0.9,
            )
        )
        control = results[encoding]["rates"].get("control")
        if control:  # not a target: how steady the machine itself was over the same rounds
            median = _median(control)
            control_cpu = results[encoding]["cpu_rates"]["control"]
            rows.append(
                [
                    f"  control: no I/O, {encoding}",
                    f"{median:,.0f}",
                    f"{min(control):,.0f}",
                    _pct(min(control) / median),
                    f"{max(control):,.0f}",
                    _pct(min(control_cpu) / _median(control_cpu)),
                ]
            )
        dropped = results[encoding]["dropped"]["hatsu-callback"]
        if dropped:
            rows.append([f"  (callback, {encoding}: {dropped:,} events dropped, queue full)"])
    header = ["path, stream", "median", "slowest", "slowest/median", "fastest", "by CPU time"]
    print(_table(header, rows))
    return targets


def _garbage(kinds: dict[str, int]) -> str:
    # The class names without their modules: "Embed", "lock", "WebSocket".
    return ", ".join(f"{n:,} {k.rsplit('.', 1)[-1]}" for k, n in list(kinds.items())[:5])


def _memory(memory: dict[str, Any] | None, cycles: dict[str, Any] | None) -> list[Target]:
    _title("Memory and garbage")
    rows = []
    targets = []
    if memory:
        per_event = memory["bytes_per_event"]
        rows.append(
            [
                f"{memory['buffered']:,} PRESENCE_UPDATE buffered, nobody pulling (fresh process)",
                f"peak RSS {memory['peak_rss_mb']:.0f} MB (start {memory['base_rss_mb']:.0f} MB), "
                f"{per_event:,.0f} bytes/event, {memory['tracked_per_event']:.2f} GC-tracked "
                "objects/event (unread)",
            ]
        )
        targets.append(
            (
                "1",
                f"bytes per buffered PRESENCE_UPDATE: {per_event:,.0f} (target <= 1,000)",
                per_event <= 1000,
            )
        )
        targets.append(
            (
                "1",
                f"peak RSS with {memory['buffered']:,} buffered: {memory['peak_rss_mb']:.0f} MB "
                "(target < 130 MB)",
                memory["peak_rss_mb"] < 130,
            )
        )
    if cycles:
        callback = cycles["callback"]
        rows.append(
            [
                f"GC-tracked objects per buffered event ({callback['events']:,} buffered, "
                "each read by the callback)",
                f"{callback['tracked_per_event']:.2f}",
            ]
        )
        for style, label in (
            ("pull", "pull-style client"),
            ("callback", f"callback client ({callback['events']:,} buffered)"),
        ):
            got = cycles[style]
            rows.append(
                [
                    f"{label}: close(); del client; gc.collect()",
                    f"found {got['found']:,} objects in {got['pause_ms']:.0f} ms; the Client "
                    f"object freed at del: {'yes' if got['freed_by_refcount'] else 'no'}",
                ]
            )
            if got["kinds"]:
                rows.append(["  the most common of them", _garbage(got["kinds"])])
            targets.append(
                (
                    "2",
                    f"{label}: gc.collect() after close() and del found {got['found']:,} "
                    "objects (target 0)",
                    got["found"] == 0,
                )
            )
            if got["threads_left"]:
                rows.append([f"  ({label}: {got['threads_left']} threads still running)", ""])
        targets.append(
            (
                "2",
                f"GC-tracked objects per buffered event (read by a callback): "
                f"{callback['tracked_per_event']:.2f} (target < 7, the count before issue 12)",
                callback["tracked_per_event"] < 7,
            )
        )
    print(_table(["", "measured"], rows, left=True))
    return targets


def _threads(idle: dict[str, Any] | None, dead: dict[str, Any] | None) -> list[Target]:
    _title("Threads and idle clients")
    rows = []
    targets = []
    if idle:
        kinds = ", ".join(f"{name} x{n:,}" for name, n in sorted(idle["thread_kinds"].items()))
        shared = idle["shared_threads"]
        per_client = idle["threads_per_client"]
        rows.append(
            ["threads per connected client (+ shared by all)", f"{per_client:.2f} (+ {shared:.0f})"]
        )
        rows.append([f"  the threads of {idle['clients']:,} clients, by name", kinds])
        k = idle["clients"]
        rows.append(
            [
                f"{k:,} idle clients in one process",
                f"{idle['threads']:,} threads, RSS {idle['rss_mb']:.0f} MB "
                f"({idle['rss_per_client_kb']:.0f} KB/client); connected in "
                f"{idle['connect_seconds']:.1f} s, closed in {idle['close_seconds']:.1f} s",
            ]
        )
        if idle["stopped"]:
            rows.append([f"  (stopped short of {idle['wanted']:,})", idle["stopped"]])
        interval = idle["ping_interval"]
        for key, label in (("one", "one idle client"), ("many", f"{k:,} idle clients")):
            cpu = idle[key]
            rows.append(
                [
                    f"{label}, CPU over {cpu['seconds']:.1f} s (ping every {interval:g} s)",
                    f"{cpu['cpu_percent']:.3f}% of one core ({cpu['cpu_seconds'] * 1000:.1f} ms, "
                    f"{cpu['switches']:,} context switches)",
                ]
            )
        targets.append(
            (
                "4",
                f"threads per connected client: {per_client:.2f} (+ {shared:.0f} shared) "
                "(target <= 2 + shared)",
                per_client <= 2.0,
            )
        )
        one = idle["one"]["cpu_percent"]
        targets.append(("4", f"one idle client: {one:.3f}% of one core (target < 1%)", one < 1.0))
        if idle["threads_after_close"]:
            rows.append([f"  ({idle['threads_after_close']} threads left after close)", ""])
    if dead:
        bound = dead["ping_interval"] + dead["ping_timeout"]
        rows.append(
            [
                f"a silent gateway noticed, {dead['clients']} clients (ping_interval "
                f"{dead['ping_interval']:g} s, ping_timeout {dead['ping_timeout']:g} s)",
                f"median {dead['median_s']:.2f} s, max {dead['max_s']:.2f} s after connect()",
            ]
        )
        targets.append(
            (
                "4",
                f"dead peer noticed after at most {dead['max_s']:.2f} s (target <= "
                f"ping_interval + ping_timeout = {bound:g} s, +10%)",
                dead["max_s"] <= bound * 1.1,
            )
        )
    print(_table(["", "measured"], rows, left=True))
    return targets


def _latency(latency: dict[str, Any]) -> list[Target]:
    _title("Latency at 1,000 events/s, json PRESENCE_UPDATE, gateway send -> delivery (ms)")
    rows = []
    for path, label in (("get", "to get_event() returning"), ("callback", "to callback entry")):
        cells = latency[path]
        rows.append([label, *(f"{_median(cells[k]):.3f}" for k in ("p50", "p99", "max"))])
    print(_table(["", "p50", "p99", "max"], rows))
    targets = []
    for path in ("get", "callback"):
        p99 = _median(latency[path]["p99"])
        targets.append(
            ("4 (old)", f"p99 latency, {path} path: {p99:.2f} ms (target < 5 ms)", p99 < 5.0)
        )
    return targets


def _connect(connect: dict[str, Any]) -> list[Target]:
    _title("connect() through discovery, LocalGateway on loopback (ms)")
    rows = [[f"{connect[k]:.1f}" for k in ("median_ms", "min_ms", "max_ms")]]
    print(_table(["median", "min", "max"], rows))
    median = connect["median_ms"]
    return [("4 (old)", f"connect(): median {median:.1f} ms (target < 50 ms)", median < 50.0)]


def _models(models: dict[str, Any]) -> list[Target]:
    _title(
        "Model construction per event, microseconds (best of 5 loops); bytes one decoded event "
        "holds once read (tracemalloc)"
    )
    rows = []
    for m in models.values():
        rows.append(
            [
                f"{m['model']} ({m['bytes']:,} bytes)",
                f"{m['event_from_message_us']:.1f}",
                f"{m['json_loads_us']:.1f}",
                f"{m['decode_json_us']:.1f}",
                f"{m['decode_zlib_us']:.1f}",
                f"{m['from_dict_us']:,.0f}",
                f"{m['from_dict_us'] / m['event_from_message_us']:,.0f}x",
                f"{m['held_bytes']:,.0f}",
            ]
        )
    header = [
        "event",
        "event_from_message",
        "json.loads",
        "decode (json)",
        "decode (zlib)",
        "from_dict",
        "from_dict / ours",
        "held (bytes)",
    ]
    print(_table(header, rows))
    if "presence" not in models:
        return []
    us = models["presence"]["event_from_message_us"]
    return [
        ("4 (old)", f"model construction, PRESENCE_UPDATE: {us:.1f} us (target <= 10 us)", us <= 10)
    ]


def report(results: dict[str, Any]) -> list[Target]:
    """Print the tables of the sections in ``results``, then the targets; return them."""
    targets: list[Target] = []
    steps: list[tuple[str, Callable[[], list[Target]]]] = [
        ("throughput", lambda: _throughput(results["throughput"])),
        ("steady", lambda: _steady(results["steady"])),
        ("memory", lambda: _memory(results.get("memory"), results.get("gc"))),
        (
            "threads",
            lambda: _threads(results["threads"].get("idle"), results["threads"].get("dead")),
        ),
        ("latency", lambda: _latency(results["latency"])),
        ("connect", lambda: _connect(results["connect"])),
        ("models", lambda: _models(results["models"])),
    ]
    for section, step in steps:
        if section in results or (section == "memory" and "gc" in results):
            targets.extend(step())
    if targets:
        _title("Targets (issue 12 items 1-5; the issue 4 targets that still hold, marked old)")
        for issue, text, met in sorted(targets, key=lambda t: t[0]):
            print(f"  {'PASS' if met else 'FAIL'}  [{issue}] {text}")
    return targets
