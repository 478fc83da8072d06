"""The hatsu-sync command line: demo, listen, gateway, exit statuses and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import IO

import pytest

from hatsu_sync._samples import SAMPLE_EVENTS
from hatsu_sync.cli import main
from hatsu_sync.testing import LocalGateway

from .conftest import SESSION, T


def test_demo_shows_every_event_kind(capsys: pytest.CaptureFixture[str]) -> None:
    """`hatsu-sync demo` prints every event kind, a reconnect, and exits 0 by itself."""
    assert main(["demo", "--delay", "0"]) == 0
    out = capsys.readouterr().out
    for name in {m["t"] for m in SAMPLE_EVENTS} | {"HELLO", "READY"}:
        assert f"   {name}" in out, name
    assert "reconnecting" in out
    assert "1 reconnect" in out
    assert "demo-session" not in out


def test_demo_zlib(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo runs over the zlib stream too."""
    assert main(["demo", "--delay", "0", "--encoding", "zlib"]) == 0
    assert "GUILD_INIT" in capsys.readouterr().out


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hatsu_sync", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _read_until(stream: IO[str], needle: str, timeout: float = T) -> list[str]:
    """Lines of ``stream`` up to the one holding ``needle`` (read on a thread: no hang)."""
    lines: list[str] = []
    found = threading.Event()

    def reader() -> None:
        for line in stream:
            lines.append(line)
            if needle in line:
                found.set()
                return

    threading.Thread(target=reader, daemon=True).start()
    assert found.wait(timeout), f"{needle!r} not seen in {lines!r}"
    return lines


@pytest.fixture
def gateway() -> Iterator[LocalGateway]:
    with LocalGateway() as gw:
        yield gw


def test_listen_prints_lines_and_ctrl_c_exits_0(gateway: LocalGateway) -> None:
    """`listen` prints one line per event; Ctrl-C exits 0 without a traceback."""
    proc = _spawn("listen", "--gateway", gateway.http_url, env={"HATSU_SESSION_ID": SESSION})
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        _read_until(proc.stderr, "connected to")
        gateway.wait_for_clients(1, timeout=T)  # the gateway has taken the identify
        gateway.send(SAMPLE_EVENTS[1])
        lines = _read_until(proc.stdout, "PRESENCE_UPDATE")
        assert lines[0].startswith("HELLO")
        assert lines[1].startswith("READY")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=T)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "Traceback" not in err
    assert SESSION not in "".join(lines) + out + err


def test_listen_json_lines_redact_the_session_id(gateway: LocalGateway) -> None:
    """`listen --json` prints JSON objects, one per line, without the session id."""
    proc = _spawn("listen", "--session-id", SESSION, "--url", gateway.ws_url, "--json")
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        _read_until(proc.stderr, "connected to")
        gateway.wait_for_clients(1, timeout=T)  # the gateway has taken the identify
        gateway.send(SAMPLE_EVENTS[3])
        lines = _read_until(proc.stdout, "NOTIFICATION")
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=T)
    finally:
        proc.kill()
    objects = [json.loads(line) for line in lines]
    assert [o["t"] for o in objects] == ["HELLO", "READY", "NOTIFICATION"]
    assert objects[2]["type"] == "FRIEND_REQUEST"
    assert SESSION not in "".join(lines)
    assert proc.returncode == 0


def test_listen_fatal_close_exits_1_with_one_line() -> None:
    """A session id the gateway refuses (4002) ends `listen` with status 1 and one line."""
    with LocalGateway(session_ids=["someone-else"]) as gw:
        proc = _spawn("listen", "--session-id", SESSION, "--url", gw.ws_url)
        out, err = proc.communicate(timeout=T * 2)
    assert proc.returncode == 1
    error_lines = [line for line in err.splitlines() if line.startswith("hatsu-sync")]
    assert len(error_lines) == 1
    assert "4002" in error_lines[0]
    assert "Traceback" not in err
    assert SESSION not in out + err


def test_listen_failed_connect_exits_1() -> None:
    """A gateway that cannot be reached ends `listen` with status 1 and a one-line error."""
    with LocalGateway() as gw:
        dead = gw.ws_url
    proc = _spawn("listen", "--session-id", SESSION, "--url", dead)
    _, err = proc.communicate(timeout=T * 2)
    assert proc.returncode == 1
    assert err.strip().count("\n") == 0
    assert dead in err


def test_listen_without_a_session_id_exits_1() -> None:
    """`listen` with no session id anywhere says so and exits 1."""
    env = {k: v for k, v in os.environ.items() if k != "HATSU_SESSION_ID"}
    proc = subprocess.run(
        [sys.executable, "-m", "hatsu_sync", "listen", "--url", "ws://127.0.0.1:9"],
        capture_output=True,
        text=True,
        env=env,
        timeout=T * 2,
    )
    assert proc.returncode == 1
    assert "session id" in proc.stderr


def test_gateway_command_prints_urls_and_stops_on_ctrl_c() -> None:
    """`hatsu-sync gateway` prints both URLs, serves discovery, and exits 0 on Ctrl-C."""
    proc = _spawn("gateway")
    try:
        assert proc.stdout is not None
        lines = _read_until(proc.stdout, "Ctrl-C")
        assert lines[0].startswith("discovery: http://127.0.0.1:")
        assert lines[1].startswith("websocket: ws://127.0.0.1:")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=T)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["demo", "listen", "gateway"])
def test_every_command_has_help_with_examples(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--help on every subcommand exits 0 and shows examples."""
    with pytest.raises(SystemExit) as caught:
        main([command, "--help"])
    assert caught.value.code == 0
    assert "examples:" in capsys.readouterr().out
