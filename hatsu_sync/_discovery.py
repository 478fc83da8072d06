"""Finding the gateway: ``GET {gateway}/available`` and every answer form it may give.

The deployed server and its documentation disagree (docs/protocol.rst, "Finding the gateway"), so
every form seen is accepted, whatever the Content-Type (the real server sent none):

- a JSON object with an integer or numeric-string ``port`` (1-65535): the websocket lives on the
  gateway's own host at that port, ``https`` -> ``wss``, ``http`` -> ``ws``;
- a JSON object with a ``url`` (it wins over ``port`` when both are present);
- a JSON string, or a plain-text body, holding a URL.

URL schemes map ``https`` -> ``wss`` and ``http`` -> ``ws``; ``ws``/``wss`` are kept; anything
else is refused, and so is a plain ``ws://`` URL named by an ``https://`` discovery: the identify
would carry the session id in the clear (``Client(url="ws://...")`` reaches a plain gateway on
purpose). Everything else, a non-2xx status (redirects are not followed), a timeout or a network
failure raises :class:`~hatsu_sync.exceptions.DiscoveryError` naming the discovery URL, the HTTP
status and a short printable excerpt of the body, chained to the underlying exception.

The request is made by :mod:`hatsu_sync._fetch`: a total deadline, at most 64 KiB of head and
``max_body`` of body whatever the status, the proxy and TLS decisions of
:mod:`hatsu_sync._netconfig`. The body is never logged (only the URL, the status and the size,
at DEBUG), and a password in any URL is redacted wherever a URL is shown.
"""

from __future__ import annotations

import json
import logging
import ssl
from urllib.parse import SplitResult, urlsplit, urlunsplit

from ._fetch import FetchFailed, get
from ._netconfig import proxy_for, shown_proxy, tls_context
from ._redact import redact_url, redact_urls
from .exceptions import DiscoveryError

__all__ = ["DISCOVERY_PATH", "discover", "discovery_url", "ws_url_from_answer"]

logger = logging.getLogger(__name__)

#: The path, under the gateway base URL, that says where to connect.
DISCOVERY_PATH = "/available"

_EXCERPT_CHARS = 200
# A non-2xx answer is only read far enough for the excerpt.
_ERROR_BODY_LIMIT = 4 * 1024
_WS_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def discovery_url(gateway: str) -> str:
    """Return the discovery URL ``{gateway}/available`` for a gateway base URL.

    A trailing slash on ``gateway`` is tolerated.

    Raises:
        DiscoveryError: ``gateway`` is not an ``http://`` or ``https://`` URL with a host.
    """
    parts = _split_gateway(gateway)
    path = parts.path.rstrip("/") + DISCOVERY_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def ws_url_from_answer(gateway: str, status: int, body: bytes) -> str:
    """Return the websocket URL that a discovery answer names.

    Pure: no I/O. ``gateway`` is the gateway base URL the answer came from (its scheme and host
    complete a ``{"port": N}`` answer), ``status`` the HTTP status and ``body`` the raw body.

    Returns:
        A ``ws://`` or ``wss://`` URL (always ``wss://`` for an ``https://`` gateway).

    Raises:
        DiscoveryError: the status is not 2xx, the body is not one of the accepted forms (see
            the module docstring), whatever it holds (deeply nested JSON included), or an
            ``https://`` gateway names a plain ``ws://`` URL. The error names the discovery
            URL, the status and an excerpt of the body.
    """
    url = discovery_url(gateway)
    if not 200 <= status < 300:
        raise _answer_error(url, status, body, _status_problem(status))
    parts = _split_gateway(gateway)
    try:
        ws_url = _parse_answer(parts, body)
    except _Unusable as exc:
        raise _answer_error(url, status, body, f"the answer is unusable: {exc}") from None
    if parts.scheme.lower() == "https" and ws_url.startswith("ws:"):
        raise _answer_error(
            url,
            status,
            body,
            f"the answer names the plain {redact_url(ws_url)}: refused, because the identify "
            "would carry the session id unencrypted (pass url= to reach a plain ws:// gateway "
            "on purpose)",
        )
    return ws_url


