"""The client at the edges of a real process: signals, fork, garbage collection, stderr.

Each test runs its client in a child interpreter (``sys.executable``) that talks to a
LocalGateway in this process, because what is checked belongs to the interpreter itself:
signal handlers, fork, the garbage collector, warnings filters, exit and stderr.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from hatsu_sync.testing import LocalGateway

from .conftest import SESSION, T

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and fork")

# Imported by every child script: the gateway's URL comes as the first argument.
PRELUDE = f"""
import gc, os, sys, threading, time, warnings
from hatsu_sync import Client, ClientClosed, ConnectError, GatewayClosed
URL = sys.argv[1]
SESSION = {SESSION!r}
def new_client(**kwargs):
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("backoff_max", 0.05)
    return Client(SESSION, url=URL, **kwargs)
"""


def child(
    script: str, *args: str, flags: tuple[str, ...] = (), stdin: bool = False
) -> subprocess.Popen[str]:
    """Start ``script`` (after the prelude) in a child interpreter, with this PYTHONPATH."""
    code = PRELUDE + textwrap.dedent(script)
    return subprocess.Popen(
        [sys.executable, *flags, "-c", code, *args],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def finish(proc: subprocess.Popen[str], timeout: float = T) -> tuple[str, str]:
    """Wait for ``proc`` (killing it past ``timeout``); return its stdout and stderr."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the child process hung\nstdout:\n{out[-2000:]}\nstderr:\n{err[-4000:]}")
    return out, err


def read_line(proc: subprocess.Popen[str], timeout: float = T) -> str:
    """The child's next stdout line, or a failure if none comes within ``timeout``."""
    assert proc.stdout is not None
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not result or not result[0]:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"no line from the child in {timeout} s\nstdout:\n{out}\nstderr:\n{err}")
    return result[0].strip()


@pytest.fixture
def streaming(gateway: LocalGateway) -> Iterator[LocalGateway]:
    """The gateway, sending a small event to every client every millisecond or so."""
    stop = threading.Event()

    def stream() -> None:
        n = 0
        while not stop.wait(0.002):
            n += 1
            gateway.send({"t": "TICK", "d": n})

    thread = threading.Thread(target=stream, daemon=True)
    thread.start()
    yield gateway
    stop.set()
    thread.join(T)


# -- signals ---------------------------------------------------------------------------------

SIGNAL_CHILD = """
import signal
mode = sys.argv[2]
current = [None]
stopping = []

def on_usr1(signum, frame):
    client = current[0]
    if client is not None:
        client.close(timeout=2)
    os.write(1, b"closed\\n")

def on_term(signum, frame):
    stopping.append(1)
    client = current[0]
    if client is not None:
        client.close(timeout=2)

signal.signal(signal.SIGUSR1, on_usr1)
signal.signal(signal.SIGTERM, on_term)

def run(client):
    if mode == "block":
        while True:
            client.get_event()
    elif mode == "timeout":
        while True:
            try:
                client.get_event(timeout=0.005)
            except TimeoutError:
                pass
    elif mode == "poll":
        while True:
            try:
                client.get_event(timeout=0)
            except TimeoutError:
                time.sleep(0.0002)
    elif mode == "events":
        for _ in client.events():
            pass
    elif mode == "iter":
        for _ in client:
            pass
    elif mode == "wait":
        client.wait()
    elif mode == "send":
        while True:
            client.send({"t": "PING"})
            time.sleep(0.0005)
    elif mode == "connect":
        client.close()

print("ready", flush=True)
rounds = 0
while not stopping:
    client = new_client()
    current[0] = client
    if stopping:  # SIGTERM came before the handler could see this client
        break
    try:
        client.connect(timeout=5)
        run(client)
    except (ClientClosed, ConnectError):
        pass
    finally:
        client.close()
    rounds += 1
print("rounds", rounds, flush=True)
"""

SIGNAL_MODES = ("block", "timeout", "poll", "events", "iter", "wait", "send", "connect")


def test_close_from_a_signal_handler_never_deadlocks(streaming: LocalGateway) -> None:
    """close() in a signal handler returns whatever public call the main thread is inside."""
    per_child = 20
    procs = {mode: child(SIGNAL_CHILD, streaming.ws_url, mode) for mode in SIGNAL_MODES}
    failures: list[str] = []

    def drive(mode: str, proc: subprocess.Popen[str]) -> None:
        rng = random.Random(mode)
        try:
            # Eight interpreters start at once on a busy machine: importing takes a while.
            assert read_line(proc, 4 * T) == "ready"
            for n in range(per_child):
                time.sleep(rng.uniform(0.0, 0.015))  # land anywhere: connect, the loop, close
                proc.send_signal(signal.SIGUSR1)
                # The next signal only after the handler returned: Python merges pending ones.
                line = read_line(proc)
                if line != "closed":
                    failures.append(f"{mode}: unexpected line {line!r} after {n} signals")
                    return
            proc.send_signal(signal.SIGTERM)
        except BaseException as exc:  # pytest.fail inside a thread: record it
            failures.append(f"{mode}: {exc}")
            proc.kill()

    drivers = [threading.Thread(target=drive, args=item) for item in procs.items()]
    for thread in drivers:
        thread.start()
    for thread in drivers:
        thread.join(6 * T)
    assert not failures, failures
    for mode, proc in procs.items():
        out, err = finish(proc)
        assert proc.returncode == 0, f"{mode}: exit {proc.returncode}\n{err}"
        assert "Traceback" not in err, f"{mode}:\n{err}"
        assert "rounds" in out, mode
