"""hatsu_sync's benchmarks: one command, every figure side by side, the targets checked.

Usage (from the repository root; nothing to install beyond the test dependencies)::

    python benchmarks/run.py            # the full run: median of 5, about 3 minutes on 2 cores
    python benchmarks/run.py --quick    # one run of each, smaller streams, under a minute
    python benchmarks/run.py --only throughput,models --runs 3 --json results.json

What it measures, all on loopback (127.0.0.1), against ``loadgen.py`` running in a process of its
own (a raw-socket websocket server writing pre-built frames, so it is never the bottleneck and
never competes with the client for the GIL):

1. throughput, events/s, for each payload kind (PRESENCE_UPDATE with an embed, GUILD_INIT with
   50 channels, NOTIFICATION) in json and zlib-stream mode: a bare websocket-client ``recv()``
   loop, ``WebSocketApp.run_forever`` counting only (both with ``skip_utf8_validation=True``,
   as hatsu_sync runs it), the websockets sync client with ``json.loads``, hatsu_sync through
   ``get_event()`` and through a callback; each hatsu_sync figure also as a ratio of
   ``run_forever`` measured in the same process, right before or after it;
2. latency at a steady 1,000 events/s, from the gateway's send (a ``time.monotonic()`` stamp in
   the message) to ``get_event()`` returning and to callback entry;
3. memory: peak RSS of a fresh process holding 100,000 buffered events; threads and RSS of 100
   idle clients in one process; the CPU an idle connected client uses over 10 s;
4. ``connect()`` through discovery against a LocalGateway (in another process), median of 20;
5. model construction per event type: ``event_from_message`` and the whole ``Decoder.decode``
   against dataclasses-json ``from_dict``.

Every measurement runs in a fresh subprocess (``measure.py``) with a time limit. The figures
are medians over the runs; the targets of issue 4 are printed with PASS or FAIL. The exit
status is 0 whatever the figures (the benchmarks are not part of the tests' pass/fail); it is 1
only when a measurement itself failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECTIONS = ("throughput", "latency", "memory", "connect", "models")
CONTENDERS = ("ws-recv", "run-forever", "websockets", "hatsu-get", "hatsu-callback")
LABELS = {
    "ws-recv": "websocket-client recv() loop",
    "run-forever": "websocket-client run_forever (baseline)",
    "websockets": "websockets sync + json.loads",
    "hatsu-get": "hatsu_sync get_event()",
    "hatsu-callback": "hatsu_sync callback",
}
# A child measurement that runs longer than this has hung: it is killed and reported.
_CHILD_TIMEOUT = 180.0


@dataclass(frozen=True)
class Plan:
    """How much to measure: the full run or ``--quick``."""

    runs: int
    # kind -> messages per throughput stream, for the target kind and the others
    counts: dict[str, int]
    secondary_runs: int
    latency_seconds: float
    buffered: int
    idle_clients: int
    idle_seconds: float
    connects: int
    model_budget: float


FULL = Plan(
    runs=5,
    counts={"presence": 60_000, "notification": 40_000, "guild_init": 4_000},
    secondary_runs=3,
    latency_seconds=4.0,
    buffered=100_000,
    idle_clients=100,
    idle_seconds=10.0,
    connects=20,
    model_budget=0.5,
)
QUICK = Plan(
    runs=1,
    counts={"presence": 20_000, "notification": 15_000, "guild_init": 1_500},
    secondary_runs=1,
    latency_seconds=2.0,
    buffered=100_000,
    idle_clients=100,
    idle_seconds=3.0,
    connects=20,
    model_budget=0.2,
)


class MeasurementFailed(Exception):
    """A child measurement exited with an error or timed out."""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The tree's hatsu_sync, not an installed copy; payloads.py sits next to the scripts.
    paths = [str(ROOT), str(HERE)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def measure(*args: object, timeout: float = _CHILD_TIMEOUT) -> dict[str, Any]:
    """Run ``measure.py ARGS`` in a fresh process; return the JSON it printed last.

    Raises:
        MeasurementFailed: it failed or ran past ``timeout``.
    """
    command = [sys.executable, str(HERE / "measure.py"), *map(str, args)]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_child_env(),
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise MeasurementFailed(f"{' '.join(map(str, args))}: timed out after {timeout} s") from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise MeasurementFailed(
            f"{' '.join(map(str, args))}: exit status {done.returncode}\n{done.stderr[-3000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result


class Server:
    """A child process that prints one line (its address) and serves until its stdin closes."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_child_env(),
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 30.0)
        line = self.process.stdout.readline().strip() if ready else ""
        if not line:
            self.stop()
            raise MeasurementFailed(f"{command[-1]} did not start")
        self.address = line

    def stop(self) -> None:
        """Close its stdin (it then exits), and kill it if it lingers."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(5.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5.0)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


# -- the sections ----------------------------------------------------------------------------------


def run_throughput(base: str, plan: Plan, runs: int) -> dict[str, Any]:
    """Every contender on every stream; returns per stream the rates and ratios of each run."""
    streams = [(kind, encoding) for kind in plan.counts for encoding in ("json", "zlib")]
    results: dict[str, Any] = {f"{k}/{e}": {"rates": {}, "ratios": {}} for k, e in streams}
    for run in range(runs):
        for kind, encoding in streams:
            if kind != "presence" and run >= max(1, min(runs, plan.secondary_runs)):
                continue
            # Rotate the order, so that no contender always goes first (or last).
            order = CONTENDERS[run % len(CONTENDERS) :] + CONTENDERS[: run % len(CONTENDERS)]
            _progress(f"throughput {kind}/{encoding}, run {run + 1}")
            got = measure(
                "throughput", base, kind, encoding, plan.counts[kind], "--order", ",".join(order)
            )
            cell = results[f"{kind}/{encoding}"]
            for name in CONTENDERS:
                cell["rates"].setdefault(name, []).append(got[name]["rate"])
                cell.setdefault("dropped", {}).setdefault(name, []).append(
                    got[name].get("dropped", 0)
                )
            baseline = got["run-forever"]["rate"]
            for name in ("hatsu-get", "hatsu-callback"):
                cell["ratios"].setdefault(name, []).append(got[name]["rate"] / baseline)
            cell["ratios"].setdefault("callback/get", []).append(
                got["hatsu-callback"]["rate"] / got["hatsu-get"]["rate"]
            )
    return results


def run_latency(base: str, plan: Plan, runs: int) -> dict[str, Any]:
    """p50/p99/max at 1,000 events/s, per path, for each run."""
    results: dict[str, Any] = {}
    for run in range(runs):
        for path in ("get", "callback"):
            _progress(f"latency {path}, run {run + 1}")
            got = measure("latency", base, path, "json", "--seconds", plan.latency_seconds)
            for key in ("p50", "p99", "max"):
                results.setdefault(path, {}).setdefault(key, []).append(got[key])
    return results


def run_memory(base: str, plan: Plan) -> dict[str, Any]:
    """Buffered events, idle clients and idle CPU (the "memory" section)."""
    _progress(f"memory with {plan.buffered} buffered events")
    buffered = measure("memory", base, plan.buffered)
    _progress(f"{plan.idle_clients} idle clients")
    idle = measure("idle-clients", base, plan.idle_clients)
    _progress(f"idle CPU over {plan.idle_seconds} s")
    cpu = measure("idle-cpu", base, plan.idle_seconds)
    return {"buffered": buffered, "idle_clients": idle, "idle_cpu": cpu}


def run_connect(plan: Plan) -> dict[str, Any]:
    """connect() through discovery against a LocalGateway in another process."""
    _progress(f"connect() x {plan.connects}")
    with Server([sys.executable, str(HERE / "measure.py"), "gateway"]) as gateway:
        return measure("connect", gateway.address, plan.connects)


def run_models(plan: Plan) -> dict[str, Any]:
    """Model construction per event type."""
    _progress("model construction")
    return measure("models", "--budget", plan.model_budget)


# -- the report ------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    return "\n".join([rule, line(header), rule, *(line(r) for r in rows), rule])


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def report(results: dict[str, Any], runs: int) -> list[tuple[str, bool]]:
    """Print the tables; return the targets as (description, met)."""
    targets: list[tuple[str, bool]] = []
    throughput = results.get("throughput")
    if throughput:
        print("\nThroughput, events/s (median of the runs; ratio = of run_forever, same run)\n")
        streams = list(throughput)
        header = ["client", *streams]
        rows = []
        for name in CONTENDERS:
            row = [LABELS[name]]
            for stream in streams:
                rate = _median(throughput[stream]["rates"].get(name, []))
                cell = f"{rate:,.0f}"
                if name.startswith("hatsu"):
                    cell += f" ({_pct(_median(throughput[stream]['ratios'][name]))})"
                row.append(cell)
            rows.append(row)
        counts = [str(len(throughput[s]["rates"].get("hatsu-get", []))) for s in streams]
        rows.append(["runs", *counts])
        print(_table(header, rows))
        for stream in streams:
            for name, drops in throughput[stream].get("dropped", {}).items():
                if any(drops):
                    print(
                        f"  note: {LABELS[name]}, {stream}: events dropped by its full queue "
                        f"in some runs ({', '.join(map(str, drops))}): it fell behind the socket "
                        "for a while; its rate counts only the events it handled"
                    )
        for stream, floor in (("presence/json", 0.70), ("presence/zlib", 0.60)):
            if stream in throughput:
                ratio = _median(throughput[stream]["ratios"]["hatsu-get"])
                targets.append(
                    (
                        f"get_event() throughput, {stream}: {_pct(ratio)} of run_forever "
                        f"(target >= {_pct(floor)})",
                        ratio >= floor,
                    )
                )
        for stream in ("presence/json", "presence/zlib"):
            if stream in throughput:
                ratio = _median(throughput[stream]["ratios"]["callback/get"])
                targets.append(
                    (
                        f"callback path, {stream}: {_pct(ratio)} of the get_event() path "
                        "(target >= 90%)",
                        ratio >= 0.90,
                    )
                )

    latency = results.get("latency")
    if latency:
        print("\nLatency at 1,000 events/s, json PRESENCE_UPDATE, gateway send -> delivery (ms)\n")
        rows = []
        for path, label in (("get", "to get_event() returning"), ("callback", "to callback entry")):
            cells = latency[path]
            rows.append([label, *(f"{_median(cells[k]):.3f}" for k in ("p50", "p99", "max"))])
        print(_table(["", "p50", "p99", "max"], rows))
        for path in ("get", "callback"):
            p99 = _median(latency[path]["p99"])
            targets.append((f"p99 latency, {path} path: {p99:.2f} ms (target < 5 ms)", p99 < 5.0))

    memory = results.get("memory")
    if memory:
        buffered, idle, cpu = memory["buffered"], memory["idle_clients"], memory["idle_cpu"]
        print("\nMemory and idle cost\n")
        rows = [
            [
                f"{buffered['buffered']:,} PRESENCE_UPDATE buffered, nobody pulling",
                f"peak RSS {buffered['peak_rss_mb']:.0f} MB "
                f"(start {buffered['base_rss_mb']:.0f} MB, "
                f"{buffered['bytes_per_event']:,.0f} bytes/event)",
            ],
            [
                f"{idle['clients']} idle clients in one process",
                f"{idle['threads']} threads ({idle['threads_per_client']:.1f}/client), "
                f"RSS {idle['rss_mb']:.0f} MB ({idle['rss_per_client_kb']:.0f} KB/client)",
            ],
            [
                f"one idle connected client, {cpu['seconds']:.0f} s",
                f"CPU {cpu['cpu_percent']:.3f}% of one core "
                f"({cpu['cpu_seconds'] * 1000:.1f} ms, {cpu['switches']} context switches)",
            ],
        ]
        print(_table(["", "measured"], rows))
        targets.append(
            (
                f"{buffered['buffered']:,} buffered events: peak RSS "
                f"{buffered['peak_rss_mb']:.0f} MB (target < 300 MB)",
                buffered["peak_rss_mb"] < 300,
            )
        )
        targets.append(
            (
                f"idle client: {cpu['cpu_percent']:.3f}% of one core (target < 1%)",
                cpu["cpu_percent"] < 1.0,
            )
        )

    connect = results.get("connect")
    if connect:
        print("\nconnect() through discovery, LocalGateway on loopback (ms)\n")
        rows = [
            [f"{connect['median_ms']:.1f}", f"{connect['min_ms']:.1f}", f"{connect['max_ms']:.1f}"]
        ]
        print(_table(["median", "min", "max"], rows))
        targets.append(
            (
                f"connect(): median {connect['median_ms']:.1f} ms (target < 50 ms)",
                connect["median_ms"] < 50.0,
            )
        )

    models = results.get("models")
    if models:
        print("\nModel construction per event, microseconds (best of 5 loops)\n")
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
        ]
        print(_table(header, rows))
        if "presence" in models:
            us = models["presence"]["event_from_message_us"]
            targets.append(
                (f"model construction, PRESENCE_UPDATE: {us:.1f} us (target <= 10 us)", us <= 10)
            )

    if targets:
        print(f"\nTargets (median of {runs} run{'s' if runs > 1 else ''})\n")
        for text, met in targets:
            print(f"  {'PASS' if met else 'FAIL'}  {text}")
    return targets


def _describe_machine() -> str:
    import websocket  # only for their versions; run.py itself measures nothing
    from websockets.version import version as websockets_version

    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = "?"
    return (
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs; websocket-client {websocket.__version__}, "
        f"websockets {websockets_version}; hatsu_sync at {commit or '?'}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print the report; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run of each, smaller streams")
    parser.add_argument("--runs", type=int, help="runs of the throughput and latency figures")
    parser.add_argument("--only", help=f"comma-separated sections among {', '.join(SECTIONS)}")
    parser.add_argument("--json", type=Path, help="also write every raw figure to this file")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    runs = args.runs or plan.runs
    sections = args.only.split(",") if args.only else list(SECTIONS)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")

    command = " ".join(["python benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"$ {command}\n{_describe_machine()}", flush=True)
    started = time.monotonic()
    results: dict[str, Any] = {}
    jobs: dict[str, Callable[[str], Any]] = {
        "throughput": lambda base: run_throughput(base, plan, runs),
        "latency": lambda base: run_latency(base, plan, runs),
        "memory": lambda base: run_memory(base, plan),
        "connect": lambda base: run_connect(plan),
        "models": lambda base: run_models(plan),
    }
    try:
        with Server([sys.executable, str(HERE / "loadgen.py")]) as loadgen:
            base = f"ws://127.0.0.1:{loadgen.address}"
            for section in SECTIONS:
                if section in sections:
                    results[section] = jobs[section](base)
    except MeasurementFailed as exc:
        print(f"\nmeasurement failed: {exc}", file=sys.stderr)
        return 1
    report(results, runs)
    print(f"\n(the whole run took {time.monotonic() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
