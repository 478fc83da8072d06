"""One bounded ``GET``, for discovery: a total deadline, and a budget for every byte.

hatsu_sync sends this one request itself rather than through requests, because requests cannot
keep the bounds that API.md promises: its timeouts are per socket read (a server that drips a
byte at a time holds it for ever), it reads and inflates a redirect's whole body even with
``allow_redirects=False``, it reads a proxy's ``CONNECT`` answer without a deadline, and urllib3
rewrites the ``SSLContext`` it is given. Here the connection is opened by
:func:`hatsu_sync._netconfig.open_socket` (the same proxy and TLS decisions as the websocket),
every read waits at most for the time left, and :mod:`hatsu_sync._http` parses what comes within
its budgets. The socket is closed before :func:`get` returns or raises: nothing reads on.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
from typing import Callable, NamedTuple
from urllib.parse import quote, unquote, urlsplit

from ._http import BodyReader, HeadReader, ResponseError
from ._netconfig import (
    ProxyError,
    ascii_host,
    describe,
    open_socket,
    proxy_auth,
    recv_by,
    send_by,
    shown_proxy,
)
from ._state import Deadline

__all__ = ["Answer", "FetchFailed", "get"]

# What may stay unescaped in a request target (RFC 3986 pchar, "/" and "?"); "%" is kept so
# that an already escaped path is sent as it is.
_SAFE = "/?%:@!$&'()*+,;=-._~"


class Answer(NamedTuple):
    """What the server answered: its status, at most ``limit`` bytes of body, and whether the
    body was longer than that."""

    status: int
    body: bytes
    truncated: bool


class FetchFailed(Exception):
    """The request failed. The message says how; ``status`` and ``body`` hold what arrived
    (None and b"" when no answer came); ``__cause__`` is the underlying exception."""

    def __init__(self, problem: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(problem)
        self.status = status
        self.body = body


def get(
    url: str,
    *,
    proxy: str | None,
    context: ssl.SSLContext | None,
    timeout: float,
    limit: Callable[[int], int],
) -> Answer:
    """``GET url`` over HTTP/1.1, all of it within ``timeout`` seconds.

    Args:
        url: an http:// or https:// URL; a ``user:password`` in it is sent as Basic
            authorisation.
        proxy: an ``http://`` proxy (as :func:`~hatsu_sync._netconfig.proxy_for` chose it), or
            None: https:// goes through a ``CONNECT`` tunnel, http:// as an absolute URL.
        context: the TLS context for https://, used as it is.
        timeout: the total deadline: connecting, the proxy, TLS, the head and the body.
        limit: given the status, the most bytes of (decoded) body to keep.

    Returns:
        The :class:`Answer`. A redirect is an answer like any other: it is not followed.

    Raises:
        FetchFailed: the connection, the proxy, TLS or the answer failed, or the deadline
            passed.
    """
    deadline = Deadline(timeout)
    parts = urlsplit(url)
    secure = parts.scheme.lower() == "https"
    forward = proxy is not None and not secure  # http:// goes to the proxy as an absolute URL
    try:
        request = _request(url, proxy if forward else None)
    except ValueError as exc:
        raise FetchFailed(f"the gateway URL is unusable ({exc})") from exc
    sock = _open(url, proxy, forward, context, deadline.remaining(), timeout)
    status: int | None = None
    body: BodyReader | None = None

    def received() -> bytes:
        return b"" if body is None else bytes(body.body)

    try:
        send_by(sock, request, deadline)
        head_reader = HeadReader()
        while True:
            data = recv_by(sock, deadline)
            if not data:
                raise ResponseError("the connection closed before an answer came")
            answer = head_reader.feed(data)
            if answer is not None:
                break
        head, rest = answer
        status = head.status
        body = BodyReader(head, limit(status))
        body.feed(rest)
        while not body.done:
            data = recv_by(sock, deadline)
            if not data:
                body.end_of_stream()
                break
            body.feed(data)
    except TimeoutError as exc:
        when = "no answer" if status is None else "the answer did not complete"
        raise FetchFailed(f"{when} within {timeout:g} s", status, received()) from exc
    except ResponseError as exc:
        raise FetchFailed(f"the answer could not be read ({exc})", status, received()) from exc
    except OSError as exc:
        raise FetchFailed(f"the connection failed ({describe(exc)})", status, received()) from exc
    finally:
        _close(sock)
    return Answer(status, bytes(body.body), body.truncated)


def _open(
    url: str,
    proxy: str | None,
    forward: bool,
    context: ssl.SSLContext | None,
    time_left: float | None,
    timeout: float,
) -> socket.socket:
    """The connection for the request, within ``time_left``: to the proxy itself
    (``forward``), or to the host of ``url``, straight or tunnelled, TLS done."""
    try:
        if forward:
            assert proxy is not None
            try:
                return open_socket(proxy, None, None, time_left)
            except TimeoutError:
                raise
            except OSError as exc:
                raise ProxyError(
                    f"could not connect to the proxy {shown_proxy(proxy)} ({describe(exc)})"
                ) from exc
        return open_socket(url, proxy, context, time_left)
    except TimeoutError as exc:
        raise FetchFailed(f"no answer within {timeout:g} s ({exc})") from exc
    except ProxyError as exc:
        raise FetchFailed(str(exc)) from exc
    except ssl.SSLError as exc:
        raise FetchFailed(f"the TLS handshake failed ({describe(exc)})") from exc
    except (OSError, ValueError) as exc:
        raise FetchFailed(f"could not connect ({describe(exc)})") from exc


def _request(url: str, proxy: str | None) -> bytes:
    """The request's bytes; ``proxy`` given, for that proxy (absolute URL, its credentials).

    Raises:
        ValueError: the host name cannot be encoded.
    """
    parts = urlsplit(url)
    host = ascii_host(parts.hostname or "")
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme.lower() == "https" else 80
    hostport = host if parts.port in (None, default) else f"{host}:{parts.port}"
    target = quote(parts.path or "/", safe=_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_SAFE)
    if proxy is not None:
        target = f"http://{hostport}{target}"
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {hostport}",
        "User-Agent: hatsu-sync",
        "Accept: application/json, text/plain;q=0.9, */*;q=0.8",
        # A compressed answer is decoded within the body budget all the same; asking for none
        # keeps well-behaved servers simple.
        "Accept-Encoding: identity",
        "Connection: close",
    ]
    if parts.username is not None:
        user, password = unquote(parts.username), unquote(parts.password or "")
        lines.append(f"Authorization: Basic {_basic(user, password)}")
    auth = proxy_auth(proxy) if proxy is not None else None
    if auth is not None:
        lines.append(f"Proxy-Authorization: Basic {_basic(*auth)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _close(sock: socket.socket) -> None:
    # A plain shutdown first: the server sees the end at once, even if a reference to the
    # socket lingered. socket.socket's own, for an SSLSocket too: nothing more is sent.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    sock.close()
