"""Every example script runs, against a LocalGateway, as a user would run it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hatsu_sync.testing import SAMPLE_EVENTS

from .conftest import T

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def example_env() -> dict[str, str]:
    """The environment for running an example: no session id (so the local gateway), and
    hatsu_sync importable whether it is installed or not."""
    env = {k: v for k, v in os.environ.items() if k != "HATSU_SESSION_ID"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_example(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=example_env(),
        cwd=cwd,
        timeout=T * 6,
    )


def test_pull_prints_every_sample_event(tmp_path: Path) -> None:
    """examples/pull.py prints HELLO, READY and every sample event, in order, and exits 0."""
    done = run_example(str(EXAMPLES / "pull.py"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    names = [line.split(":")[0] for line in done.stdout.splitlines()]
    assert names == ["HELLO", "READY", *(m["t"] for m in SAMPLE_EVENTS)]
    assert "user 907362914021453111 is now type 1" in done.stdout


def test_callbacks_handles_both_connections(tmp_path: Path) -> None:
    """examples/callbacks.py sees every event on both connections, reconnects once, exits 0."""
    done = run_example(str(EXAMPLES / "callbacks.py"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("-- connected to ws://127.0.0.1:") == 2
    assert "-- disconnected (code 1011, restarting): reconnecting" in out
    assert "-- disconnected (code 1000, closed by the client): done" in out
    assert f" {2 * (2 + len(SAMPLE_EVENTS))} SOMETHING_NEW" in out
    assert out.count("notification FRIEND_REQUEST") == 2
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("where", ["examples folder", "elsewhere"])
def test_zlib_example_runs_from_anywhere(where: str, tmp_path: Path) -> None:
    """examples/zlib_stream.py decodes the zlib stream, run from its own folder or not."""
    if where == "examples folder":
        done = run_example("zlib_stream.py", cwd=EXAMPLES)
    else:
        done = run_example(str(EXAMPLES / "zlib_stream.py"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "GUILD_INIT: 'Very Large Guild' with 2000 channels" in done.stdout
    assert f"{3 + len(SAMPLE_EVENTS)} events, 0 decode errors" in done.stdout


def test_no_example_hides_a_module() -> None:
    """Python puts a script's folder first on the import path: an example named like a
    module (it was once zlib.py) would replace that module for every example run from
    there, hatsu_sync's own imports included."""
    hidden = [p.name for p in EXAMPLES.glob("*.py") if importlib.util.find_spec(p.stem)]
    assert hidden == []


def test_example_help_mentions_the_session_id(tmp_path: Path) -> None:
    """Every example script takes --session-id (else HATSU_SESSION_ID) for the real gateway."""
    for script in ("pull.py", "callbacks.py", "zlib_stream.py"):
        done = run_example(str(EXAMPLES / script), "--help", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "--session-id" in done.stdout


def test_my_bot_tests_pass_with_the_plugin(tmp_path: Path) -> None:
    """examples/test_my_bot.py passes under pytest with the hatsu_gateway fixture."""
    # `-p no:hatsu_sync` first: when hatsu-sync is installed its entry point registers the
    # plugin too, and the same module cannot be registered twice under two names.
    done = run_example(
        "-m",
        "pytest",
        "-p",
        "no:hatsu_sync",
        "-p",
        "hatsu_sync.pytest_plugin",
        "-p",
        "no:cacheprovider",
        "-q",
        "--rootdir",
        str(tmp_path),
        str(EXAMPLES / "test_my_bot.py"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed, 1 skipped" in done.stdout
