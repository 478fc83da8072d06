"""The errors hatsu_sync raises, all rooted at :class:`HatsuError`::

    HatsuError
     ├── ConnectError (also ConnectionError)   could not connect, or reconnecting gave up
     │    └── DiscoveryError                   GET {gateway}/available failed or was unusable
     ├── GatewayClosed                         the connection ended for good: .code, .reason
     ├── ClientClosed                          the client was closed by its user
     └── DecodeError (also ValueError)         one gateway message could not be decoded

Errors raised by the dependencies (websocket-client, ssl, socket, zlib, json) are translated at the
boundary and kept as ``__cause__``. No message here ever contains the session id: the library
builds messages from URLs, status codes, sizes and close codes only.
"""

from collections.abc import Iterator
from typing import Optional

__all__ = [
    "ClientClosed",
    "ConnectError",
    "DecodeError",
    "DiscoveryError",
    "GatewayClosed",
    "HatsuError",
]


class HatsuError(Exception):
    """Base class of every error hatsu_sync raises on purpose."""


class ConnectError(HatsuError, ConnectionError):
    """The client could not connect (or, reconnecting, gave up after ``max_retries``).

    The message names the URL and the cause; the underlying exception is ``__cause__``.
    """


class DiscoveryError(ConnectError):
    """The discovery request failed, or its answer did not say where to connect.

    Attributes:
        url: the discovery URL that was requested.
        status: the HTTP status, or None when no response came.
        excerpt: a short excerpt of the response body ("" when there was none).
    """

    def __init__(
        self, message: str, *, url: str, status: Optional[int] = None, excerpt: str = ""
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.excerpt = excerpt

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keyword-only arguments are lost by the default pickling of exceptions.
        return _rebuild_discovery_error, (self.args[0], self.url, self.status, self.excerpt)


def _rebuild_discovery_error(
    message: str, url: str, status: Optional[int], excerpt: str
) -> DiscoveryError:
    return DiscoveryError(message, url=url, status=status, excerpt=excerpt)


class GatewayClosed(HatsuError):
    """The connection ended for good: a fatal close code, or any loss with ``reconnect=False``.

    Attributes:
        code: the close code the gateway sent, or None when no close frame came.
        reason: the close reason, or a description of how the connection was lost.
    """

    def __init__(self, code: Optional[int], reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        if self.code is None:
            return f"gateway connection lost: {self.reason or 'no close frame'}"
        return (
            f"gateway closed the connection with code {self.code}: {self.reason or '(no reason)'}"
        )


class ClientClosed(HatsuError):
    """The client was closed by its user; it cannot be used again."""


class DecodeError(HatsuError, ValueError):
    """A gateway message could not be decoded (bad JSON, no ``t``, corrupt zlib, too big).

    Attributes:
        fatal: True when the connection's zlib stream cannot be resumed after this message,
            so the client must reconnect; False when only this one message is lost.
        size: the size in bytes of the offending message as received (0 if unknown).
        close_code: the close code the client failed the connection with because of this
            error (1009 for a message over ``max_message_size``, 1002 or 1007 for a frame that
            breaks RFC 6455), or None when the connection went on (or ended for another reason).
    """

    def __init__(
        self,
        message: str,
        *,
        fatal: bool = False,
        size: int = 0,
        close_code: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.fatal = fatal
        self.size = size
        self.close_code = close_code

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return _rebuild_decode_error, (self.args[0], self.fatal, self.size, self.close_code)


def _rebuild_decode_error(
    message: str, fatal: bool, size: int, close_code: Optional[int] = None
) -> DecodeError:
    return DecodeError(message, fatal=fatal, size=size, close_code=close_code)


def chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and every exception it chains to (``__cause__``, ``__context__``), each once."""
    pending: list[Optional[BaseException]] = [error]  # not evaluated: fine on 3.9
    seen: set[int] = set()
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        yield exc
        pending += [exc.__cause__, exc.__context__]
