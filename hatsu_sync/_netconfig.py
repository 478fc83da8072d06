"""How the client reaches the network: which proxy, and which TLS context, for one connection.

Discovery (requests) and the websocket (websocket-client) each have their own idea of both:
requests trusts certifi's bundle and reads ``REQUESTS_CA_BUNDLE``, ``ALL_PROXY`` and ``.netrc``;
websocket-client trusts the system store, reads ``WEBSOCKET_CLIENT_CA_BUNDLE`` and lets
``NO_PROXY`` override even an explicit proxy. Left alone they would make different decisions
for the two hops of one connection. So hatsu_sync decides here, once, with the rules that API.md
states, and hands both libraries an explicit answer.

Proxies: the ``proxy=`` option wins over the environment, ``NO_PROXY`` included. Without it,
``https_proxy``/``HTTPS_PROXY`` applies to https:// and wss:// URLs, ``http_proxy``/``HTTP_PROXY``
to http:// and ws:// ones (the lower-case name wins when both are set, even set empty), unless
``no_proxy``/``NO_PROXY`` exempts the host. ``NO_PROXY`` is a comma-separated list of ``*``
(every host), host names (``example.com`` also covers ``gw.example.com``; a leading ``.`` or
``*.`` is ignored), IP addresses or CIDR ranges (``127.0.0.0/8``, ``::1``), each optionally with
``:port``. Names are not resolved: ``127.0.0.1`` does not exempt ``localhost``. Loopback gets no
exemption of its own. Only ``http://`` proxies are supported; an environment variable naming
another kind is an error, not a silent direct connection.

TLS: the ``ssl_context`` option is used for every TLS connection; without it each connection
gets ``ssl.create_default_context()``: the system's trust store (OpenSSL's default locations,
which ``SSL_CERT_FILE``/``SSL_CERT_DIR`` can move), certificates and host names verified. A
context that does not verify is the caller's explicit choice, and a warning says so on every
connection.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import ssl
from urllib.parse import unquote, urlsplit

__all__ = ["ProxyAuth", "open_direct", "proxy_auth", "proxy_for", "shown_proxy", "tls_context"]

log = logging.getLogger("hatsu_sync")

ProxyAuth = tuple[str, str]

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
_SECURE_SCHEMES = ("https", "wss")
_SEPARATORS = re.compile(r"[,\s]+")


def proxy_for(url: str, explicit: str | None) -> str | None:
    """The ``http://`` proxy to reach ``url`` through, or None to connect directly.

    Args:
        url: the http(s):// or ws(s):// URL about to be connected to.
        explicit: the ``proxy=`` option: when set it is returned as is, whatever the
            environment says.

    Returns:
        ``http://[user:password@]host:port`` (port 80 when the variable names none), or None.

    Raises:
        ValueError: the environment names a proxy that is not an ``http://`` URL with a host
            (the message never shows its credentials).
    """
    if explicit is not None:
        return explicit
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    value = _environ("HTTPS_PROXY" if scheme in _SECURE_SCHEMES else "HTTP_PROXY")
    if not value or not value.strip():
        return None
    host = parts.hostname or ""
    port = parts.port or _DEFAULT_PORTS.get(scheme)
    no_proxy = _environ("NO_PROXY")
    if no_proxy and _exempt(host, port, no_proxy):
        return None
    return _normalise_proxy(value.strip())


def proxy_auth(proxy: str) -> ProxyAuth | None:
    """The (user, password) a proxy URL carries, percent-decoded, or None."""
    parts = urlsplit(proxy)
    if parts.username is None:
        return None
    return unquote(parts.username), unquote(parts.password or "")


def shown_proxy(proxy: str) -> str:
    """A proxy URL for messages and logs: ``http://host:port``, never its credentials."""
    parts = urlsplit(proxy)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{parts.port or 80}"


def tls_context(ssl_context: ssl.SSLContext | None, url: str) -> ssl.SSLContext:
    """The TLS context for one connection to ``url``.

    Returns the caller's context (logging a warning when it does not verify certificates or
    host names), or a new default one that verifies both against the system's trust store.
    """
    if ssl_context is None:
        return ssl.create_default_context()
    if ssl_context.verify_mode == ssl.CERT_NONE:
        log.warning(
            "TLS to %s is not verified: ssl_context has verify_mode CERT_NONE, so any server "
            "can pose as the gateway",
            url,
        )
    elif not ssl_context.check_hostname:
        log.warning(
            "TLS to %s does not check the host name: ssl_context has check_hostname False, so "
            "any certificate its CAs issued is accepted",
            url,
        )
    return ssl_context


def open_direct(url: str, context: ssl.SSLContext | None, timeout: float | None) -> socket.socket:
    """A socket connected straight to a ws:// or wss:// URL's host, TLS done for wss://.

    websocket-client applies the environment's proxy settings to any connection it opens
    itself, so a connection hatsu_sync decided to make directly is opened here and handed over.

    Raises:
        OSError: the connection or the TLS handshake failed (``ssl.SSLError`` names a
            verification failure).
    """
    parts = urlsplit(url)
    secure = parts.scheme.lower() == "wss"
    host = parts.hostname or ""
    sock = socket.create_connection((host, parts.port or (443 if secure else 80)), timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if secure:
            if context is None:  # pragma: no cover - callers always pass one for wss://
                raise ValueError("a wss:// connection needs a TLS context")
            return context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    return sock


def _environ(name: str) -> str | None:
    """An environment variable, the lower-case spelling first (set empty, it still wins)."""
    lower = os.environ.get(name.lower())
    if lower is not None:
        return lower
    if name == "HTTP_PROXY" and "REQUEST_METHOD" in os.environ:
        # Under CGI, HTTP_PROXY comes from a request's "Proxy:" header (httpoxy).
        return None
    return os.environ.get(name)


def _normalise_proxy(value: str) -> str:
    if "://" not in value:
        value = "http://" + value  # "host:3128", as curl and requests accept it
    unusable = (
        "the proxy named by the environment is unusable ({}): only http://host:port "
        "proxies are supported"
    )
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(unusable.format("malformed")) from None
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise ValueError(unusable.format(f"{parts.scheme}://..."))
    netloc = parts.netloc if port is not None else f"{parts.netloc}:80"
    return f"http://{netloc}"


def _exempt(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` exempts ``host`` (a URL's host name or IP) at ``port``."""
    host = host.strip("[]").rstrip(".").lower()
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in _SEPARATORS.split(no_proxy.strip().lower()):
        entry = raw
        if entry == "*":
            return True
        entry_port: str | None = None
        if entry.startswith("["):  # "[::1]" or "[::1]:8080"
            entry, _, rest = entry[1:].partition("]")
            entry_port = rest[1:] if rest.startswith(":") else None
        elif entry.count(":") == 1:  # "host:port" (a bare IPv6 address has several colons)
            entry, _, entry_port = entry.partition(":")
        if entry_port is not None and (not entry_port.isdigit() or int(entry_port) != port):
            continue
        if address is not None:
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                continue
            if network.version == address.version and address in network:
                return True
            continue
        name = entry.lstrip("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False
