"""How the models show themselves: ``repr()``/``str()`` and notebooks' ``_repr_html_()``.

An event can hold the session id wherever the gateway echoes it: READY's ``s`` and
``d.session_ids``, ACK's ``_s``, a NOTIFICATION excerpt, an unknown event's data. Displays end
up in terminals, logs and saved notebooks, so every display here is redacted twice:

- structurally: under a key named in :data:`SECRET_KEYS` (in a dict, or a model field of that
  name) every string is shown as ``[redacted]``, however deeply nested; numbers and other
  values stay (an application heartbeat's ``s`` is usually a number). This protects events
  built by hand and ids no client registered;
- by value: every other string goes through :func:`hatsu_sync._redact.redact_known`, which
  hides the session id of every client made in this process, wherever it occurs.

The event's own ``data`` and ``raw`` are never changed: the redaction applies to the text shown.
No I/O; the functions take any model instance (a dataclass) and plain JSON values.
"""

from __future__ import annotations

import html
import json
from dataclasses import fields, is_dataclass
from typing import Any

from ._redact import REDACTED, redact_known

__all__ = ["SECRET_KEYS", "html_table", "plain", "show"]

#: Keys under which the gateway puts the session id (READY's ``s``, ``user.session_ids``,
#: ACK's ``_s``); every string under them is hidden in displays.
SECRET_KEYS = frozenset({"s", "_s", "session_id", "session_ids"})

_HTML_MAX_VALUE = 300
_HTML_MAX_ROWS = 50


def _is_model(value: object) -> bool:
    return is_dataclass(value) and not isinstance(value, type)


def show(value: Any) -> str:
    """``repr(value)`` with secrets hidden: models as ``Class(field=value, ...)`` (fields with
    ``repr=False`` left out), dicts, lists and tuples as Python shows them.

    Never raises for JSON values and models; a structure nested too deeply for the
    interpreter's recursion limit is shown as ``...`` below the depth reached.
    """
    try:
        return _show(value, False, set())
    except RecursionError:
        # Python's own repr() gives up the same way on such values; keep the display usable.
        return f"<{type(value).__name__} nested too deeply to show>"


def _show(value: Any, hidden: bool, active: set[int]) -> str:
    if isinstance(value, str):
        return repr(REDACTED if hidden else redact_known(value))
    kind = type(value)
    if value is None or kind is int or kind is float or kind is bool:
        return repr(value)
    key = id(value)
    if key in active:  # a cycle (only possible in values built by hand)
        return "..."
    active.add(key)
    try:
        if _is_model(value):
            parts = [
                f"{f.name}={_show(getattr(value, f.name), hidden or f.name in SECRET_KEYS, active)}"
                for f in fields(value)
                if f.repr
            ]
            return f"{kind.__qualname__}({', '.join(parts)})"
        if isinstance(value, dict):
            items = [
                f"{_show(k, hidden, active)}: {_show(v, hidden or k in SECRET_KEYS, active)}"
                for k, v in value.items()
            ]
            return "{" + ", ".join(items) + "}"
        if isinstance(value, list):
            return "[" + ", ".join(_show(item, hidden, active) for item in value) + "]"
        if isinstance(value, tuple):
            shown = [_show(item, hidden, active) for item in value]
            return "(" + ", ".join(shown) + ("," if len(shown) == 1 else "") + ")"
    finally:
        active.discard(key)
    # Anything else (a user's object set on a field by hand): its own repr, redacted by value.
    return redact_known(repr(value))


def plain(value: Any, hidden: bool = False) -> Any:
    """A JSON-like copy of ``value`` with secrets hidden (models become dicts of their shown
    fields), for displays that format JSON. Cycles become ``"..."``."""
    return _plain(value, hidden, set())


def _plain(value: Any, hidden: bool, active: set[int]) -> Any:
    if isinstance(value, str):
        return REDACTED if hidden else redact_known(value)
    kind = type(value)
    if value is None or kind is int or kind is float or kind is bool:
        return value
    key = id(value)
    if key in active:
        return "..."
    active.add(key)
    try:
        if _is_model(value):
            return {
                f.name: _plain(getattr(value, f.name), hidden or f.name in SECRET_KEYS, active)
                for f in fields(value)
                if f.repr
            }
        if isinstance(value, dict):
            return {
                _plain(str(k), hidden, active): _plain(v, hidden or k in SECRET_KEYS, active)
                for k, v in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [_plain(item, hidden, active) for item in value]
    finally:
        active.discard(key)
    return REDACTED if hidden else redact_known(str(value))


def html_table(event: Any, show_data: bool) -> str:
    """An event as an HTML table for Jupyter: one row per field (nested objects as dotted
    names, empty fields left out), every name and value redacted, then HTML-escaped.

    Args:
        event: the event (a model instance with a ``name``).
        show_data: whether to show ``data``; a model's own fields already say what it says.
    """
    rows: list[tuple[str, Any]] = []
    try:
        for f in fields(event):
            if f.repr and f.name != "name" and (f.name != "data" or show_data):
                _rows(f.name, getattr(event, f.name), f.name in SECRET_KEYS, rows)
    except RecursionError:
        rows = [("data", "(nested too deeply to show)")]
    hidden = len(rows) - _HTML_MAX_ROWS
    rows = rows[:_HTML_MAX_ROWS]
    body = "".join(
        f'<tr><th style="text-align:left">{html.escape(key)}</th>'
        f'<td style="text-align:left">{html.escape(_cell(value))}</td></tr>'
        for key, value in rows
    )
    if hidden > 0 or not rows:
        note = f"({hidden} more fields)" if rows else "(no data)"
        body += f'<tr><td colspan="2" style="text-align:left"><i>{note}</i></td></tr>'
    name = redact_known(str(event.name))
    title = f"{html.escape(name)} <small>({html.escape(type(event).__name__)})</small>"
    return (
        f'<table class="hatsu-event"><thead><tr><th colspan="2" style="text-align:left">'
        f"{title}</th></tr></thead><tbody>{body}</tbody></table>"
    )


def _rows(key: str, value: Any, hidden: bool, rows: list[tuple[str, Any]]) -> None:
    # Nested models become dotted rows, and so do dicts down to three levels; empty (None)
    # fields are left out. Each leaf is made plain (and redacted) on its own.
    if _is_model(value):
        for f in fields(value):
            if f.repr:
                item = getattr(value, f.name)
                _rows(f"{key}.{f.name}", item, hidden or f.name in SECRET_KEYS, rows)
    elif isinstance(value, dict) and value and key.count(".") < 2:
        for name, item in value.items():
            label = REDACTED if hidden else redact_known(str(name))
            _rows(f"{key}.{label}", item, hidden or name in SECRET_KEYS, rows)
    elif value is not None:
        rows.append((key, plain(value, hidden)))


def _cell(value: Any) -> str:
    if isinstance(value, (list, dict)):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    if len(text) > _HTML_MAX_VALUE:
        text = text[: _HTML_MAX_VALUE - 1] + "\u2026"
    return text