def discover(
    gateway: str,
    *,
    timeout: float,
    ssl_context: ssl.SSLContext | None = None,
    proxy: str | None = None,
    max_body: int = 64 * 1024,
) -> str:
    """Ask the gateway where to connect: ``GET {gateway}/available``.

    Args:
        gateway: the gateway base URL, ``http://`` or ``https://`` (trailing slash tolerated).
        timeout: the total deadline in seconds: connecting, the proxy's tunnel, the TLS
            handshake, the head and the body (a server that drips its answer a byte at a time
            is cut off at the deadline). Nothing reads the socket after this function returns
            or raises.
        ssl_context: used for the TLS connection as it is: its ``verify_mode`` and
            ``check_hostname`` decide, exactly as for the websocket. None verifies certificates
            and host names against the system's trust store. The context is not modified.
        proxy: an ``http://host:port`` proxy for this request; it takes precedence over the
            environment, ``NO_PROXY`` included. None applies ``HTTPS_PROXY``/``HTTP_PROXY``
            and ``NO_PROXY`` with the rules of :mod:`hatsu_sync._netconfig` (the same rules as
            for the websocket).
        max_body: the most bytes of (decoded) body read, whatever the status (a non-2xx
            answer is read at most 4 KiB far, for the excerpt); a longer 2xx answer is refused
            without being read further. The head may take 64 KiB.

    Returns:
        The websocket URL to connect to (``ws://`` or ``wss://``).

    Raises:
        DiscoveryError: the gateway URL is not http(s), the environment names an unusable
            proxy, the request failed or timed out, the status is not 2xx, the body is larger
            than ``max_body``, the answer does not say where to connect, or it names a plain
            ``ws://`` URL for an ``https://`` gateway. ``status`` and
            ``excerpt`` are set when an answer came; ``__cause__`` is the underlying exception.
        ValueError: ``timeout`` or ``max_body`` is not positive.
    """
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0, got {timeout!r}")
    if max_body <= 0:
        raise ValueError(f"max_body must be > 0, got {max_body!r}")
    url = discovery_url(gateway)
    shown = redact_url(url)
    try:
        via = proxy_for(url, proxy)
    except ValueError as exc:
        raise DiscoveryError(f"discovery failed: GET {shown}: {exc}", url=shown) from exc
    secure = url.lower().startswith("https:")
    context = tls_context(ssl_context, shown) if secure else None
    logger.debug("discovery: GET %s%s", shown, f" via {shown_proxy(via)}" if via else "")

    def limit(status: int) -> int:
        return max_body if 200 <= status < 300 else min(max_body, _ERROR_BODY_LIMIT)

    try:
        answer = get(url, proxy=via, context=context, timeout=timeout, limit=limit)
    except FetchFailed as exc:
        problem = redact_urls(str(exc))
        if exc.status is not None:
            raise _answer_error(url, exc.status, exc.body, problem) from exc.__cause__
        raise DiscoveryError(f"discovery failed: GET {shown}: {problem}", url=shown) from (
            exc.__cause__
        )
    status, body = answer.status, answer.body
    logger.debug("discovery: GET %s -> HTTP %d (%d bytes read)", shown, status, len(body))
    if answer.truncated and 200 <= status < 300:
        raise _answer_error(url, status, body, f"the answer is larger than {max_body} bytes")
    return ws_url_from_answer(gateway, status, body)


class _Unusable(Exception):
    """The body is not an accepted answer form (the message says why)."""


def _split_gateway(gateway: str) -> SplitResult:
    shown = redact_url(str(gateway))
    bad = DiscoveryError(
        f"the gateway must be an http:// or https:// URL with a host, got {shown!r}", url=shown
    )
    if not isinstance(gateway, str) or any(
        c.isspace() or not c.isprintable() for c in gateway.strip()
    ):
        # Whitespace or control characters would end up in the request line or Host header.
        raise bad
    try:
        parts = urlsplit(gateway.strip())
        parts.port  # noqa: B018 - validates the port, raising ValueError
    except ValueError:
        raise bad from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise bad
    return parts


