"""Finding the gateway: ``GET {gateway}/available`` and every answer form it may give.

The deployed server and its documentation disagree (docs/protocol.rst, "Finding the gateway"), so
every form seen is accepted, whatever the Content-Type (the real server sent none):

- a JSON object with an integer or numeric-string ``port`` (1-65535): the websocket lives on the
  gateway's own host at that port, ``https`` -> ``wss``, ``http`` -> ``ws``;
- a JSON object with a ``url`` (it wins over ``port`` when both are present);
- a JSON string, or a plain-text body, holding a URL.

URL schemes map ``https`` -> ``wss`` and ``http`` -> ``ws``; ``ws``/``wss`` are kept; anything
else is refused. Everything else, a non-2xx status (redirects are not followed: following one
would make requests read the redirect's body whole), a timeout or a network failure raises
:class:`~hatsu_sync.exceptions.DiscoveryError` naming the discovery URL, the HTTP status and a
short printable excerpt of the body, chained to the underlying exception.

The body is never logged (only the URL, the status and the size, at DEBUG).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import ssl
import threading
import time
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from ._netconfig import proxy_for, shown_proxy, tls_context
from .exceptions import DiscoveryError

__all__ = ["DISCOVERY_PATH", "discover", "discovery_url", "ws_url_from_answer"]

logger = logging.getLogger(__name__)

#: The path, under the gateway base URL, that says where to connect.
DISCOVERY_PATH = "/available"

_EXCERPT_CHARS = 200
_READ_CHUNK = 16 * 1024
# A non-2xx answer is only read far enough for the excerpt.
_ERROR_BODY_LIMIT = 4 * 1024
_WS_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_URLLIB3_OBJECT_PREFIX = re.compile(r"^<[^>]*>: ")


class _SSLContextAdapter(HTTPAdapter):
    """An adapter whose TLS connections (direct or through a proxy) use one given SSLContext.

    requests cannot take an SSLContext itself; urllib3 can, through the pool managers.
    """

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self._ssl_context = ssl_context
        super().__init__()

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        pool_kwargs["ssl_context"] = self._ssl_context
        # types-requests types these two methods in some releases only (ignores that may be unused).
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)  # type: ignore[no-untyped-call, unused-ignore]

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs["ssl_context"] = self._ssl_context
        return super().proxy_manager_for(proxy, **proxy_kwargs)  # type: ignore[no-untyped-call, unused-ignore]

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # The caller's context alone decides what is trusted. requests would otherwise point
        # urllib3 at its CA bundle, which urllib3 loads into the caller's context: that changes
        # the caller's object and widens what it trusts.
        verifying = self._ssl_context.verify_mode != ssl.CERT_NONE
        conn.cert_reqs = "CERT_REQUIRED" if verifying else "CERT_NONE"
        conn.ca_certs = None
        conn.ca_cert_dir = None


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
        A ``ws://`` or ``wss://`` URL.

    Raises:
        DiscoveryError: the status is not 2xx, or the body is not one of the accepted forms
            (see the module docstring). The error names the discovery URL, the status and an
            excerpt of the body.
    """
    url = discovery_url(gateway)
    if not 200 <= status < 300:
        raise _answer_error(url, status, body, _status_problem(status))
    try:
        return _parse_answer(_split_gateway(gateway), body)
    except _Unusable as exc:
        raise _answer_error(url, status, body, f"the answer is unusable: {exc}") from None


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
        timeout: the deadline in seconds for the whole request: connecting, the headers and
            the body (a server that sends its body a byte at a time is cut off at the deadline).
        ssl_context: used for the TLS connection, and alone decides what is trusted; None
            verifies certificates and host names against the system's trust store (as the
            websocket does). The context is not modified.
        proxy: an ``http://host:port`` proxy for this request; it takes precedence over the
            environment, ``NO_PROXY`` included. None applies ``HTTPS_PROXY``/``HTTP_PROXY``
            and ``NO_PROXY`` with the rules of :mod:`hatsu_sync._netconfig` (the same rules as
            for the websocket); requests' own reading of the environment is off.
        max_body: the most bytes of body read; a longer answer is refused without being read
            further.

    Returns:
        The websocket URL to connect to (``ws://`` or ``wss://``).

    Raises:
        DiscoveryError: the gateway URL is not http(s), the environment names an unusable
            proxy, the request failed or timed out, the status is not 2xx, the body is larger
            than ``max_body``, or the answer does not say where to connect. ``status`` and
            ``excerpt`` are set when an answer came; ``__cause__`` is the underlying exception.
        ValueError: ``timeout`` or ``max_body`` is not positive.
    """
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0, got {timeout!r}")
    if max_body <= 0:
        raise ValueError(f"max_body must be > 0, got {max_body!r}")
    url = discovery_url(gateway)
    shown = _redact(url)
    try:
        via = proxy_for(url, proxy)
    except ValueError as exc:
        raise DiscoveryError(f"discovery failed: GET {shown}: {exc}", url=shown) from exc
    deadline = time.monotonic() + timeout
    session = requests.Session()
    # Everything requests would take from the environment is decided here instead: its own
    # proxy rules (ALL_PROXY, NO_PROXY quirks), CA bundles and .netrc credentials (which it
    # would send to the gateway) would make discovery and the websocket disagree.
    session.trust_env = False
    try:
        if url.lower().startswith("https:"):
            session.mount("https://", _SSLContextAdapter(tls_context(ssl_context, shown)))
        proxies = {"http": via, "https": via} if via else {}
        logger.debug("discovery: GET %s%s", shown, f" via {shown_proxy(via)}" if via else "")
        try:
            response = session.get(
                url,
                timeout=(timeout, timeout),
                stream=True,
                allow_redirects=False,
                proxies=proxies,
                # The body is read raw: a compressed answer could inflate far past max_body.
                headers={"Accept-Encoding": "identity"},
            )
        except (
            requests.RequestException,
            urllib3.exceptions.HTTPError,
            OSError,
            ValueError,
        ) as exc:
            raise _request_error(url, timeout, exc) from exc
        with response:
            status = response.status_code
            limit = max_body if 200 <= status < 300 else min(max_body, _ERROR_BODY_LIMIT)
            body, truncated = _read_body(response, url, status, limit, deadline, timeout)
        logger.debug("discovery: GET %s -> HTTP %d (%d bytes read)", shown, status, len(body))
        if truncated and 200 <= status < 300:
            raise _answer_error(url, status, body, f"the answer is larger than {max_body} bytes")
        ws_url = ws_url_from_answer(gateway, status, body)
        if url.lower().startswith("https:") and ws_url.lower().startswith("ws:"):
            logger.warning(
                "discovery at %s named a plain %s: the identify (the session id) and every "
                "event will travel unencrypted",
                shown,
                _redact(ws_url),
            )
        return ws_url
    finally:
        session.close()


class _Unusable(Exception):
    """The body is not an accepted answer form (the message says why)."""


class _DeadlinePassed(Exception):
    """The overall discovery deadline passed while the body was being read."""


def _split_gateway(gateway: str) -> SplitResult:
    shown = _redact(str(gateway))
    bad = DiscoveryError(
        f"the gateway must be an http:// or https:// URL with a host, got {shown!r}", url=shown
    )
    if not isinstance(gateway, str):
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


def _read_body(
    response: requests.Response,
    url: str,
    status: int,
    limit: int,
    deadline: float,
    timeout: float,
) -> tuple[bytes, bool]:
    """Read at most ``limit`` bytes of body by ``deadline``; return (body, truncated)."""
    raw = response.raw
    sock = _response_socket(raw)
    # read() loops until it has ``amt`` bytes, so a trickling server could hold it far past
    # the deadline; read1() makes one socket read per call, each bounded by the time left.
    # urllib3 versions without read1() get a timer that shuts the socket at the deadline.
    read = getattr(raw, "read1", None)
    cutter: threading.Timer | None = None
    cut = threading.Event()
    if read is None:
        read = raw.read
        if sock is not None:
            cutter = threading.Timer(max(0.0, deadline - time.monotonic()), _shut, args=(sock, cut))
            cutter.name = "hatsu-sync-discovery-deadline"
            cutter.daemon = True
            cutter.start()
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _DeadlinePassed
            if sock is not None:
                try:
                    sock.settimeout(remaining)
                except OSError:
                    sock = None
            chunk = read(min(_READ_CHUNK, limit + 1 - size), decode_content=False)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if cut.is_set():
            raise _DeadlinePassed
    except (
        _DeadlinePassed,
        requests.RequestException,
        urllib3.exceptions.HTTPError,
        OSError,
        ValueError,
    ) as exc:
        body = b"".join(chunks)
        timed_out = cut.is_set() or isinstance(
            exc,
            (_DeadlinePassed, socket.timeout, requests.Timeout, urllib3.exceptions.TimeoutError),
        )
        if timed_out:
            problem = f"the answer did not complete within {timeout:g} s"
        else:
            problem = f"reading the answer failed ({_describe(exc)})"
        cause = None if isinstance(exc, _DeadlinePassed) else exc
        raise _answer_error(url, status, body, problem) from cause
    finally:
        if cutter is not None:
            cutter.cancel()
            cutter.join()
    body = b"".join(chunks)
    return body[:limit], size > limit


def _shut(sock: socket.socket, cut: threading.Event) -> None:
    cut.set()
    # socket.socket's own shutdown, even for an SSLSocket: its override drops the SSL object
    # under the reading thread's feet.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _response_socket(raw: Any) -> socket.socket | None:
    """The socket a streamed response reads from, or None if it cannot be found."""
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is None:
        # When the server closes after answering (HTTP/1.0, "Connection: close"), http.client
        # hands the socket to the response: response._fp (http.client) .fp (a buffered
        # reader) .raw (a SocketIO) ._sock.
        reader = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(reader, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _answer_error(url: str, status: int, body: bytes, problem: str) -> DiscoveryError:
    excerpt = _excerpt(body)
    shown = _redact(url)
    where = f"body: {excerpt!r}" if body else "empty body"
    # The non-2xx problems already say "it answered HTTP <status>".
    detail = where if f"HTTP {status}" in problem else f"HTTP {status}, {where}"
    return DiscoveryError(
        f"discovery failed: GET {shown}: {problem} ({detail})",
        url=shown,
        status=status,
        excerpt=excerpt,
    )


def _request_error(url: str, timeout: float, exc: BaseException) -> DiscoveryError:
    shown = _redact(url)
    if isinstance(exc, requests.Timeout):
        problem = f"no answer within {timeout:g} s"
    elif isinstance(exc, requests.exceptions.SSLError):
        problem = f"the TLS handshake failed ({_describe(exc)})"
    elif isinstance(exc, requests.exceptions.ProxyError):
        problem = f"the proxy failed ({_describe(exc)})"
    elif isinstance(exc, requests.ConnectionError):
        problem = f"could not connect ({_describe(exc)})"
    else:
        problem = f"the request failed ({_describe(exc)})"
    return DiscoveryError(f"discovery failed: GET {shown}: {problem}", url=shown)


def _describe(exc: BaseException) -> str:
    """A short description of a requests/urllib3 error: its innermost reason."""
    reason: BaseException = exc
    for _ in range(4):
        inner = reason.args[0] if reason.args else None
        if isinstance(inner, urllib3.exceptions.MaxRetryError) and inner.reason is not None:
            reason = inner.reason
        elif isinstance(inner, BaseException):
            reason = inner
        else:
            break
    text = _URLLIB3_OBJECT_PREFIX.sub("", str(reason)) or type(reason).__name__
    return f"{type(reason).__name__}: {text}"[:300]


def _excerpt(body: bytes) -> str:
    decoded = body[: _EXCERPT_CHARS * 4].decode("utf-8", "replace")
    text = decoded[:_EXCERPT_CHARS]
    cleaned = "".join(c if c.isprintable() else (" " if c in "\t\r\n" else "?") for c in text)
    if len(decoded) > _EXCERPT_CHARS or len(body) > _EXCERPT_CHARS * 4:
        cleaned += "..."
    return cleaned


def _redact(url: str) -> str:
    """The URL without any user:password part, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, "***@" + netloc, parts.path, parts.query, parts.fragment))
