"""The hatsu-sync command line: demo, listen, options, exit statuses and Ctrl-C.

Every command runs as the real `python -m hatsu_sync` in a subprocess, against a real gateway
(see tests/test_cli_gateway.py for the `gateway` command).
"""

from __future__ import annotations

import json
import re
import signal

import pytest

from hatsu_sync import __version__
from hatsu_sync._samples import SAMPLE_EVENTS
from hatsu_sync.cli import main
from hatsu_sync.testing import LocalGateway

from ._cli import run, running, spawn
from .conftest import SESSION, T

# What a terminal acts on: C0 controls (ESC...), DEL, C1 controls (CSI...).
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def test_demo_shows_every_event_kind(capsys: pytest.CaptureFixture[str]) -> None:
    """`hatsu-sync demo` prints every event kind, a reconnect, and exits 0 by itself."""
    assert main(["demo", "--delay", "0"]) == 0
    out = capsys.readouterr().out
    for name in {m["t"] for m in SAMPLE_EVENTS} | {"HELLO", "READY"}:
        assert f"   {name}" in out, name
    assert "reconnecting" in out
    assert "1 reconnect" in out
    assert "demo-session" not in out


def test_demo_zlib_with_verbose_after_the_command() -> None:
    """The demo runs over the zlib stream, and `-v` after the command name turns on logging."""
    proc = run("demo", "--delay", "0", "--encoding", "zlib", "-v")
    assert proc.returncode == 0, proc.stderr
    assert "GUILD_INIT" in proc.stdout
    assert "hatsu_sync" in proc.stderr  # DEBUG lines name their logger


def test_ctrl_c_ends_the_demo_with_status_0() -> None:
    """Ctrl-C in the middle of the demo exits 0 promptly, without a traceback."""
    with running("demo", "--delay", "0.5") as cli:
        cli.out.expect("GUILD_INIT", timeout=T * 2)
        assert cli.interrupt() == 0
    assert "Traceback" not in cli.text()
    assert "Done" not in cli.text()


def test_version() -> None:
    """`hatsu-sync --version` prints the version and exits 0."""
    proc = run("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"hatsu-sync {__version__}"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["listen", "--url", "ws://127.0.0.1:9"], "session id"),
        (["listen", "--session-id", SESSION, "--bogus"], "unrecognized arguments"),
        (["--bogus", "demo"], "unrecognized arguments"),
        (["listen", "--session-id", SESSION, "--url", "http://127.0.0.1:9"], "ws://"),
        (["listen", "--session-id", SESSION, "--timeout", "0"], "must be > 0"),
        (["gateway", "--ws-port", "70000"], "not a port number"),
        ([], "required"),
    ],
)
def test_usage_errors_exit_2_without_a_traceback(args: list[str], says: str) -> None:
    """A missing session id, an unknown option or an unusable value exits 2, as argparse does."""
    proc = run(*args)
    assert proc.returncode == 2
    assert says in proc.stderr
    assert "usage:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert SESSION not in proc.stderr


def test_listen_prints_lines_and_ctrl_c_exits_0(gateway: LocalGateway) -> None:
    """`listen` prints one line per event; Ctrl-C exits 0 without a traceback."""
    with running(
        "listen", "-v", "--gateway", gateway.http_url, env={"HATSU_SESSION_ID": SESSION}
    ) as cli:
        cli.err.expect("connected to")
        gateway.wait_for_clients(1, timeout=T)
        gateway.send(SAMPLE_EVENTS[1])
        lines = cli.out.expect("PRESENCE_UPDATE")
        assert lines[0].startswith("HELLO")
        assert lines[1].startswith("READY")
        assert cli.interrupt() == 0
    assert "Traceback" not in cli.text()
    assert SESSION not in cli.text()  # -v logs too: none of it shows the session id


def test_listen_accepts_a_discovery_url_ending_in_available(gateway: LocalGateway) -> None:
    """`listen --gateway http://HOST:PORT/available` connects (no ".../available/available")."""
    with running(
        "listen", "--session-id", SESSION, "--gateway", gateway.http_url + "/available/"
    ) as cli:
        cli.err.expect("connected to")
        assert cli.out.expect("READY")
        assert cli.interrupt() == 0


def _listen_json(gateway: LocalGateway, *messages: object) -> list[str]:
    """The lines `listen --json` prints for HELLO, READY and ``messages``."""
    with running("listen", "--session-id", SESSION, "--url", gateway.ws_url, "--json") as cli:
        cli.err.expect("connected to")
        gateway.wait_for_clients(1, timeout=T)
        gateway.send_many(messages)
        gateway.send({"t": "END_OF_TEST"})
        lines = cli.out.expect("END_OF_TEST")
        assert cli.interrupt() == 0
    assert "Traceback" not in cli.text()
    return lines[:-1]


