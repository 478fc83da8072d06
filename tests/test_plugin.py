"""The pytest plugin: the hatsu_gateway fixture, its options, and its entry point."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytest_plugins = ["pytester"]

# When hatsu-sync is installed (tox), its entry point loads the plugin as "hatsu_sync"; block
# that name and load the module explicitly, so that these runs are the same either way.
PLUGIN_ARGS = ("-p", "no:hatsu_sync", "-p", "hatsu_sync.pytest_plugin", "-p", "no:cacheprovider")


@pytest.fixture
def pytester_env(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose subprocesses import this checkout's hatsu_sync."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)
    return pytester


def test_fixture_gives_a_running_gateway_stopped_after_the_test(
    pytester_env: pytest.Pytester,
) -> None:
    """hatsu_gateway is a running LocalGateway that a Client can use; it is stopped afterwards."""
    pytester_env.makepyfile(
        """
        from hatsu_sync import Client

        seen = []

        def test_uses_it(hatsu_gateway):
            seen.append(hatsu_gateway)
            assert hatsu_gateway.running
            with Client("any", gateway=hatsu_gateway.http_url) as client:
                hatsu_gateway.wait_for_clients()
                hatsu_gateway.send({"t": "GUILD_DELETE", "d": None})
                names = [client.get_event(timeout=5).name for _ in range(3)]
            assert names == ["HELLO", "READY", "GUILD_DELETE"]

        def test_it_was_stopped():
            assert not seen[0].running
        """
    )
    result = pytester_env.runpytest(*PLUGIN_ARGS)
    result.assert_outcomes(passed=2)


def test_fixture_options_can_be_overridden(pytester_env: pytest.Pytester) -> None:
    """Overriding hatsu_gateway_options configures the gateway (here: one accepted session)."""
    pytester_env.makeconftest(
        """
        import pytest

        @pytest.fixture
        def hatsu_gateway_options():
            return {"session_ids": {"only-this-one"}}
        """
    )
    pytester_env.makepyfile(
        """
        import pytest
        from hatsu_sync import Client, GatewayClosed

        def test_other_sessions_are_refused(hatsu_gateway):
            assert hatsu_gateway.session_ids == {"only-this-one"}
            with Client("someone-else", gateway=hatsu_gateway.http_url) as client:
                with pytest.raises(GatewayClosed) as caught:
                    client.get_event(timeout=5)
            assert caught.value.code == 4002
        """
    )
    result = pytester_env.runpytest(*PLUGIN_ARGS)
    result.assert_outcomes(passed=1)


def test_setup_declares_the_pytest11_entry_point() -> None:
    """setup.py registers the plugin module under pytest11, next to the console script."""
    text = (REPO / "setup.py").read_text(encoding="utf-8")
    assert '"pytest11": ["hatsu_sync = hatsu_sync.pytest_plugin"]' in text
    assert '"console_scripts": ["hatsu-sync = hatsu_sync.cli:main"]' in text


def test_installed_entry_point_loads_the_plugin(pytester_env: pytest.Pytester) -> None:
    """With hatsu-sync installed, pytest offers hatsu_gateway without any -p option."""
    try:
        dist = metadata.distribution("hatsu-sync")
    except metadata.PackageNotFoundError:
        pytest.skip("hatsu-sync is not installed (tox installs it)")
    entry_points = configparser.ConfigParser()
    entry_points.read_string(dist.read_text("entry_points.txt") or "")
    assert entry_points["pytest11"]["hatsu_sync"] == "hatsu_sync.pytest_plugin"
    pytester_env.makepyfile(
        """
        def test_uses_it(hatsu_gateway):
            assert hatsu_gateway.running
        """
    )
    result = pytester_env.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1)


HEAVY_MODULES = ("hatsu_sync._client", "hatsu_sync.models", "websocket", "requests", "websockets")


def _loaded_after(code: str) -> list[str]:
    """The HEAVY_MODULES a fresh interpreter has loaded after running ``code``."""
    script = (
        f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        },
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_loading_the_plugin_imports_neither_the_client_nor_its_dependencies() -> None:
    """Importing the plugin module (what the pytest11 entry point does) loads no client code."""
    assert _loaded_after("import hatsu_sync.pytest_plugin") == []


def test_a_pytest_run_with_the_plugin_but_no_fixture_stays_light(
    pytester_env: pytest.Pytester,
) -> None:
    """A pytest session that loads the plugin and never uses hatsu_gateway imports no client."""
    pytester_env.makepyfile(
        f"""
        import sys

        def test_nothing_heavy_was_imported():
            assert [m for m in {HEAVY_MODULES!r} if m in sys.modules] == []
        """
    )
    result = pytester_env.runpytest_subprocess(*PLUGIN_ARGS, timeout=60)
    result.assert_outcomes(passed=1)


def test_public_names_load_on_first_use() -> None:
    """`from hatsu_sync import X` and `hatsu_sync.X` give every name of __all__, lazily."""
    code = (
        "import hatsu_sync, sys\n"
        "assert 'hatsu_sync._client' not in sys.modules\n"
        "from hatsu_sync import Client\n"
        "assert Client.__module__ == 'hatsu_sync._client'\n"
        "from hatsu_sync import *\n"
        "assert all(hasattr(hatsu_sync, n) for n in hatsu_sync.__all__)\n"
        "assert set(hatsu_sync.__all__) <= set(dir(hatsu_sync))\n"
        "try:\n"
        "    hatsu_sync.NoSuchName\n"
        "except AttributeError as exc:\n"
        "    assert 'NoSuchName' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('no AttributeError')\n"
    )
    assert "hatsu_sync._client" in _loaded_after(code)
