"""Helpers for the command-line tests: run the real `python -m hatsu_sync` in subprocesses."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import IO

from .conftest import T

# The children never see a session id from the developer's environment. faulthandler lets a
# child that hangs be made to print every thread's stack (SIGABRT), for the failure report.
ENV = {k: v for k, v in os.environ.items() if k != "HATSU_SESSION_ID"}
ENV["PYTHONFAULTHANDLER"] = "1"


@contextlib.contextmanager
def sigint_default_for_children() -> Iterator[None]:
    """Children started inside get SIGINT at its default disposition, whatever ours is.

    An ignored signal stays ignored across exec (a test run started as `pytest &` from a
    script inherits SIGINT ignored, and so would every child); a handled one is reset to the
    default. So when SIGINT is ignored here, handle it for the moment of the spawn.
    """
    previous = signal.getsignal(signal.SIGINT)
    if previous != signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def spawn(*args: str, env: dict[str, str] | None = None, stdin: bool = False) -> Cli:
    """Start `python -m hatsu_sync ARGS`, its output read line by line."""
    with sigint_default_for_children():
        proc = subprocess.Popen(
            [sys.executable, "-m", "hatsu_sync", *args],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env={**ENV, **(env or {})},
        )
    return Cli(proc)


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = T * 2
) -> subprocess.CompletedProcess[str]:
    """Run `python -m hatsu_sync ARGS` to its end."""
    with sigint_default_for_children():
        return subprocess.run(
            [sys.executable, "-m", "hatsu_sync", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            env={**ENV, **(env or {})},
            timeout=timeout,
        )


class Lines:
    """The lines of one output stream, read by a thread so that no wait can hang."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, needle: str, timeout: float = T) -> list[str]:
        """The lines up to the next one holding ``needle`` (included); fail after ``timeout``."""
        lines: list[str] = []
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"{needle!r} not seen; got {lines!r}") from None
            if line is None:
                raise AssertionError(f"{needle!r} not seen before the end; got {lines!r}")
            lines.append(line)
            self.seen.append(line)
            if needle in line:
                return lines

    def rest(self, timeout: float = T) -> list[str]:
        """Every line left, once the stream has ended."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the stream did not end"
        lines: list[str] = []
        while (line := self._queue.get_nowait()) is not None:
            lines.append(line)
        self.seen += lines
        return lines


class Cli:
    """A running command, with its stdout and stderr read line by line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        assert proc.stdout is not None
        assert proc.stderr is not None
        self.out = Lines(proc.stdout)
        self.err = Lines(proc.stderr)

    def write(self, text: str) -> None:
        """Write ``text`` to the command's stdin, flushed."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def interrupt(self, timeout: float = 2 * T) -> int:
        """Ctrl-C: send SIGINT and return the exit status.

        The default wait is longer than the 5 s a command's own clean-up may take (for
        instance ``LocalGateway.stop()``'s deadline).
        """
        self.proc.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def wait(self, timeout: float = T) -> int:
        """The exit status, once the command has ended and its output is read.

        A command still running after ``timeout`` fails the test with every thread's stack
        (faulthandler prints them on SIGABRT) and the end of its stderr.
        """
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(T)
            with contextlib.suppress(AssertionError):
                self.err.rest(T)
            stderr = "\n".join(self.err.seen[-60:])
            raise AssertionError(
                f"the command still ran after {timeout} s; its stacks and stderr:\n{stderr}"
            ) from None
        self.out.rest()
        self.err.rest()
        return status

    def kill(self) -> None:
        """End the command if it still runs (test teardown)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(T)
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def text(self) -> str:
        """Everything the command printed so far, stdout then stderr."""
        return "\n".join(self.out.seen + self.err.seen)


@contextlib.contextmanager
def running(*args: str, env: dict[str, str] | None = None, stdin: bool = False) -> Iterator[Cli]:
    """`spawn`, killed at the end of the block whatever happens."""
    cli = spawn(*args, env=env, stdin=stdin)
    try:
        yield cli
    finally:
        cli.kill()
