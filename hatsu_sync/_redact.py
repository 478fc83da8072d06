"""Keeping secrets out of what is shown: the session id, and passwords in URLs.

One rule for every place that shows text (log lines, exception messages, reprs, event displays,
the command line), so that they all agree on what a secret looks like:

- A session id of :data:`ANYWHERE` characters or more (real ids are long random strings) is
  replaced wherever it occurs. A shorter one is replaced only where it stands as a token of its
  own (not inside a longer run of letters, digits, ``_``, ``-`` or ``.``): session id ``x`` must
  not turn ``gateway.vincentrps.xyz`` into ``gateway.vincentrps.[redacted]yz``, nor session id
  ``1`` make ``ws://127.0.0.1`` look as if it held the secret.
- The session ids of every :class:`~hatsu_sync.Client` created in this process are known here
  (:func:`register`), so that an event's display can be redacted without knowing which client
  received it: events outlive their clients and travel between threads.
- A URL's password (``scheme://user:password@host``) is shown as ``user:[redacted]@``.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "ANYWHERE",
    "REDACTED",
    "known_secrets",
    "mentions",
    "redact",
    "redact_known",
    "redact_url",
    "redact_urls",
    "register",
]

REDACTED = "[redacted]"
"""What stands where a secret was."""

ANYWHERE = 8
"""Secrets at least this long are redacted wherever they occur; shorter ones as tokens only."""

# The characters that continue a token: a short secret next to one of them is part of a longer
# word (a host name, a number), not the secret itself.
_WORD = r"A-Za-z0-9_.\-"


@lru_cache(maxsize=64)
def _pattern(secret: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![{_WORD}]){re.escape(secret)}(?![{_WORD}])")


def mentions(text: str, secret: str) -> bool:
    """True if ``text`` shows ``secret`` by the module's rule (see the module docstring)."""
    if not secret or secret not in text:
        return False
    if len(secret) >= ANYWHERE:
        return True
    return _pattern(secret).search(text) is not None


def redact(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` (by the module's rule) replaced."""
    if not secret or secret not in text:
        return text
    if len(secret) >= ANYWHERE:
        return text.replace(secret, REDACTED)
    return _pattern(secret).sub(REDACTED, text)


# Session ids of the clients created in this process. Never shrinks: an event can be shown
# long after its client is gone. A tuple, swapped whole, so readers need no lock.
_known: tuple[str, ...] = ()
_known_lock = threading.Lock()


def register(secret: str) -> None:
    """Remember ``secret`` so that :func:`redact_known` hides it from now on."""
    global _known
    with _known_lock:
        if secret and secret not in _known:
            # Longest first: a secret that contains another is replaced whole.
            _known = tuple(sorted((*_known, secret), key=len, reverse=True))


def known_secrets() -> tuple[str, ...]:
    """The secrets :func:`register` has seen, longest first."""
    return _known


def redact_known(text: str) -> str:
    """``text`` with every registered secret redacted."""
    for secret in _known:
        text = redact(text, secret)
    return text


# scheme://user:password@ inside arbitrary text (an exception message quoting a URL).
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*):[^/\s@]*@")


def redact_url(url: str) -> str:
    """``url`` with the password of its user info, if any, replaced.

    Never raises: a value that does not parse as a URL goes through :func:`redact_urls`.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return redact_urls(url)
    if password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{hostport}"))


def redact_urls(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it replaced."""
    if "@" not in text:
        return text
    return _USERINFO.sub(rf"\g<head>:{REDACTED}@", text)
