"""hatsu_sync's benchmarks: one command, every figure side by side, the targets checked.

Usage (from the repository root; nothing to install beyond the test dependencies)::

    python benchmarks/run.py            # the full run: 3 minutes on 2 cores, 4-5 if busy
    python benchmarks/run.py --quick    # one run of each, smaller streams: under a minute
    python benchmarks/run.py --only throughput,steady --runs 3 --json results.json

What it measures, all on loopback (127.0.0.1), against ``loadgen.py`` running in a process of its
own (a raw-socket websocket server writing pre-built frames, so it is never the bottleneck and
never competes with the client for the GIL):

1. ``throughput``: events/s of a PRESENCE_UPDATE stream, json and zlib mode, every contender
   parsing each message and building a typed object from it: hatsu_sync ``get_event()``; the
   websockets sync client, websocket-client ``recv()`` and ``run_forever``, each with
   ``json.loads`` and a dataclass; ``run_forever`` with dataclasses-json ``from_dict`` (the
   naive client); the same parse and build with no I/O (the limit). hatsu_sync's ratio to the
   best peer and to the limit, per run, in the same process;
2. ``steady``: interleaved rounds of a ``get_event()`` client and a callback client in one
   process, with no ``gc.collect()`` between them: the slowest round against the median, and
   callbacks against ``get_event()``;
3. ``memory``: peak RSS and bytes per event of a fresh process holding 100,000 buffered events;
4. ``gc``: what ``gc.collect()`` finds of a closed and dropped client (pull style, and callback
   style with 20,000 events buffered) with the collector off, and the GC-tracked objects per
   buffered event;
5. ``threads``: threads per connected client, threads, RSS and idle CPU of 1,000 idle clients
   in one process, and how soon a silent gateway is noticed;
6. ``latency`` at a steady 1,000 events/s, gateway send to ``get_event()`` and to callbacks;
7. ``connect()`` through discovery against a LocalGateway (in another process);
8. ``models``: model construction per event type against dataclasses-json ``from_dict``, and
   the bytes one decoded event holds.

Every measurement runs in a fresh subprocess (``measure.py``) with a time limit. The targets of
issue 12 (and those of issue 4 that still hold) are printed with PASS or FAIL. The exit status
is 0 whatever the figures (the benchmarks are not part of the tests' pass/fail); it is 1 only
when a measurement itself failed (the other sections are still measured and reported).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from report import CONTENDERS, PEERS, report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECTIONS = ("throughput", "steady", "memory", "gc", "threads", "latency", "connect", "models")
ENCODINGS = ("json", "zlib")
# A child measurement that runs longer than this has hung: it is killed and reported.
_CHILD_TIMEOUT = 180.0


@dataclass(frozen=True)
class Plan:
    """How much to measure: the full run or ``--quick``."""

    runs: int  # of the throughput table, and of the latency figures
    passes: int  # per contender and throughput run: its best pass counts
    count: int  # PRESENCE_UPDATE per throughput stream
    naive_count: int  # the same for the naive client, some fifty times slower (per pass)
    steady_count: int  # per steadiness round
    steady_rounds: int
    latency_runs: int
    latency_seconds: float
    buffered: int
    cycle_events: int
    idle_clients: int
    ping_interval: float  # of the idle clients, and their CPU window
    dead_peers: int
    connects: int
    model_budget: float


FULL = Plan(
    runs=3,
    passes=3,
    count=12_000,
    naive_count=300,
    steady_count=30_000,  # a second a round: long enough that a busy moment averages out
    steady_rounds=6,
    latency_runs=3,
    latency_seconds=3.0,
    buffered=100_000,
    cycle_events=20_000,
    idle_clients=1_000,
    ping_interval=15.0,  # the default: the idle figures are those of a default client
    dead_peers=20,
    connects=20,
    model_budget=0.5,
)
QUICK = Plan(
    runs=1,
    passes=2,
    count=6_000,
    naive_count=150,
    steady_count=8_000,
    steady_rounds=4,
    latency_runs=1,
    latency_seconds=1.5,
    buffered=100_000,
    cycle_events=20_000,
    idle_clients=200,
    ping_interval=2.0,
    dead_peers=10,
    connects=10,
    model_budget=0.1,
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


def _progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


# -- the sections ----------------------------------------------------------------------------------


def run_throughput(base: str, plan: Plan, runs: int) -> dict[str, Any]:
    """Every contender on the json and the zlib stream; rates and ratios of each run."""
    results: dict[str, Any] = {}
    for run in range(runs):
        for encoding in ENCODINGS:
            # Rotate the order, so that no contender always goes first (or last).
            shift = run % len(CONTENDERS)
            order = CONTENDERS[shift:] + CONTENDERS[:shift]
            _progress(f"throughput {encoding}, run {run + 1} of {runs}")
            got = measure(
                "throughput",
                base,
                encoding,
                plan.count,
                "--naive-count",
                plan.naive_count,
                "--passes",
                plan.passes,
                "--order",
                ",".join(order),
            )
            cell = results.setdefault(encoding, {"rates": {}, "ratios": {}, "best": []})
            for name in CONTENDERS:
                cell["rates"].setdefault(name, []).append(got[name]["rate"])
                cell.setdefault("cpu_rates", {}).setdefault(name, []).append(got[name]["cpu_rate"])
            ratios = cell["ratios"]
            best = max(PEERS, key=lambda name: got[name]["rate"])
            hatsu = got["hatsu-get"]["rate"]
            cell["best"].append(best)
            ratios.setdefault("best", []).append(hatsu / got[best]["rate"])
            ratios.setdefault("limit", []).append(hatsu / got["limit"]["rate"])
            best_cpu = max(got[name]["cpu_rate"] for name in PEERS)
            ratios.setdefault("best_cpu", []).append(got["hatsu-get"]["cpu_rate"] / best_cpu)
    return results


def run_steady(base: str, plan: Plan) -> dict[str, Any]:
    """Interleaved get_event() and callback rounds, one process per encoding."""
    results = {}
    for encoding in ENCODINGS:
        _progress(f"steadiness {encoding}, {plan.steady_rounds} rounds")
        got = measure("steady", base, encoding, plan.steady_count, plan.steady_rounds)
        results[encoding] = {**got, "count": plan.steady_count}
    return results


def run_latency(base: str, plan: Plan, runs: int) -> dict[str, Any]:
    """p50/p99/max at 1,000 events/s, per path, for each run."""
    results: dict[str, Any] = {}
    for run in range(runs):
        for path in ("get", "callback"):
            _progress(f"latency {path}, run {run + 1} of {runs}")
            got = measure("latency", base, path, "json", "--seconds", plan.latency_seconds)
            for key in ("p50", "p99", "max"):
                results.setdefault(path, {}).setdefault(key, []).append(got[key])
    return results


def run_memory(base: str, plan: Plan) -> dict[str, Any]:
    """Peak RSS and bytes per event with ``plan.buffered`` events buffered."""
    _progress(f"memory with {plan.buffered:,} buffered events")
    return measure("memory", base, plan.buffered)


def run_gc(base: str, plan: Plan) -> dict[str, Any]:
    """What the cyclic collector finds of dropped clients."""
    _progress(f"garbage of dropped clients ({plan.cycle_events:,} events)")
    return measure("cycles", base, plan.cycle_events)


def run_threads(base: str, plan: Plan) -> dict[str, Any]:
    """Threads, RSS and idle CPU of idle clients; dead-peer detection."""
    _progress(
        f"{plan.idle_clients:,} idle clients, CPU over {plan.ping_interval:g} s windows "
        "(idle, no load)"
    )
    idle = measure("idle-clients", base, plan.idle_clients, "--interval", plan.ping_interval)
    _progress(f"dead-peer detection, {plan.dead_peers} clients")
    dead = measure("dead-peer", base, plan.dead_peers)
    return {"idle": idle, "dead": dead}


def run_connect(plan: Plan) -> dict[str, Any]:
    """connect() through discovery against a LocalGateway in another process."""
    _progress(f"connect() x {plan.connects}")
    with Server([sys.executable, str(HERE / "measure.py"), "gateway"]) as gateway:
        return measure("connect", gateway.address, plan.connects)


def run_models(plan: Plan) -> dict[str, Any]:
    """Model construction per event type."""
    _progress("model construction")
    return measure("models", "--budget", plan.model_budget)


def _load() -> str:
    """The 1-minute load average, or "?" where the system has none."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


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
    sections = args.only.split(",") if args.only else list(SECTIONS)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")

    command = " ".join(["python benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"$ {command}\n{_describe_machine()}", flush=True)
    started = time.monotonic()
    load_at_start = _load()
    results: dict[str, Any] = {}
    failures: list[str] = []
    jobs: dict[str, Callable[[str], Any]] = {
        "throughput": lambda base: run_throughput(base, plan, args.runs or plan.runs),
        "steady": lambda base: run_steady(base, plan),
        "memory": lambda base: run_memory(base, plan),
        "gc": lambda base: run_gc(base, plan),
        "threads": lambda base: run_threads(base, plan),
        "latency": lambda base: run_latency(base, plan, args.runs or plan.latency_runs),
        "connect": lambda base: run_connect(plan),
        "models": lambda base: run_models(plan),
    }
    try:
        with Server([sys.executable, str(HERE / "loadgen.py")]) as loadgen:
            base = f"ws://127.0.0.1:{loadgen.address}"
            for section in SECTIONS:
                if section in sections:
                    start = time.monotonic()
                    try:
                        results[section] = jobs[section](base)
                        _progress(f"{section}: {time.monotonic() - start:.0f} s")
                    except MeasurementFailed as exc:
                        failures.append(f"{section}: {exc}")
                        print(f"\nmeasurement failed, {section}: {exc}", file=sys.stderr)
    except MeasurementFailed as exc:  # the load generator did not start
        failures.append(str(exc))
        print(f"\nmeasurement failed: {exc}", file=sys.stderr)
    report(results)
    if failures:
        failed = ", ".join(failure.split(":")[0] for failure in failures)
        print(f"\n{len(failures)} measurement(s) failed: {failed} (see above)")
    print(
        f"\n(the whole run took {time.monotonic() - started:.0f} s; load average "
        f"{load_at_start} at the start, {_load()} at the end: other work skews the rates)"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
