"""The client at the edges of a real process: signals, fork, garbage collection, stderr.

Each test runs its client in a child interpreter (``sys.executable``) that talks to a
LocalGateway in this process, because what is checked belongs to the interpreter itself:
signal handlers, fork, the garbage collector, warnings filters, exit and stderr.
"""

from __future__ import annotations

import contextlib
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

from .conftest import SESSION, T, eventually

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and fork")

# Imported by every child script: the gateway's URL comes as the first argument.
PRELUDE = f"""
import gc, os, sys, threading, time, warnings
from hatsu_sync import Client, ClientClosed, ConnectError, GatewayClosed, HatsuError
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
        # faulthandler: a child that hangs is made to print every thread's stack (see kill).
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        start_new_session=True,  # its own process group: kill() reaches forked grandchildren
    )


def kill(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Kill ``proc`` and whatever it forked; return what it had written, with the stacks of
    its threads if it was still running (SIGABRT first: faulthandler prints them)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGABRT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(T)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.communicate()


def finish(proc: subprocess.Popen[str], timeout: float = T) -> tuple[str, str]:
    """Wait for ``proc`` (killing it past ``timeout``); return its stdout and stderr."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = kill(proc)
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
        out, err = kill(proc)
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
        # Every other public method first: none may wait for the interrupted frame either.
        repr(client), client.stats, client.state, client.closed
        client.on("SIGNALLED", print)
        client.off("SIGNALLED")
        for call in (lambda: client.get_event(timeout=0), lambda: client.wait(0)):
            try:
                call()
            except (TimeoutError, RuntimeError, HatsuError):
                pass
        try:
            client.send({"t": "FROM_HANDLER"})
            sent = True  # taken while connected: it reaches the gateway before the close
        except (RuntimeError, HatsuError):  # not connected (yet, or any more)
            sent = False
        client.close(timeout=2)
        os.write(1, b"closed sent\\n" if sent else b"closed\\n")
        return
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

MISSED_WAKE_CHILD = """
import signal
client = new_client()
client.connect(timeout=5)
client.get_event(timeout=5)  # HELLO
client.get_event(timeout=5)  # READY: from now on nothing arrives
poked = []

def poke():
    time.sleep(0.3)  # let the main thread fall asleep in the call below
    poked.append(time.monotonic())
    # Handled on this thread: the C handler only flags the signal for the main thread, whose
    # sleep nothing interrupts, as when a Ctrl-C lands just before a sleep begins.
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)

threading.Thread(target=poke, daemon=True).start()
try:
    if sys.argv[2] == "wait":
        client.wait()
    elif sys.argv[2] == "events":
        for _ in client.events():
            pass
    else:
        client.get_event()
except KeyboardInterrupt:
    print("interrupted after", round(time.monotonic() - poked[0], 3), flush=True)
client.close()
"""


@pytest.mark.parametrize("call", ["get_event", "wait", "events"])
def test_a_signal_the_main_thread_sleep_missed_is_handled_soon(
    gateway: LocalGateway, call: str
) -> None:
    """A main thread blocked in a client call with no time limit wakes now and then, so a
    signal that did not interrupt its sleep (it came just before) still runs within a second."""
    proc = child(MISSED_WAKE_CHILD, gateway.ws_url, call)
    line = read_line(proc, 2 * T)
    out, err = finish(proc)
    assert line.startswith("interrupted after"), (line, out, err)
    assert float(line.split()[-1]) < 1.0, line
    assert proc.returncode == 0, err


SIGNAL_MODES = ("block", "timeout", "poll", "events", "iter", "wait", "send", "connect")


def test_close_from_a_signal_handler_never_deadlocks(streaming: LocalGateway) -> None:
    """Every public method, close() last, returns from a signal handler that interrupted any
    public call of the main thread, and the main thread goes on."""
    per_child = 20
    procs = {mode: child(SIGNAL_CHILD, streaming.ws_url, mode) for mode in SIGNAL_MODES}
    failures: list[str] = []
    sends: list[bool] = []

    def drive(mode: str, proc: subprocess.Popen[str]) -> None:
        rng = random.Random(mode)
        try:
            # Eight interpreters start at once on a busy machine: importing takes a while.
            assert read_line(proc, 4 * T) == "ready"
            for n in range(per_child):
                time.sleep(rng.uniform(0.0, 0.015))  # land anywhere: connect, the loop, close
                proc.send_signal(signal.SIGUSR1)
                # The next signal only after the handler returned: Python merges pending ones.
                # Within 2 T: on a busy machine (CI runs two suites at once) close() takes a while.
                line = read_line(proc, 2 * T)
                sends.append(line == "closed sent")
                if not line.startswith("closed"):
                    failures.append(f"{mode}: unexpected line {line!r} after {n} signals")
                    return
            proc.send_signal(signal.SIGTERM)
        except BaseException as exc:  # pytest.fail inside a thread: record it
            failures.append(f"{mode}: {exc}")
            kill(proc)

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
    # The handlers' own send() calls that were taken reached the gateway (deferred ones
    # included). On a busy machine every signal may land before a connection is up.
    if any(sends):
        eventually(lambda: {"t": "FROM_HANDLER"} in streaming.received, what="FROM_HANDLER")


