"""The client at the edges of its process: fork, interpreter exit, garbage collection, and a
second open client for one session.

- Fork: a child process inherits every client's memory but none of its threads, and shares its
  sockets with the parent. Right after a fork, in the child only, every inherited client is
  disowned (see ``_Core.disown``): closed by flags alone, without calling the transport or
  taking a lock that a parent thread may have held at the time of the fork.
- Exit: the client's threads are daemons, so the interpreter never waits for them; at exit the
  open clients still say goodbye to the gateway with a close frame (bounded by a deadline).
- Garbage collection: an open client that is collected is closed first, then reported with a
  ResourceWarning that names where it was created when tracemalloc is on.
"""

from __future__ import annotations

import atexit
import os
import sys
import tracemalloc
import warnings
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["DuplicateClientWarning", "Origin", "closed", "opened", "track", "warn_unclosed"]


class DuplicateClientWarning(UserWarning):
    """A second open Client for the same session id in one process (each gets every event)."""


# The cores of every client made in this process (for fork), and the clients that are open
# (connected or connecting, not closed: for exit and the duplicate check). Weak: neither keeps
# a forgotten client alive.
_cores: weakref.WeakSet[Any] = weakref.WeakSet()
_open: weakref.WeakSet[Client] = weakref.WeakSet()


def track(core: Any) -> None:
    """Remember a client's core, to disown it in a forked child."""
    _cores.add(core)


def _after_fork_in_child() -> None:
    parent = os.getppid()
    for core in list(_cores):
        core.disown(parent)
    _open.clear()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def opened(client: Client, session_id: str) -> None:
    """Count ``client`` as open; warn if another open client uses the same session id."""
    for other in list(_open):
        if other is not client and not other.closed and other._settings.session_id == session_id:
            warnings.warn(
                f"another Client for the same session id is already open in this process "
                f"({other!r}): each open client keeps its own connection and runs its own "
                "handlers, so every event is handled twice. Close the old one with "
                "client.close(), or create clients with `with Client(...) as client:`; in a "
                "notebook, a client that a cell displayed stays referenced by Out[] after the "
                "cell is run again",
                DuplicateClientWarning,
                stacklevel=_caller_level(),
            )
            break
    _open.add(client)


def closed(client: Client) -> None:
    """Count ``client`` as no longer open."""
    _open.discard(client)


def _caller_level() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside the client's code."""
    frame = sys._getframe(1)
    level = 1
    internal = (__name__, __name__.rpartition(".")[0] + "._client")
    while frame is not None and frame.f_globals.get("__name__") in internal:
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


@atexit.register
def _close_all_at_exit() -> None:
    for client in list(_open):
        client.close(timeout=1.0)


class Origin:
    """An object made by the client's constructor, so tracemalloc knows where it was made.

    Python 3.11's tracemalloc cannot tell where an object with a managed ``__dict__`` (the
    client) was allocated; this one has no ``__dict__``. Used only when the client itself is
    not found.
    """

    __slots__ = ()


def warn_unclosed(client: Client, shown: str, origin: Origin | None) -> None:
    """Report a garbage-collected open client, ``shown`` as it was before the caller closed it.

    ``source`` lets the warnings module show where the client was allocated when tracemalloc
    is on, as it does for an unclosed socket.
    """
    source: object = client
    if tracemalloc.is_tracing() and tracemalloc.get_object_traceback(client) is None:
        source = origin
    warnings.warn(
        f"unclosed {shown}: call client.close() or use `with Client(...) as client:`",
        ResourceWarning,
        source=source,
        stacklevel=2,
    )
