"""Driving a LocalGateway from text: JSON lines to send now, and recordings to play back.

``hatsu-sync gateway`` uses these: every line typed or piped on its stdin goes to the connected
clients (:func:`feed_lines`), and ``--replay FILE`` plays a ``hatsu-sync listen --json``
recording to each client that identifies (:func:`read_recording` then
:meth:`LocalGateway.set_replay`). Parsing (:func:`parse_line`) is apart from the I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from ._gateway import LocalGateway

__all__ = ["HANDSHAKE_EVENTS", "feed_lines", "parse_line", "read_recording"]

#: The events a gateway sends by itself after identify: a recording's copies are not replayed.
HANDSHAKE_EVENTS = frozenset({"HELLO", "READY"})

# How often a wait for a client wakes up; it only bounds how late a stop request is seen.
_WAIT_STEP = 0.5
_EXCERPT = 60


def parse_line(line: str) -> dict[str, Any] | None:
    """The JSON object on one line, or None for a blank line.

    Raises:
        ValueError: the line is not JSON, or JSON that is not an object; the message is one
            short line that says why (with an excerpt of the line, control characters escaped).
    """
    text = line.strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except ValueError as exc:
        raise ValueError(f"not JSON ({_reason(exc)}): {_excerpt(text)}") from None
    if not isinstance(value, dict):
        raise ValueError(f"not a JSON object (a {type(value).__name__}): {_excerpt(text)}")
    return value


def read_recording(
    lines: Iterable[str], complain: Callable[[str], None]
) -> tuple[list[dict[str, Any]], int]:
    """The messages of a ``listen --json`` recording that a gateway should replay, in order.

    Blank lines are skipped; so are HELLO and READY (the gateway sends its own after each
    identify). A line that is not a JSON object is reported through ``complain`` (one line,
    naming its line number) and skipped.

    Returns:
        The messages, and the number of lines that were reported and skipped.
    """
    messages: list[dict[str, Any]] = []
    skipped = 0
    for number, line in enumerate(lines, 1):
        try:
            message = parse_line(line)
        except ValueError as exc:
            complain(f"line {number}: {exc}")
            skipped += 1
            continue
        if message is not None and message.get("t") not in HANDSHAKE_EVENTS:
            messages.append(message)
    return messages, skipped


def feed_lines(
    gateway: LocalGateway,
    lines: Iterable[str],
    complain: Callable[[str], None],
    stop: Callable[[], bool] = lambda: False,
) -> int:
    """Send the JSON object on each line to every client connected at that moment.

    Each line waits until at least one client has identified, so that nothing typed or piped
    before a client connects is lost. A line that is not a JSON object is reported through
    ``complain`` (one line, naming its line number) and the feed goes on.

    Args:
        gateway: a running LocalGateway.
        lines: the text to read, e.g. ``sys.stdin``; read until it ends.
        complain: called with one line of text for each line that could not be sent.
        stop: polled while waiting for a client; True ends the feed early.

    Returns:
        The number of lines sent.

    Raises:
        RuntimeError: the gateway stopped (or belongs to another process).
    """
    sent = 0
    for number, line in enumerate(lines, 1):
        try:
            message = parse_line(line)
        except ValueError as exc:
            complain(f"line {number}: {exc}")
            continue
        if message is None:
            continue
        while True:
            try:
                gateway.wait_for_clients(1, timeout=_WAIT_STEP)
            except TimeoutError:
                if stop():
                    return sent
                continue
            # Zero: the last client left between the wait and the send; wait for the next.
            if gateway.send(message):
                sent += 1
                break
    return sent


def _reason(exc: ValueError) -> str:
    # json.JSONDecodeError's msg is the reason without the position ("Expecting value").
    return str(getattr(exc, "msg", exc))


def _excerpt(text: str) -> str:
    shown = text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"
    # The line is shown on a terminal: no control character gets there as is.
    return shown.encode("unicode_escape", "backslashreplace").decode("ascii")
