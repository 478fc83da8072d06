"""hatsu_sync.testing as a package: its public names, replays, text drivers, and fork()."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import hatsu_sync.testing
from hatsu_sync import Client
from hatsu_sync._samples import SAMPLE_EVENTS
from hatsu_sync.testing import LocalGateway
from hatsu_sync.testing._drivers import feed_lines, parse_line, read_recording

from .conftest import SESSION, T, take

PACKAGE = Path(hatsu_sync.testing.__file__).parent


def test_public_names_are_importable_from_hatsu_sync_testing() -> None:
    """The package exports exactly the names testing.py exported, under its own name."""
    assert sorted(hatsu_sync.testing.__all__) == ["DEFAULT_USER", "LocalGateway", "SAMPLE_EVENTS"]
    for name in hatsu_sync.testing.__all__:
        assert getattr(hatsu_sync.testing, name) is not None
    assert hatsu_sync.testing.SAMPLE_EVENTS is SAMPLE_EVENTS
    assert LocalGateway.__module__ == "hatsu_sync.testing"


def test_no_module_of_the_package_is_over_500_lines() -> None:
    """Each module of hatsu_sync/testing/ stays small (the old testing.py had 1,500 lines)."""
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.glob("*.py")}
    assert len(sizes) >= 8, sizes
    assert max(sizes.values()) <= 500, sizes


def test_replay_goes_to_each_new_client_after_its_ready() -> None:
    """set_replay: every client that identifies gets the messages, in order, after READY."""
    recording = SAMPLE_EVENTS[:4]
    with LocalGateway() as gw:
        gw.set_replay(recording)
        for _ in range(2):  # each client gets the whole recording
            with Client(SESSION, url=gw.ws_url) as client:
                events = take(client, 2 + len(recording))
            assert [e.name for e in events[:2]] == ["HELLO", "READY"]
            assert [e.raw for e in events[2:]] == recording
        gw.set_replay(None)
        with Client(SESSION, url=gw.ws_url) as client:
            gw.wait_for_clients(1, timeout=T)
            gw.send({"t": "AFTER"})
            assert [e.name for e in take(client, 3)] == ["HELLO", "READY", "AFTER"]


def test_replay_refuses_what_is_not_json() -> None:
    """set_replay with a payload json cannot encode raises TypeError."""
    with LocalGateway() as gw, pytest.raises(TypeError):
        gw.set_replay([{"t": "X", "d": object()}])


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object (a list)"),
        ('"text"', "not a JSON object (a str)"),
        ("[" * 100_000, "nested too deeply"),
        ('{"t": "A"} trailing', "not JSON"),
    ],
)
def test_parse_line_explains_bad_lines(line: str, why: str) -> None:
    """A line that is not one JSON object raises ValueError with a one-line reason."""
    with pytest.raises(ValueError, match=re.escape(why)) as caught:
        parse_line(line)
    message = str(caught.value)
    assert "\n" not in message
    assert len(message) < 200


def test_parse_line_escapes_control_characters_in_its_excerpt() -> None:
    """The excerpt of a bad line shows ESC and other controls as escapes, never raw."""
    with pytest.raises(ValueError, match="not JSON") as caught:
        parse_line("\x1b]0;pwned\x07 \x9b31m \ud800")
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in str(caught.value))
    assert "\\x1b" in str(caught.value)


def test_parse_line_takes_objects_and_skips_blank_lines() -> None:
    """A JSON object is returned as a dict; a blank line gives None."""
    assert parse_line('  {"t": "A", "d": null}\n') == {"t": "A", "d": None}
    assert parse_line("   \n") is None


def test_read_recording_skips_handshake_and_reports_bad_lines() -> None:
    """A recording loses HELLO/READY and bad lines (each reported with its number), in order."""
    text = "\n".join(
        [
            '{"t": "HELLO", "s": "x", "d": null}',
            '{"t": "READY", "s": "[redacted]", "d": "{}"}',
            '{"t": "A", "id": 1}',
            "oops",
            "",
            '{"t": "B"}',
        ]
    )
    complaints: list[str] = []
    messages, skipped = read_recording(io.StringIO(text), complaints.append)
    assert messages == [{"t": "A", "id": 1}, {"t": "B"}]
    assert skipped == 1
    assert len(complaints) == 1
    assert complaints[0].startswith("line 4: not JSON")


def test_feed_lines_waits_for_a_client_then_sends_every_object() -> None:
    """Lines fed before any client connects are kept until one identifies; bad lines are
    reported and skipped."""
    lines = ['{"t": "ONE"}', "not json", '{"t": "TWO"}']
    complaints: list[str] = []
    with LocalGateway() as gw:
        result: list[int] = []
        feeder = threading.Thread(
            target=lambda: result.append(feed_lines(gw, lines, complaints.append))
        )
        feeder.start()
        with Client(SESSION, url=gw.ws_url) as client:
            names = [e.name for e in take(client, 4)]
        feeder.join(T)
    assert not feeder.is_alive()
    assert names == ["HELLO", "READY", "ONE", "TWO"]
    assert result == [2]
    assert complaints == ["line 2: not JSON (Expecting value): not json"]


def test_feed_lines_can_be_stopped_while_waiting() -> None:
    """feed_lines returns when ``stop`` says so while no client is connected."""
    stop = threading.Event()
    with LocalGateway() as gw:
        stop.set()
        assert feed_lines(gw, ['{"t": "A"}'], lambda text: None, stop=stop.is_set) == 0


_FORK_SCRIPT = textwrap.dedent(
    """
    import os, sys, threading
    from hatsu_sync import Client
    from hatsu_sync.testing import LocalGateway

    N_FORKS, N_SENT = 12, 400
    gw = LocalGateway(session_ids=["fork-test-session"]).start()
    client = Client("fork-test-session", url=gw.ws_url, reconnect=False).__enter__()
    gw.wait_for_clients(1, timeout=5)
    url, ws_url = gw.http_url, gw.ws_url

    # The parent sends all the while: forks land in every state of the gateway's threads.
    def broadcast():
        for i in range(N_SENT):
            gw.send({"t": "N", "d": i})
    sender = threading.Thread(target=broadcast)
    sender.start()

    for _ in range(N_FORKS):
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                assert gw.http_url == url and gw.ws_url == ws_url, "urls"
                assert not gw.running, "running"
                assert "inert" in repr(gw), repr(gw)
                calls = [
                    lambda: gw.send({"t": "FROM_CHILD"}),
                    lambda: gw.send_raw("junk"),
                    lambda: gw.disconnect(1000),
                    lambda: gw.abort(),
                    lambda: gw.go_silent(),
                    lambda: gw.restart(),
                    lambda: gw.wait_for_clients(1, timeout=0.1),
                    lambda: gw.identifies,
                    lambda: gw.set_replay([]),
                    lambda: gw.start(),
                ]
                for call in calls:
                    try:
                        call()
                    except RuntimeError as exc:
                        assert "belongs to the parent process" in str(exc), str(exc)
                    else:
                        raise AssertionError("no RuntimeError")
                gw.stop()  # closes this child's copies of the descriptors only
                gw.stop()
            except BaseException as exc:
                print("child:", repr(exc), file=sys.stderr, flush=True)
                status = 1
            os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert status == 0, status

    sender.join(30)
    got = [client.get_event(timeout=5) for _ in range(2 + N_SENT)]
    assert [e.name for e in got[:2]] == ["HELLO", "READY"]
    assert [e.data for e in got[2:]] == list(range(N_SENT)), "lost or reordered"
    assert client.state.name == "CONNECTED", client.state
    assert gw.running and gw.clients == 1
    assert not any(e.get("t") == "FROM_CHILD" for e in gw.received)
    gw.send({"t": "STILL_HERE"})
    assert client.get_event(timeout=5).name == "STILL_HERE"
    # The parent's endpoints still accept new clients.
    with Client("fork-test-session", gateway=gw.http_url) as second:
        assert second.get_event(timeout=5).name == "HELLO"
    client.close()
    gw.stop()
    print("ok")
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_leaves_the_parents_gateway_alone() -> None:
    """In a child, an inherited LocalGateway refuses every method (RuntimeError) and touches
    nothing of the parent's; the parent's gateway and its client go on undisturbed."""
    proc = subprocess.run(
        [sys.executable, "-c", _FORK_SCRIPT],
        capture_output=True,
        text=True,
        timeout=T * 12,
        env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert "Traceback" not in proc.stderr


def test_recording_lines_round_trip_through_json() -> None:
    """What set_replay sends is the recording's JSON, unchanged (fields, order, values)."""
    message = {"t": "PRESENCE_UPDATE", "id": "42", "d": {"type": 1, "x": "\u00e9\ud800"}}
    with LocalGateway() as gw:
        gw.set_replay([message])
        with Client(SESSION, url=gw.ws_url) as client:
            replayed = take(client, 3)[2]
    assert json.dumps(replayed.raw) == json.dumps(message)
