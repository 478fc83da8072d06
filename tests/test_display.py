"""Event displays (repr, str, _repr_html_, command-line lines) never show a session id."""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest

from hatsu_sync import _redact
from hatsu_sync._decode import Decoder
from hatsu_sync._format import describe
from hatsu_sync.models import (
    Ack,
    Event,
    Guild,
    GuildCreate,
    Notification,
    Ready,
    event_from_message,
)

# Not registered: only the structural rule can hide it.
UNREGISTERED = "sess-0b7e-UNREGISTERED-secret"
# Registered once, as a Client does with the session id it is given.
REGISTERED = "sess-92c4-REGISTERED-secret"
_redact.register(REGISTERED)

USER = {
    "_id": "907362914021453111",
    "username": "kiri",
    "separator": 420,
    "session_ids": [UNREGISTERED, REGISTERED],
}

DISPLAYS: list[tuple[str, Callable[[Any], str]]] = [
    ("repr", repr),
    ("str", str),
    ("html", lambda event: event._repr_html_()),
    ("describe", describe),
]


def decoded(msg: dict[str, Any]) -> Event:
    return Decoder().decode(json.dumps(msg).encode(), binary=False)


EVENTS: list[tuple[str, Callable[[], Event]]] = [
    (
        "ready",
        lambda: decoded({"t": "READY", "s": UNREGISTERED, "d": json.dumps(USER), "i": None}),
    ),
    ("hello", lambda: decoded({"t": "HELLO", "s": UNREGISTERED, "d": None, "i": "wait"})),
    (
        "notification",
        lambda: decoded(
            {"t": "NOTIFICATION", "type": "MENTION", "excerpt": f"you said {REGISTERED}!"}
        ),
    ),
    (
        "unknown",
        lambda: decoded(
            {"t": "SESSION_STATE", "d": {"session_id": UNREGISTERED, "list": [REGISTERED]}}
        ),
    ),
    (
        "unknown-without-d",
        lambda: decoded({"t": "X", "_s": UNREGISTERED, "nested": {"s": [UNREGISTERED]}}),
    ),
    ("ack", lambda: decoded({"t": "ACK", "_s": UNREGISTERED, "s": UNREGISTERED, "d": None})),
    (
        "hand-built-ready",
        lambda: Ready("READY", USER, {"t": "READY", "s": UNREGISTERED}, user=USER),
    ),
    (
        "guild-roles",
        lambda: event_from_message({"t": "GUILD_CREATE", "d": {"roles": [{"s": UNREGISTERED}]}}),
    ),
]


@pytest.mark.parametrize("display", [d for _, d in DISPLAYS], ids=[n for n, _ in DISPLAYS])
@pytest.mark.parametrize("make", [m for _, m in EVENTS], ids=[n for n, _ in EVENTS])
def test_no_display_shows_a_session_id(make: Callable[[], Event], display: Any) -> None:
    """repr, str, _repr_html_ and the command-line line hide echoed and registered session ids."""
    event = make()
    shown = display(event)
    assert UNREGISTERED not in shown
    assert REGISTERED not in shown
    assert event.name in shown or display is describe


def test_the_real_values_stay_in_data_and_raw() -> None:
    """Redaction is only in displays: data, raw and the typed fields keep the session ids."""
    event = decoded({"t": "READY", "s": UNREGISTERED, "d": json.dumps(USER), "i": None})
    assert isinstance(event, Ready)
    assert "[redacted]" in repr(event)
    assert event.raw["s"] == UNREGISTERED
    assert event.data["session_ids"] == [UNREGISTERED, REGISTERED]
    assert event.user == USER


def test_displays_keep_everything_else() -> None:
    """Names, numbers and ordinary text still show; only strings under s-keys are hidden."""
    event = decoded({"t": "READY", "s": UNREGISTERED, "d": json.dumps(USER), "i": None})
    text = repr(event)
    assert text.startswith("Ready(name='READY', data={")
    assert "'username': 'kiri'" in text
    assert "'separator': 420" in text
    assert "'session_ids': ['[redacted]', '[redacted]']" in text
    ack = Ack("ACK", None, {}, s=12)
    assert repr(ack) == "Ack(name='ACK', data=None, s=12)"
    assert "kiri#420" in describe(event)


def test_html_is_escaped_and_redacted() -> None:
    """_repr_html_ escapes markup and hides the session id in keys and values."""
    hostile = "<b>bold</b>"
    event = event_from_message(
        {"t": hostile, "d": {hostile: REGISTERED, "session_ids": [UNREGISTERED], "n": 1}}
    )
    page = event._repr_html_()
    assert "<b>" not in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert REGISTERED not in page
    assert UNREGISTERED not in page
    assert "[redacted]" in page


def test_short_session_ids_do_not_garble_lines() -> None:
    """A short session id is hidden as a token but not inside other words of a line."""
    event = event_from_message({"t": "NOTIFICATION", "type": "MENTION", "excerpt": "x and xyz"})
    line = describe(event, "x")
    assert "[redacted] and xyz" in line


def test_cycles_and_odd_values_display() -> None:
    """A value built by hand with a cycle or a non-JSON object still displays."""
    loop: dict[str, Any] = {"a": 1}
    loop["self"] = loop
    event = Event("X", data=loop)
    assert "'self': ..." in repr(event)
    assert "<table" in event._repr_html_()
    guild = Guild(roles=[object()])
    assert repr(guild).startswith("Guild(id=None")
    assert GuildCreate("GUILD_CREATE", guild=guild) == GuildCreate("GUILD_CREATE", guild=guild)
    assert isinstance(Notification("NOTIFICATION"), Event)