# -- fork ------------------------------------------------------------------------------------

FORK_CHILD = """
import multiprocessing
how = sys.argv[2]
client = new_client()
client.connect(timeout=5)
client.get_event(timeout=5)  # HELLO: events flow
warnings.simplefilter("ignore", DeprecationWarning)  # fork() in a process with threads

def use_inherited():
    # Everything the user might do with the copy; each must refuse, none may touch the socket.
    problems = []
    for name, call in [
        ("get_event", lambda: client.get_event(timeout=0)),
        ("get_event(None)", lambda: client.get_event()),
        ("events", lambda: list(client.events(timeout=0.1))),
        ("wait", lambda: client.wait(0.1)),
        ("send", lambda: client.send({"t": "FROM_CHILD"})),
        ("connect", lambda: client.connect(timeout=1)),
        ("on", lambda: client.on("*", print)),
    ]:
        try:
            call()
            problems.append(f"{name} did not raise")
        except ClientClosed as exc:
            if "parent process" not in str(exc) or "new Client" not in str(exc):
                problems.append(f"{name}: {exc}")
        except Exception as exc:
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
    if not client.closed:
        problems.append("not closed")
    client.close()
    return problems

if how == "os.fork":
    pid = os.fork()
    if pid == 0:
        problems = use_inherited()
        for problem in problems:
            print("PROBLEM", problem, flush=True)
        del client
        gc.collect()
        sys.exit(0)  # runs the atexit hooks of the copy, as a forking server's worker would
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
else:
    def target(queue):
        queue.put(use_inherited())
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(queue,))
    proc.start()
    for problem in queue.get(timeout=5):
        print("PROBLEM", problem, flush=True)
    proc.join(5)
    code = proc.exitcode
print("child exited", code, flush=True)
names = []
for event in client.events(timeout=5):
    names.append(event.name)
    if event.name == "AFTER_FORK":
        break
print("parent got", " ".join(names), flush=True)
print("parent state", client.state.name, flush=True)
client.close()
"""


