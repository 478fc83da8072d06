"""The notebook example in a real Jupyter kernel, and what makes the client notebook-friendly."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ipykernel.iostream
import nbformat
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_notebook

from hatsu_sync.models import event_from_message
from hatsu_sync.testing import SAMPLE_EVENTS

from .conftest import T

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "examples" / "notebook.ipynb"
BLOCKED = "BLOCKED-IN-GET-EVENT"

# Run in the kernel by the blocking cell: a thread that says when the kernel's main thread is
# inside get_event(), waiting, so that the interrupt surely lands there.
SIGNAL_WHEN_BLOCKED = f"""
import sys, threading, time
def _signal_when_blocked(main=threading.get_ident()):
    deadline = time.monotonic() + {T * 4}
    while time.monotonic() < deadline:
        frame, names = sys._current_frames().get(main), set()
        while frame is not None:
            names.add(frame.f_code.co_name)
            frame = frame.f_back
        if {{"get_event", "wait"}} <= names:
            print({BLOCKED!r}, flush=True)
            return
        time.sleep(0.001)
threading.Thread(target=_signal_when_blocked, daemon=True).start()
"""


class _Frontend(NotebookClient):
    """A notebook client that notices when the kernel prints the BLOCKED marker."""

    blocked: asyncio.Event | None = None  # made in the running loop (Python 3.9 needs that)

    def output(self, outs: Any, msg: Any, display_id: Any, cell_index: int) -> Any:
        text = msg["content"].get("text", "") if msg["msg_type"] == "stream" else ""
        if BLOCKED in text and self.blocked is not None:
            self.blocked.set()
        return super().output(outs, msg, display_id, cell_index)


def _kernel_env() -> dict[str, str]:
    # The local gateway, never a real one; hatsu_sync importable whether installed or not.
    env = {k: v for k, v in os.environ.items() if k != "HATSU_SESSION_ID"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _notebook_cells() -> dict[str, NotebookNode]:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    return {cell.id: cell for cell in nb.cells}


def _run(cells: Iterable[NotebookNode | str], tmp_path: Path, interrupt: str = "") -> list[Any]:
    """Run ``cells`` in order in a new kernel; a cell whose source holds ``interrupt`` (when
    given) gets the kernel's interrupt once it is blocked. Returns the executed cells."""
    nb = new_notebook(
        cells=[new_code_cell(c) if isinstance(c, str) else c.copy() for c in cells],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    frontend = _Frontend(
        nb,
        timeout=T * 6,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )

    async def main() -> None:
        frontend.blocked = blocked = asyncio.Event()
        async with frontend.async_setup_kernel(env=_kernel_env()):
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                if interrupt and interrupt in cell.source:
                    running = asyncio.ensure_future(frontend.async_execute_cell(cell, index))
                    await asyncio.wait_for(blocked.wait(), T * 4)
                    assert frontend.km is not None
                    await frontend.km.interrupt_kernel()
                    await asyncio.wait_for(running, T * 4)
                else:
                    await frontend.async_execute_cell(cell, index)

    asyncio.run(main())
    return list(nb.cells)


def _text(cell: Any, name: str = "stdout") -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("name") == name)


def _errors(cell: Any) -> list[str]:
    return [o["ename"] for o in cell.get("outputs", []) if o.output_type == "error"]


def _html(cell: Any) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in cell.outputs)


def test_notebook_is_committed_without_outputs() -> None:
    """Every code cell of examples/notebook.ipynb is committed without outputs or counts."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)


def test_notebook_runs_top_to_bottom(tmp_path: Path) -> None:
    """The notebook runs in a real kernel: handler output in its cell, events as HTML tables."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = {cell.id: cell for cell in _run(nb.cells, tmp_path)}
    for cell in cells.values():
        assert not _errors(cell), (cell.source, cell.outputs)
    # The handler printed on the callback thread while its cell was running: it shows there.
    assert "presence: user 907362914021453111 is now type 1" in _text(cells["connect"])
    assert "'PRESENCE_UPDATE'" in str(cells["pull"].outputs)
    table = _html(cells["table"])
    assert table.count("<tr>") == 7
    assert "GUILD_INIT" in table
    one = _html(cells["one"])
    assert 'class="hatsu-event"' in one
    assert "presence.embed.text.top" in one
    assert "CLOSED" in str(cells["close"].outputs)
    assert not _text(cells["setup"], "stderr")