def test_listen_json_prints_each_message_as_sent_without_the_session_id(
    gateway: LocalGateway,
) -> None:
    """`listen --json` prints every top-level field of each message (a PRESENCE_UPDATE's
    `id`, a NOTIFICATION's `type`), in order, one object per line, session id redacted."""
    messages = SAMPLE_EVENTS[1:5]
    lines = _listen_json(gateway, *messages)
    objects = [json.loads(line) for line in lines]
    assert [o["t"] for o in objects[:2]] == ["HELLO", "READY"]
    assert objects[2:] == messages
    assert [list(o) for o in objects[2:]] == [list(m) for m in messages]  # field order too
    ready = objects[1]
    assert ready["s"] == "[redacted]"
    assert "[redacted]" in ready["d"]  # READY's d stays a string, the id redacted inside it
    assert SESSION not in "\n".join(lines)


def test_listen_json_keeps_lone_surrogates_and_escapes_terminal_controls(
    gateway: LocalGateway,
) -> None:
    """An event with a lone surrogate or ESC/CSI is printed as valid JSON that decodes to the
    same value, with no raw control character, and later events still come."""
    odd = {"t": "ODD\x1b[2J", "d": {"s": "a\ud800b", "esc": "\x1b]0;title\x07", "c1": "\x9b31m"}}
    lines = _listen_json(gateway, odd, SAMPLE_EVENTS[0])
    assert json.loads(lines[2]) == odd
    assert json.loads(lines[3]) == SAMPLE_EVENTS[0]
    assert not CONTROL.search("\n".join(lines))


def test_listen_lines_survive_lone_surrogates_and_escape_controls(gateway: LocalGateway) -> None:
    """A lone surrogate does not end `listen` (it used to exit 1); ESC and C1 controls in
    event names and fields are printed as escapes, never raw."""
    with running("listen", "--session-id", SESSION, "--url", gateway.ws_url) as cli:
        cli.err.expect("connected to")
        gateway.wait_for_clients(1, timeout=T)
        gateway.send({"t": "BAD\x1b[31mNAME", "d": {"x": "\ud800", "y": "\x9b2J"}})
        gateway.send({"t": "CHANNEL_CREATE", "d": {"id": "1", "name": "\x1b]0;pwn\x07"}})
        gateway.send({"t": "END_OF_TEST"})
        lines = cli.out.expect("END_OF_TEST")
        assert cli.interrupt() == 0
    text = "\n".join(lines)
    assert "BAD\\x1b[31mNAME" in text
    assert "\\ud800" in text
    assert not CONTROL.search(cli.text())
    assert "Traceback" not in cli.text()


def test_listen_fatal_close_exits_1_with_one_line() -> None:
    """A session id the gateway refuses (4002) ends `listen` with status 1 and one line."""
    with LocalGateway(session_ids=["someone-else"]) as gw:
        proc = run("listen", "--session-id", SESSION, "--url", gw.ws_url)
    assert proc.returncode == 1
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("hatsu-sync")]
    assert len(error_lines) == 1
    assert "4002" in error_lines[0]
    assert "Traceback" not in proc.stderr
    assert SESSION not in proc.stdout + proc.stderr


def test_listen_failed_connect_exits_1() -> None:
    """A gateway that cannot be reached ends `listen` with status 1 and a one-line error."""
    with LocalGateway() as gw:
        dead = gw.ws_url
    proc = run("listen", "--session-id", SESSION, "--url", dead)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert dead in proc.stderr


def test_ctrl_c_during_connect_exits_0() -> None:
    """Ctrl-C while `listen` waits for a discovery answer exits 0 without a traceback."""
    with LocalGateway() as gw:
        gw.fail_discovery("hang")
        with running(
            "listen", "--session-id", SESSION, "--gateway", gw.http_url, "--timeout", "60"
        ) as cli:
            gw.wait_for_discovery_requests(1, timeout=T)
            # The client gives the cancelled attempt a moment (2 s) to end: a wider wait.
            assert cli.interrupt(timeout=T * 2) == 0
        gw.fail_discovery(None)
    assert "Traceback" not in cli.text()


def test_commands_get_ctrl_c_even_when_the_test_run_ignores_sigint() -> None:
    """A test run that inherited SIGINT as ignored (`pytest &`) still interrupts its children."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        cli = spawn("gateway")
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        cli.out.expect("Ctrl-C")
        assert cli.interrupt() == 0
    finally:
        cli.kill()


@pytest.mark.parametrize("command", ["demo", "listen", "gateway"])
def test_every_command_has_help_with_examples(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--help on every subcommand exits 0 and shows examples."""
    with pytest.raises(SystemExit) as caught:
        main([command, "--help"])
    assert caught.value.code == 0
    assert "examples:" in capsys.readouterr().out
