"""Checking the arguments users pass to :class:`~hatsu_sync.Client` (no I/O, no state).

Every message names the argument and what it accepts; none shows a password or a session id.
"""

from __future__ import annotations

import numbers
import ssl
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from ._redact import redact_url
from ._transport import Settings
from .models import Embed, EmbedText

__all__ = [
    "check_bool",
    "check_int",
    "check_number",
    "check_optional",
    "check_url",
    "make_settings",
    "presence_payload",
    "type_name",
]

_NoneType = type(None)


def type_name(value: object) -> str:
    """The name of ``value``'s type, for messages."""
    return type(value).__name__


def check_optional(kind: type, name: str, value: object) -> None:
    """Raise TypeError unless ``value`` is None or a ``kind``."""
    if value is not None and not isinstance(value, kind):
        raise TypeError(f"{name} must be a {kind.__name__} or None, not {type_name(value)}")


def check_url(value: object, schemes: tuple[str, ...], name: str) -> None:
    """Raise unless ``value`` is a URL with one of ``schemes`` and a host.

    Raises:
        TypeError: ``value`` is not a str.
        ValueError: another scheme, or no host (the message redacts a password).
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type_name(value)}")
    try:
        parts = urlsplit(value)
        ok = parts.scheme in schemes and bool(parts.hostname)
    except ValueError:  # an invalid IPv6 literal or port
        ok = False
    if not ok:
        wanted = " or ".join(f"{scheme}://" for scheme in schemes)
        raise ValueError(f"{name} must be a {wanted} URL, not {redact_url(value)!r}")


def check_number(name: str, value: object, *, minimum: float, exclusive: bool = False) -> None:
    """Raise unless ``value`` is a real number (not a bool) above ``minimum``.

    Raises:
        TypeError: not a number.
        ValueError: below ``minimum`` (or equal, when ``exclusive``), or not a number (NaN).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {type_name(value)}")
    number = float(value)
    if not number >= minimum or (exclusive and number == minimum):  # NaN fails the first test
        relation = ">" if exclusive else ">="
        raise ValueError(f"{name} must be {relation} {minimum}, not {value}")


def check_int(name: str, value: object, *, minimum: int) -> None:
    """Raise TypeError unless ``value`` is an int (not a bool), ValueError below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type_name(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")


def check_bool(name: str, value: object) -> None:
    """Raise TypeError unless ``value`` is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {type_name(value)}")