def test_interrupt_stops_a_blocked_get_event_and_the_kernel_goes_on(tmp_path: Path) -> None:
    """A cell blocked in get_event() ends with KeyboardInterrupt on the kernel's interrupt, and
    the next cells run with the same client still connected."""
    nb = _notebook_cells()
    drain = "rest = [client.get_event(timeout=10) for _ in range(2 + len(SAMPLE_EVENTS) - 6)]"
    blocked = SIGNAL_WHEN_BLOCKED + "client.get_event()  # no timeout: blocks\n"
    after = (
        'gateway.send({"t": "NOTIFICATION", "type": "MENTION", "excerpt": {}})\n'
        "print(client.get_event(timeout=10).name, client.state.name)"
    )
    cells = _run(
        [nb["setup"], nb["connect"], nb["pull"], drain, blocked, after, nb["close"]],
        tmp_path,
        interrupt="no timeout: blocks",
    )
    assert _errors(cells[4]) == ["KeyboardInterrupt"]
    assert BLOCKED in _text(cells[4])
    for index in (0, 1, 2, 3, 5, 6):
        assert not _errors(cells[index]), cells[index].outputs
    assert _text(cells[5]).strip() == "NOTIFICATION CONNECTED"


def _execute(client: Any, code: str, streams: list[tuple[str, str]]) -> str:
    """Run ``code`` as a cell; collect every stream message as (its cell's msg_id, text)
    until the cell is done. Returns the cell's msg_id."""
    msg_id: str = client.execute(code)
    while True:
        msg = client.get_iopub_msg(timeout=T * 4)
        parent = msg["parent_header"].get("msg_id", "")
        if msg["msg_type"] == "stream":
            streams.append((parent, msg["content"]["text"]))
        elif msg["msg_type"] == "error":
            raise AssertionError(f"{code!r} failed: {msg['content']['ename']}")
        elif (
            msg["msg_type"] == "status"
            and parent == msg_id
            and msg["content"]["execution_state"] == "idle"
        ):
            return msg_id


def test_handler_output_goes_to_the_cell_ipykernel_picks(tmp_path: Path) -> None:
    """A handler's print lands in the cell running connect() while it runs; later, in the cell
    that started the client's threads (ipykernel 6) or the one running then (ipykernel 7)."""
    nb = _notebook_cells()
    later = (
        "first_presence.clear()\n"
        'gateway.send({"t": "PRESENCE_UPDATE", "id": "77", "d": {"type": 3}})\n'
        "assert first_presence.wait(timeout=10)"
    )
    streams: list[tuple[str, str]] = []
    manager, client = start_new_kernel(kernel_name="python3", env=_kernel_env(), cwd=tmp_path)
    try:
        _execute(client, nb["setup"].source, streams)
        connect_id = _execute(client, nb["connect"].source, streams)
        later_id = _execute(client, later, streams)
        _execute(client, nb["close"].source, streams)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)

    def cell_of(text: str) -> str:
        owners = {parent for parent, chunk in streams if text in chunk}
        assert len(owners) == 1, (text, streams)
        return owners.pop()

    assert cell_of("presence: user 907362914021453111 is now type 1") == connect_id
    # ipykernel 6.29+ maps each thread to the cell that was running when it started.
    by_thread = "_thread_to_parent" in inspect.getsource(ipykernel.iostream)
    assert cell_of("presence: user 77 is now type 3") == (connect_id if by_thread else later_id)


def test_unclosed_client_warns_in_the_kernel(tmp_path: Path) -> None:
    """A connected client dropped in a notebook (a re-run cell) closes itself with a warning."""
    nb = _notebook_cells()
    rerun = (
        "import gc, warnings\n"
        'warnings.simplefilter("default", ResourceWarning)\n'
        "old = client\n"
        'client = Client("notebook-session", gateway=gateway.http_url)  # the cell, run again\n'
        "del old\n"
        "gc.collect()\n"
        "print(sum(t.name.startswith('hatsu-sync') for t in threading.enumerate()))"
    )
    cells = _run([nb["setup"], nb["connect"], rerun, nb["close"]], tmp_path)
    assert not any(_errors(cell) for cell in cells)
    assert "ResourceWarning: unclosed <hatsu_sync.Client" in _text(cells[2], "stderr")
    assert "notebook-session" not in _text(cells[2], "stderr")
    assert _text(cells[2]).strip() == "0"  # the old client's threads are gone


def test_repr_html_escapes_everything() -> None:
    """Event._repr_html_ escapes names, keys and values, so contents cannot inject markup."""
    hostile = "<script>alert(1)</script>"
    event = event_from_message({"t": hostile, "d": {hostile: hostile, "n": [hostile]}})
    page = event._repr_html_()
    assert "<script>" not in page
    assert page.count("&lt;script&gt;") == 4
    presence = event_from_message(SAMPLE_EVENTS[1])._repr_html_()
    assert "<th" in presence
    assert "Chillhop" in presence
