"""`hatsu-sync gateway`: its URLs and ports, its stdin driver, and replaying recordings.

The gateway and listen run as real `python -m hatsu_sync` subprocesses; a Client in the test
process stands in for the user's own code where the events themselves are compared.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from hatsu_sync import Client
from hatsu_sync._samples import SAMPLE_EVENTS
from hatsu_sync.cli import main
from hatsu_sync.testing import LocalGateway

from ._cli import Cli, run, running
from .conftest import SESSION, T, take


def _urls(cli: Cli) -> tuple[str, str]:
    """The discovery and websocket URLs a gateway command printed."""
    lines = cli.out.expect("Ctrl-C")
    found = dict(
        line.split(": ", 1) for line in lines if line.startswith(("discovery:", "websocket:"))
    )
    return found["discovery"].strip(), found["websocket"].strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_gateway_prints_urls_that_listen_takes_verbatim() -> None:
    """The printed discovery URL is the base URL `listen --gateway` takes as is (so is the same
    with /available), and Ctrl-C ends the gateway with status 0."""
    with running("gateway") as gateway:
        discovery, websocket = _urls(gateway)
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", discovery)
        assert re.fullmatch(r"ws://127\.0\.0\.1:\d+", websocket)
        for url in (discovery, discovery + "/available"):
            with running("listen", "--session-id", SESSION, "--gateway", url) as listen:
                listen.err.expect(f"connected to {websocket}")
                listen.out.expect("READY")
                assert listen.interrupt() == 0
        assert gateway.interrupt() == 0
    assert "Traceback" not in gateway.text()


def test_gateway_binds_the_ports_it_is_given() -> None:
    """--port chooses the discovery port and --ws-port the websocket port."""
    http_port, ws_port = _free_port(), _free_port()
    with running("gateway", "--port", str(http_port), "--ws-port", str(ws_port)) as gateway:
        assert _urls(gateway) == (f"http://127.0.0.1:{http_port}", f"ws://127.0.0.1:{ws_port}")
        with Client(SESSION, gateway=f"http://127.0.0.1:{http_port}") as client:
            assert client.get_event(timeout=T).name == "HELLO"
        assert gateway.interrupt() == 0


def test_the_listen_help_example_has_a_gateway_to_talk_to(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The websocket URL in `listen --help`'s example is one `gateway --help`'s example serves,
    and the two commands, run as written there, talk to each other."""
    helps = {}
    for command in ("listen", "gateway"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        helps[command] = capsys.readouterr().out
    listen_example = re.search(
        r"hatsu-sync (listen --session-id x --url (ws://\S+) .*)", helps["listen"]
    )
    assert listen_example is not None
    port = example_port = listen_example.group(2).rsplit(":", 1)[1]
    assert f"hatsu-sync gateway --ws-port {port}" in helps["gateway"]
    try:  # verbatim when the port is free on this machine; else the same on a free port
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", int(port)))
    except OSError:
        port = str(_free_port())
    listen_args = listen_example.group(1).replace(f":{example_port}", f":{port}").split()
    with running("gateway", "--ws-port", port) as gateway:
        _urls(gateway)
        with running(*listen_args) as listen:
            listen.out.expect("READY")
            assert listen.interrupt() == 0
        assert gateway.interrupt() == 0


def test_stdin_lines_go_to_every_client_and_bad_lines_are_reported() -> None:
    """Each JSON object on the gateway's stdin reaches every connected client (a line typed
    before any client waits for one); a malformed line gets one line on stderr and the gateway
    goes on; after stdin ends it keeps serving until Ctrl-C."""
    with running("gateway", stdin=True) as gateway:
        discovery, _ = _urls(gateway)
        gateway.write('{"t": "EARLY", "d": 1}\n')  # no client yet: it waits for one
        with (
            Client(SESSION, gateway=discovery) as first,
            Client(SESSION, gateway=discovery) as second,
        ):
            assert [e.name for e in take(first, 3)] == ["HELLO", "READY", "EARLY"]
            take(second, 2)
            gateway.write("this is not json\n")
            gateway.write("[1, 2]\n")
            gateway.write("\n")
            gateway.write(json.dumps(SAMPLE_EVENTS[1]) + "\n")
            for client in (first, second):
                event = client.get_event(timeout=T)
                assert event.raw == SAMPLE_EVENTS[1]
            complaints = gateway.err.expect("line 3")
            assert len(complaints) == 2
            assert "line 2: not JSON" in complaints[0]
            assert "line 3: not a JSON object (a list)" in complaints[1]
        gateway.close_stdin()
        gateway.out.expect("stdin ended (2 line(s) sent)")
        with Client(SESSION, gateway=discovery) as late:  # still serving
            assert late.get_event(timeout=T).name == "HELLO"
        assert gateway.interrupt() == 0
    assert "Traceback" not in gateway.text()


def _record(path: Path) -> list[dict[str, object]]:
    """Record `listen --json` while a gateway sends every sample event; return what was sent."""
    sent = [*SAMPLE_EVENTS, {"t": "X", "odd": "\ud800\x1b[2J", "d": [None, 1.5, {"é": True}]}]
    with (
        LocalGateway() as gw,
        running("listen", "--session-id", SESSION, "--json", "--gateway", gw.http_url) as listen,
    ):
        listen.err.expect("connected to")
        gw.wait_for_clients(1, timeout=T)
        gw.send_many(sent)
        listen.out.expect('"X"')
        assert listen.interrupt() == 0
    path.write_text("\n".join(listen.out.seen) + "\n", encoding="utf-8")
    return sent


def test_a_listen_json_recording_replays_to_each_client_that_identifies(tmp_path: Path) -> None:
    """`gateway --replay` sends a `listen --json` recording to each client after its own READY:
    the same messages, field for field, in order (the recording's HELLO and READY skipped)."""
    recording = tmp_path / "rec.jsonl"
    sent = _record(recording)
    assert SESSION not in recording.read_text(encoding="utf-8")
    with running("gateway", "--replay", str(recording)) as gateway:
        discovery, _ = _urls(gateway)
        assert f"replaying {len(sent)} message(s)" in "\n".join(gateway.out.seen)
        for _ in range(2):
            with Client(SESSION, gateway=discovery) as client:
                events = take(client, 2 + len(sent))
            assert [e.name for e in events[:2]] == ["HELLO", "READY"]
            assert [e.raw for e in events[2:]] == sent
        assert gateway.interrupt() == 0


def test_replay_reports_bad_lines_and_refuses_a_file_without_any_object(tmp_path: Path) -> None:
    """Bad lines of a recording are reported (file and line number) and skipped; a file with
    nothing to replay, or no file, ends the gateway with status 1 and one line."""
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"t": "A"}\n{"t": "B", "d": \n', encoding="utf-8")
    with running("gateway", "--replay", str(mixed)) as gateway:
        gateway.out.expect("replaying 1 message(s)")
        assert f"{mixed}: line 2: not JSON" in gateway.err.expect("line 2")[0]
        assert gateway.interrupt() == 0
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\nworld\n", encoding="utf-8")
    for path, why in ((junk, "holds no JSON object"), (tmp_path / "missing.jsonl", "No such file")):
        proc = run("gateway", "--replay", str(path))
        assert proc.returncode == 1
        last = proc.stderr.splitlines()[-1]
        assert last.startswith("hatsu-sync gateway: ")
        assert str(path) in last
        assert why in last
        assert "Traceback" not in proc.stderr