def _status_problem(status: int) -> str:
    if 300 <= status < 400:
        return f"it answered HTTP {status} (redirects are not followed)"
    return f"it answered HTTP {status}"


def _parse_answer(gateway: SplitResult, body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Unusable("the body is not UTF-8 text") from None
    text = text.strip().lstrip("\ufeff").strip()
    if not text:
        raise _Unusable("the body is empty")
    try:
        value = json.loads(text)
    except RecursionError:
        # The parser recurses once per level: 100,000 "[" exhaust the stack.
        raise _Unusable("the JSON is nested too deeply") from None
    except ValueError:
        if "://" in text and not any(c.isspace() for c in text):
            return _ws_url_from_url(text)
        raise _Unusable("the body is neither JSON nor a URL") from None
    if isinstance(value, dict):
        if "url" in value:
            if not isinstance(value["url"], str):
                raise _Unusable(f"'url' must be a string, got {_json_type(value['url'])}")
            return _ws_url_from_url(value["url"].strip())
        if "port" in value:
            port = _parse_port(value["port"])
            scheme = "wss" if gateway.scheme.lower() == "https" else "ws"
            host = gateway.hostname or ""
            if ":" in host:
                host = f"[{host}]"
            return f"{scheme}://{host}:{port}"
        raise _Unusable("the JSON object has neither a 'port' nor a 'url'")
    if isinstance(value, str):
        return _ws_url_from_url(value.strip())
    raise _Unusable(
        f"a JSON {_json_type(value)} does not say where to connect "
        "(expected an object with a 'port' or a 'url', or a URL)"
    )


def _parse_port(value: object) -> int:
    if isinstance(value, bool):
        raise _Unusable(f"'port' must be an integer, got {_json_type(value)}")
    if isinstance(value, int):
        port = value
    elif isinstance(value, str):
        digits = value.strip()
        if not (digits.isascii() and digits.isdigit()):
            raise _Unusable(f"'port' must be an integer, got the string {value[:20]!r}")
        if len(digits) > 5:
            raise _Unusable(f"'port' {digits[:20]} is out of range 1-65535")
        port = int(digits)
    else:
        raise _Unusable(f"'port' must be an integer, got {_json_type(value)}")
    if not 1 <= port <= 65535:
        raise _Unusable(f"'port' {port} is out of range 1-65535")
    return port


def _ws_url_from_url(url: str) -> str:
    if any(c.isspace() or not c.isprintable() for c in url):
        raise _Unusable("the URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port, raising ValueError
    except ValueError as exc:
        raise _Unusable(f"the URL is malformed ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in _WS_SCHEMES:
        raise _Unusable(
            f"the URL has the unsupported scheme {scheme or '(none)'!r} "
            "(expected http, https, ws or wss)"
        )
    if not parts.hostname:
        raise _Unusable("the URL has no host")
    return urlunsplit((_WS_SCHEMES[scheme], parts.netloc, parts.path, parts.query, ""))


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _answer_error(url: str, status: int, body: bytes, problem: str) -> DiscoveryError:
    excerpt = _excerpt(body)
    shown = redact_url(url)
    where = f"body: {excerpt!r}" if body else "empty body"
    # The non-2xx problems already say "it answered HTTP <status>".
    detail = where if f"HTTP {status}" in problem else f"HTTP {status}, {where}"
    return DiscoveryError(
        f"discovery failed: GET {shown}: {problem} ({detail})",
        url=shown,
        status=status,
        excerpt=excerpt,
    )


def _excerpt(body: bytes) -> str:
    decoded = redact_urls(body[: _EXCERPT_CHARS * 4].decode("utf-8", "replace"))
    text = decoded[:_EXCERPT_CHARS]
    cleaned = "".join(c if c.isprintable() else (" " if c in "\t\r\n" else "?") for c in text)
    if len(decoded) > _EXCERPT_CHARS or len(body) > _EXCERPT_CHARS * 4:
        cleaned += "..."
    return cleaned
