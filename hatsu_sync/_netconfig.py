"""How the client reaches the network: which proxy, and which TLS context, for one connection.

Libraries each have their own idea of both: requests trusts certifi's bundle, reads
``REQUESTS_CA_BUNDLE``, ``ALL_PROXY`` and ``.netrc`` and rewrites the TLS context it is given;
websocket-client trusts the system store, reads ``WEBSOCKET_CLIENT_CA_BUNDLE``, lets ``NO_PROXY``
override even an explicit proxy and reads a proxy's answer without limit. Left alone they would
make different decisions for the two hops of one connection. So hatsu_sync decides here, once,
with the rules that API.md states, and opens the connections itself (:func:`open_socket`): the
same proxy rules, the same untouched TLS context and the same deadline for both hops.

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

import base64
import ipaddress
import logging
import os
import re
import socket
import ssl
from urllib.parse import unquote, urlsplit

from ._http import MAX_HEAD, HeadReader, ResponseError
from ._redact import redact_url, redact_urls
from ._state import Deadline

__all__ = [
    "ProxyAuth",
    "ProxyError",
    "ascii_host",
    "describe",
    "open_direct",
    "open_socket",
    "proxy_auth",
    "proxy_for",
    "recv_by",
    "send_by",
    "shown_proxy",
    "tls_context",
]

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

    Returns the caller's context as it is (logging a warning when it does not verify
    certificates or host names), or a new default one that verifies both against the system's
    trust store. Every hop hands the result to :func:`open_socket` (or websocket-client) without
    changing it: one trust decision for discovery and the websocket.
    """
    if ssl_context is None:
        return ssl.create_default_context()
    url = redact_url(url)
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

    The same as ``open_socket(url, None, context, timeout)``.
    """
    return open_socket(url, None, context, timeout)


def open_socket(
    url: str, proxy: str | None, context: ssl.SSLContext | None, timeout: float | None
) -> socket.socket:
    """A socket connected to the host of ``url``, TLS done for https:// and wss://.

    Straight there when ``proxy`` is None, else through an ``http://`` proxy's ``CONNECT``
    tunnel (with ``Proxy-Authorization`` when the proxy URL carries ``user:password``). The
    proxy's answer may take at most 64 KiB (status line and headers). The TLS handshake uses
    ``context`` as it is, with the URL's host as the server name: its ``verify_mode`` and
    ``check_hostname`` alone decide what is accepted, on this hop as on every other, and the
    context is never modified.

    Args:
        url: an http(s):// or ws(s):// URL; only its scheme, host and port are used.
        proxy: an ``http://[user:password@]host:port`` proxy (as :func:`proxy_for` gives it),
            or None.
        context: the TLS context (see :func:`tls_context`); required for https:// and wss://.
        timeout: seconds for everything together: connecting, the proxy's answer, the TLS
            handshake (a server that answers a byte at a time is cut off all the same). None
            sets no limit. Name resolution is the system's and cannot be bounded.

    Returns:
        The connected socket (an ``ssl.SSLSocket`` for TLS), in blocking mode with a timeout of
        the time left (None when there was no limit).

    Raises:
        TimeoutError: the deadline passed.
        ProxyError: the proxy could not be reached, refused the tunnel or gave an unusable
            answer (the message names the proxy, never its password).
        ssl.SSLError: the TLS handshake failed (``ssl.SSLCertVerificationError`` for a
            certificate or host name that is not accepted).
        OSError: the host could not be resolved or reached.
        ValueError: TLS is needed and ``context`` is None, or ``url`` has no host.
    """
    deadline = Deadline(timeout)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in {redact_url(url)!r}")
    port = parts.port or _DEFAULT_PORTS.get(scheme, 80)
    secure = scheme in _SECURE_SCHEMES
    if secure and context is None:
        raise ValueError(f"a {scheme}:// connection needs a TLS context")
    if proxy is None:
        sock = _connect(host, port, deadline)
    else:
        proxy_parts = urlsplit(proxy)
        try:
            sock = _connect(proxy_parts.hostname or "", proxy_parts.port or 80, deadline)
        except OSError as exc:
            raise ProxyError(
                f"could not connect to the proxy {shown_proxy(proxy)} ({describe(exc)})"
            ) from exc
    try:
        if proxy is not None:
            _tunnel(sock, host, port, proxy, deadline)
        if secure:
            assert context is not None  # checked above
            sock.settimeout(_time_left(deadline, "before the TLS handshake"))
            try:
                # CPython's handshake spreads the socket's timeout over all its reads, so a
                # server that answers a byte at a time is cut off at the deadline too.
                sock = context.wrap_socket(sock, server_hostname=host)
            except socket.timeout:
                raise TimeoutError("timed out during the TLS handshake") from None
        sock.settimeout(deadline.remaining())
    except BaseException:
        sock.close()
        raise
    return sock


class ProxyError(OSError):
    """The proxy could not be reached, refused the tunnel, or answered something unusable."""


def send_by(sock: socket.socket, data: bytes, deadline: Deadline) -> None:
    """Send all of ``data`` by the deadline.

    Raises:
        TimeoutError: the deadline passed first.
        OSError: the connection failed.
    """
    # Since Python 3.5 sendall's timeout bounds the whole call, not each write.
    sock.settimeout(_time_left(deadline, "sending"))
    try:
        sock.sendall(data)
    except socket.timeout:
        raise TimeoutError("timed out sending") from None


def recv_by(sock: socket.socket, deadline: Deadline, size: int = 16 * 1024) -> bytes:
    """One read of at most ``size`` bytes, waiting no longer than the deadline.

    Returns whatever the first read brings (b"" at the end of the stream), so that a caller
    looping over it checks the deadline between reads: a server that drips bytes cannot hold
    it past the deadline.

    Raises:
        TimeoutError: the deadline passed.
        OSError: the connection failed.
    """
    sock.settimeout(_time_left(deadline, "waiting for the answer"))
    try:
        return sock.recv(size)
    except socket.timeout:
        raise TimeoutError("timed out waiting for the answer") from None


def _time_left(deadline: Deadline, doing: str) -> float | None:
    left = deadline.remaining()
    if left is not None and left <= 0:
        raise TimeoutError(f"timed out {doing}")
    return left


def _connect(host: str, port: int, deadline: Deadline) -> socket.socket:
    """A TCP connection to ``host``:``port``, trying each address while time is left."""
    error: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(_time_left(deadline, f"connecting to {_hostport(host, port)}"))
            sock.connect(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            return sock
        except socket.timeout:
            sock.close()
            raise TimeoutError(f"timed out connecting to {_hostport(host, port)}") from None
        except OSError as exc:
            sock.close()
            error = exc
        except BaseException:
            sock.close()
            raise
    raise error or OSError(f"no address for {_hostport(host, port)}")


def _tunnel(sock: socket.socket, host: str, port: int, proxy: str, deadline: Deadline) -> None:
    """Ask the proxy on ``sock`` for a tunnel to ``host``:``port``; return once it is open."""
    shown = shown_proxy(proxy)
    target = _hostport(ascii_host(host), port)
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    auth = proxy_auth(proxy)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        lines.append(f"Proxy-Authorization: Basic {token}")
    try:
        send_by(sock, ("\r\n".join(lines) + "\r\n\r\n").encode("ascii"), deadline)
        reader = HeadReader(MAX_HEAD)
        while True:
            data = recv_by(sock, deadline)
            if not data:
                raise ProxyError(f"the proxy {shown} closed the connection without answering")
            answer = reader.feed(data)
            if answer is not None:
                break
    except TimeoutError:
        raise TimeoutError(f"timed out waiting for the proxy {shown} to open the tunnel") from None
    except ResponseError as exc:
        raise ProxyError(f"the proxy {shown} gave an unusable answer: {exc}") from exc
    except ProxyError:
        raise
    except OSError as exc:
        raise ProxyError(f"the proxy {shown} failed ({describe(exc)})") from exc
    head, rest = answer
    if not 200 <= head.status < 300:
        hint = " (it wants credentials)" if head.status == 407 else ""
        raise ProxyError(
            f"the proxy {shown} refused the tunnel: HTTP {head.status} {head.reason}{hint}".rstrip()
        )
    if rest:
        # Nothing was sent through the tunnel yet: the far end cannot have said anything.
        raise ProxyError(f"the proxy {shown} sent data after opening the tunnel")


def ascii_host(host: str) -> str:
    """A host name as it goes on the wire (IDNA for a non-ASCII name).

    Raises:
        ValueError: the name cannot be encoded.
    """
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"the host name {host!r} cannot be encoded ({exc})") from None


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def describe(exc: BaseException) -> str:
    """A short description of an exception for a message: its type and text, URL passwords
    redacted."""
    return f"{type(exc).__name__}: {redact_urls(str(exc)) or 'no detail'}"[:300]


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
