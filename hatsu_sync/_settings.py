"""The settings of a client's connections, and how they keep secrets out of what is shown."""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from typing import Callable

from ._redact import redact, redact_url, redact_urls
from .exceptions import DiscoveryError, HatsuError, chain

__all__ = ["Settings"]


@dataclass(frozen=True, repr=False)
class Settings:
    """Everything a connection attempt needs; built once by the Client."""

    session_id: str
    gateway: str
    url: str | None
    encoding: str
    ping_interval: float | None
    ping_timeout: float | None
    reconnect: bool
    max_retries: int | None
    backoff_base: float
    backoff_max: float
    max_message_size: int
    fatal_close_codes: frozenset[int]
    ssl_context: ssl.SSLContext | None
    proxy: str | None
    retry_first_connect: bool = field(default=False)
    """Retry the first connection under the backoff policy, within connect()'s timeout."""

    def __repr__(self) -> str:
        # No session id, and no password of the gateway, url or proxy URL.
        shown = ", ".join(
            f"{name}={redact_url(value)!r}" if isinstance(value, str) else f"{name}={value!r}"
            for name, value in vars(self).items()
            if name != "session_id"
        )
        return f"Settings({shown})"

    @property
    def healthy_after(self) -> float:
        """Seconds a connection must stay up (having delivered an event) for the attempt
        count to reset: one ping interval, or 15 s without client pings."""
        return self.ping_interval if self.ping_interval else 15.0

    def identify(self) -> str:
        """The identify message: always plain JSON text, in zlib mode too."""
        return json.dumps({"session_id": self.session_id, "encoding": self.encoding})

    def scrub(self, text: str) -> str:
        """``text`` without the session id (a gateway may echo it in a close reason) and
        without URL passwords."""
        return redact_urls(redact(text, self.session_id))

    def scrub_error(self, error: HatsuError) -> HatsuError:
        """``error``, or a copy without the session id if it or its chain quotes it.

        A hostile gateway that knows the session id from an earlier identify may echo it in a
        discovery answer or a handshake response, which the errors quote. The copy has no
        ``__cause__``: a traceback of the original chain would show the secret again.
        """
        if not _chain_shows(error, self.scrub):
            return error
        message = self.scrub(str(error))
        if isinstance(error, DiscoveryError):
            return DiscoveryError(
                message,
                url=self.scrub(error.url),
                status=error.status,
                excerpt=self.scrub(error.excerpt),
            )
        return type(error)(message)


def _chain_shows(error: BaseException, scrub: Callable[[str], str]) -> bool:
    """True if ``scrub`` would change the text of ``error`` or of anything it chains to."""
    for exc in chain(error):
        text = str(exc)
        if scrub(text) != text or any(scrub(shown) != shown for shown in map(repr, exc.args)):
            return True
    return False
