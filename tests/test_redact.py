"""The one redaction rule: session ids (long anywhere, short as tokens) and URL passwords."""

from __future__ import annotations

import pytest

from hatsu_sync import _redact
from hatsu_sync._redact import REDACTED, mentions, redact, redact_url, redact_urls


def test_a_long_secret_is_redacted_wherever_it_occurs() -> None:
    """A real session id (long) goes even from inside a longer word."""
    secret = "sess-8c1f-SECRET"
    assert redact(f"a{secret}b {secret}", secret) == f"a{REDACTED}b {REDACTED}"
    assert mentions(f"x{secret}", secret)


@pytest.mark.parametrize(
    ("text", "secret"),
    [("gateway.vincentrps.xyz", "x"), ("ws://127.0.0.1:5757", "1"), ("abcd", "bc")],
)
def test_a_short_secret_inside_a_word_neither_garbles_nor_counts(text: str, secret: str) -> None:
    """A short id that happens to occur inside a host name or a number is left alone."""
    assert redact(text, secret) == text
    assert not mentions(text, secret)


def test_a_short_secret_standing_alone_is_redacted() -> None:
    """A short id as a token of its own (a JSON string, a word) is still redacted."""
    assert redact('{"s": "x", "y": ["x"]} x', "x") == (
        f'{{"s": "{REDACTED}", "y": ["{REDACTED}"]}} {REDACTED}'
    )


def test_empty_secret_changes_nothing() -> None:
    """An empty secret is no secret."""
    assert redact("text", "") == "text"
    assert not mentions("text", "")


def test_url_passwords_are_redacted() -> None:
    """The password of a URL goes, the user and the host stay; URLs without one are unchanged."""
    assert redact_url("http://user:pw@proxy:8080/x") == f"http://user:{REDACTED}@proxy:8080/x"
    assert redact_url("ws://user@host/") == "ws://user@host/"
    assert redact_url("wss://host:443/") == "wss://host:443/"
    assert redact_url("http://[::1") == "http://[::1"
    assert redact_urls("GET http://u:p@h:1/ then wss://k:v@x") == (
        f"GET http://u:{REDACTED}@h:1/ then wss://k:{REDACTED}@x"
    )


def test_registered_secrets_are_redacted_longest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every registered session id is hidden by redact_known, a longer one whole."""
    monkeypatch.setattr(_redact, "_known", ())
    _redact.register("secret-one-1234")
    _redact.register("secret-one-1234-and-more")
    assert _redact.redact_known("secret-one-1234-and-more secret-one-1234") == (
        f"{REDACTED} {REDACTED}"
    )