def make_settings(
    session_id: Any,
    *,
    gateway: Any,
    url: Any,
    encoding: Any,
    ping_interval: Any,
    ping_timeout: Any,
    reconnect: Any,
    max_retries: Any,
    backoff_base: Any,
    backoff_max: Any,
    max_queue: Any,
    max_message_size: Any,
    max_buffer_bytes: Any,
    fatal_close_codes: Any,
    ssl_context: Any,
    proxy: Any,
    retry_first_connect: Any,
) -> Settings:
    """Check the constructor's arguments and build the transport's :class:`Settings`.

    ``max_queue`` and ``max_buffer_bytes`` are checked here but belong to dispatch, not to the
    settings.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: an argument out of range (see :class:`~hatsu_sync.Client`).
    """
    if not isinstance(session_id, str):
        raise TypeError(f"session_id must be a str, not {type_name(session_id)}")
    if not session_id.strip():
        raise ValueError("session_id must not be empty")
    if encoding not in ("json", "zlib"):
        raise ValueError(f"encoding must be 'json' or 'zlib', not {encoding!r}")
    check_url(gateway, ("http", "https"), "gateway")
    assert isinstance(gateway, str)
    if url is not None:
        check_url(url, ("ws", "wss"), "url")
    for name, value in (("ping_interval", ping_interval), ("ping_timeout", ping_timeout)):
        if value is not None:
            check_number(name, value, minimum=0.0, exclusive=True)
    if ping_interval is not None and ping_timeout is not None and ping_interval <= ping_timeout:
        raise ValueError(
            f"ping_interval ({ping_interval}) must be greater than ping_timeout ({ping_timeout})"
        )
    if max_retries is not None:
        check_int("max_retries", max_retries, minimum=0)
    check_number("backoff_base", backoff_base, minimum=0.0)
    check_number("backoff_max", backoff_max, minimum=0.0)
    check_int("max_queue", max_queue, minimum=1)
    check_int("max_message_size", max_message_size, minimum=1)
    check_int("max_buffer_bytes", max_buffer_bytes, minimum=1)
    check_bool("retry_first_connect", retry_first_connect)
    if isinstance(fatal_close_codes, (str, bytes)) or not isinstance(fatal_close_codes, Collection):
        raise TypeError("fatal_close_codes must be a collection of ints")
    codes = frozenset(fatal_close_codes)
    if not all(isinstance(code, int) and not isinstance(code, bool) for code in codes):
        raise TypeError("fatal_close_codes must hold ints")
    if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
        raise TypeError(f"ssl_context must be an ssl.SSLContext, not {type_name(ssl_context)}")
    if proxy is not None:
        check_url(proxy, ("http",), "proxy")
        assert isinstance(proxy, str)
        try:
            port = urlsplit(proxy).port
        except ValueError:  # out of range, or not a number
            port = None
        if port is None:
            raise ValueError(
                f"proxy must name a port (http://host:port), not {redact_url(proxy)!r}"
            )
    options: Any = {
        "ping_interval": ping_interval,
        "ping_timeout": ping_timeout,
        "backoff_base": float(backoff_base),
        "backoff_max": float(backoff_max),
    }
    return Settings(
        session_id=session_id,
        gateway=gateway.rstrip("/"),
        url=url,
        encoding=encoding,
        reconnect=bool(reconnect),
        max_retries=max_retries,
        max_message_size=max_message_size,
        fatal_close_codes=codes,
        ssl_context=ssl_context,
        proxy=proxy,
        retry_first_connect=retry_first_connect,
        **options,
    )


def presence_payload(
    type: object, description: object, emoji: object, embed: object
) -> dict[str, Any]:
    """The PRESENCE message for :meth:`~hatsu_sync.Client.update_presence`, in the deployed
    server's format, after the checks for what the server would silently drop.

    Raises:
        ValueError: ``type`` is not 1-4, or ``embed`` has no name or no description.
        TypeError: an argument (or an embed field) of the wrong type.
    """
    if isinstance(type, bool) or not isinstance(type, int):
        raise TypeError(f"type must be an int, not {type_name(type)}")
    if type not in (1, 2, 3, 4):
        raise ValueError(f"type must be 1, 2, 3 or 4, not {type}")
    check_optional(str, "description", description)
    if isinstance(emoji, bool) or not isinstance(emoji, (str, int, _NoneType)):
        raise TypeError(f"emoji must be a str or int id or None, not {type_name(emoji)}")
    payload: dict[str, Any] = {
        "t": "PRESENCE",
        "type": type,
        "description": description,
        "emoji": emoji,
    }
    if embed is not None:
        if not isinstance(embed, Embed):
            raise TypeError(f"embed must be a hatsu_sync.Embed, not {type_name(embed)}")
        for name in ("name", "description"):
            value = getattr(embed, name)
            if value is None:
                raise ValueError(f"a presence embed needs a {name}")
            check_optional(str, f"embed.{name}", value)
        check_optional(str, "embed.banner_url", embed.banner_url)
        check_optional(EmbedText, "embed.text", embed.text)
        text = embed.text or EmbedText()
        check_optional(str, "embed.text.top", text.top)
        check_optional(str, "embed.text.bottom", text.bottom)
        # The gateway's own field names: the text lines go flat, as top_text/bottom_text.
        payload["embed"] = {
            "name": embed.name,
            "description": embed.description,
            "banner_url": embed.banner_url,
            "top_text": text.top,
            "bottom_text": text.bottom,
        }
    return payload
