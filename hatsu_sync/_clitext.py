"""What the command line prints, made safe: no secret, no terminal control, always encodable.

Pure functions (no I/O), used by :mod:`hatsu_sync.cli` for every line it writes:

- :func:`terminal_safe` for human-readable lines: control characters (C0, DEL, C1, which
  include ESC and CSI) and lone surrogates are written as backslash escapes (``\\x1b``,
  ``\\ud800``), so an event cannot move the cursor, recolour or retitle the terminal, and a
  line can always be encoded.
- :func:`json_line` for ``listen --json``: the message exactly as the gateway sent it (every
  field, in order), with the session id redacted, as one line of valid JSON in which the same
  characters appear as ``\\uXXXX`` escapes, so that ``json.loads`` gives back the same value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from ._redact import redact, redact_known, redact_urls

__all__ = ["hide", "json_line", "terminal_safe"]

# C0 controls, DEL, C1 controls, lone surrogates (a str holds a valid pair as one code point).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# What json.dumps(ensure_ascii=False) leaves raw and a terminal or an editor may act on: DEL,
# C1, lone surrogates (not encodable in UTF-8), and the Unicode line and paragraph separators.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _backslash(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def hide(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with each of ``secrets``, every session id this process knows, and any URL
    password redacted (by :mod:`hatsu_sync._redact`'s rule)."""
    for secret in secrets:
        text = redact(text, secret)
    return redact_urls(redact_known(text))


def terminal_safe(text: str) -> str:
    """``text`` with every control character and lone surrogate written as an escape."""
    return _UNSAFE.sub(_backslash, text)


def _redacted(value: Any, secrets: tuple[str, ...]) -> Any:
    """A copy of a JSON value whose strings (keys too) have the secrets redacted in place."""
    if isinstance(value, str):
        return hide(value, secrets)
    if isinstance(value, dict):
        return {hide(str(key), secrets): _redacted(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item, secrets) for item in value]
    return value


def json_line(message: Any, secrets: Iterable[str] = ()) -> str:
    """One line of JSON: ``message`` with the secrets redacted, safe for a terminal.

    Strings keep their structure (a READY's ``d``, a JSON document in a string, stays a string
    with the session id replaced inside it). Non-ASCII text stays readable; what is unsafe is
    escaped as JSON allows, so the line decodes to the redacted message exactly.
    """
    hidden = _redacted(message, tuple(secrets))
    text = json.dumps(hidden, ensure_ascii=False, default=str)
    return _JSON_UNSAFE.sub(_json_escape, text)