@pytest.mark.parametrize("how", ["os.fork", "multiprocessing"])
def test_forked_child_never_touches_the_parents_connection(gateway: LocalGateway, how: str) -> None:
    """In a forked child the inherited client refuses every use and the parent goes on."""
    proc = child(FORK_CHILD, gateway.ws_url, how)
    line = read_line(proc, 4 * T)
    assert line == "child exited 0", line + (proc.stdout.read() if proc.stdout else "")
    gateway.send({"t": "AFTER_FORK"})
    assert read_line(proc) == "parent got READY AFTER_FORK"
    assert read_line(proc) == "parent state CONNECTED"
    _, err = finish(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    # One connection, never closed by the child: the only close is the parent's own, at the end.
    gateway.wait_for_closes(1, timeout=T)
    assert gateway.closes == [(1000, "")]
    assert gateway.connections == 1
    assert all(message != {"t": "FROM_CHILD"} for message in gateway.received)


# -- garbage collection ----------------------------------------------------------------------

GC_CHILD = """
how = sys.argv[2]
if how == "tracemalloc":
    import tracemalloc
    tracemalloc.start(5)  # here rather than -X tracemalloc: tracing the imports takes seconds
client = new_client()
client.connect(timeout=5)
client.get_event(timeout=5)
if how == "cycle":
    client.on("*", lambda event: client)  # a handler that refers to its client: only gc frees it
    del client
    gc.collect()
else:
    del client  # reference counting
alive = [t.name for t in threading.enumerate() if t.name.startswith("hatsu-sync")]
print("threads left", len(alive), flush=True)
"""


@pytest.mark.parametrize("how", ["refcount", "cycle"])
def test_collected_open_client_is_closed_even_when_warnings_are_errors(
    gateway: LocalGateway, how: str
) -> None:
    """Under -X dev -W error a collected open client still closes, then reports its warning."""
    proc = child(GC_CHILD, gateway.ws_url, how, flags=("-X", "dev", "-W", "error"))
    out, err = finish(proc, 4 * T)
    assert "threads left 0" in out, out + err
    assert "ResourceWarning: unclosed <hatsu_sync.Client" in err, err
    assert SESSION not in err
    gateway.wait_for_closes(1, timeout=T)
    assert gateway.closes == [(1000, "")]  # a close frame, not a dropped connection


def test_collected_client_warning_names_where_it_was_created(gateway: LocalGateway) -> None:
    """With tracemalloc on, the ResourceWarning shows the line that created the client."""
    proc = child(
        GC_CHILD,
        gateway.ws_url,
        "tracemalloc",
        flags=("-W", "default::ResourceWarning"),
    )
    out, err = finish(proc, 4 * T)
    assert "threads left 0" in out, out + err
    assert "Object allocated at (most recent call last)" in err, err
    created = 1 + PRELUDE.splitlines().index("    return Client(SESSION, url=URL, **kwargs)")
    assert f'File "<string>", lineno {created}' in err, err


# -- handler errors --------------------------------------------------------------------------

HANDLER_ERROR_CHILD = """
how = sys.argv[2]
client = new_client()
seen, errors, hooked = [], [], []
done = threading.Event()

@client.on("N")
def handler(event):
    if event.data == 1:
        event.no_such_field  # the typo the user never sees when nothing reports it
    seen.append(event.data)
    if event.data == 2:
        done.set()

if how == "error handler":
    client.on("error", errors.append)
elif how == "own excepthook":
    threading.excepthook = lambda args: hooked.append(
        (args.exc_type.__name__, str(args.exc_value)[:14], args.thread.name)
    )
client.connect(timeout=5)
print("ready", flush=True)
done.wait(5)
client.close()
print("seen", seen, "errors", [type(e).__name__ for e in errors], "hooked", hooked, flush=True)
"""


@pytest.mark.parametrize("how", ["nothing", "error handler", "own excepthook"])
def test_a_raising_handler_is_reported_once_unless_handled(gateway: LocalGateway, how: str) -> None:
    """A handler's exception goes to 'error' handlers, else to threading.excepthook, once."""
    proc = child(HANDLER_ERROR_CHILD, gateway.ws_url, how)
    assert read_line(proc, 4 * T) == "ready"
    gateway.wait_for_clients(1, timeout=T)
    gateway.send_many({"t": "N", "d": i} for i in range(3))
    out, err = finish(proc)
    assert "seen [0, 2]" in out, out + err  # the callback thread went on
    if how == "nothing":
        assert err.count("Exception in thread hatsu-sync-callbacks") == 1, err
        assert err.count("Traceback") == 1, err
        assert ", in handler" in err  # the traceback goes down to the handler
        assert "AttributeError" in err
    else:
        assert err == ""
    if how == "error handler":
        assert "errors ['AttributeError']" in out
    if how == "own excepthook":
        assert "('AttributeError', \"'Event' object\", 'hatsu-sync-callbacks')" in out, out


# -- reference cycles ------------------------------------------------------------------------

CYCLES_CHILD = """
style = sys.argv[2]
gc.collect()
gc.disable()  # from here on, only reference counting frees anything
client = new_client(max_queue=30_000)
release = threading.Event()
counted = []
if style == "callbacks":
    client.on("N", lambda event: (release.wait(5), counted.append(1)))
client.connect(timeout=5)
print("ready", flush=True)
deadline = time.monotonic() + 10
while client.stats.events_received < 20_002 and time.monotonic() < deadline:
    time.sleep(0.01)
if style == "pull":
    for _ in range(10):
        client.get_event(timeout=1)
release.set()
client.close()
del client
gc.set_debug(gc.DEBUG_SAVEALL)
found = gc.collect()
kinds = {}
for obj in gc.garbage:
    name = getattr(obj, "f_code", None) and obj.f_code.co_name or type(obj).__qualname__
    kinds[name] = kinds.get(name, 0) + 1
print("garbage", found, sorted(kinds.items(), key=lambda item: -item[1])[:15], flush=True)
"""


@pytest.mark.parametrize("style", ["pull", "callbacks"])
def test_a_closed_client_is_freed_by_reference_counting(gateway: LocalGateway, style: str) -> None:
    """With gc disabled, closing and dropping a client (20,000 events buffered) leaves no cycle."""
    proc = child(CYCLES_CHILD, gateway.ws_url, style)
    assert read_line(proc, 4 * T) == "ready"
    gateway.wait_for_clients(1, timeout=T)
    gateway.send_many({"t": "N", "d": i} for i in range(20_000))
    out, err = finish(proc, 4 * T)
    assert "garbage 0 []" in out, out + err
