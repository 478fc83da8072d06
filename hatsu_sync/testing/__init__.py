"""A real hatsu gateway on loopback, for tests, demos and your own test suite.

:class:`LocalGateway` runs both endpoints of the deployed gateway in background threads: the
discovery endpoint (``GET /available`` answers ``{"port": WS_PORT}``) and the websocket endpoint,
which behaves like the deployed server (docs/protocol.rst): it waits for the identify, closes with
4002 / 4004 / 4001 on a bad one, sends HELLO then READY (its ``d`` a JSON document encoded as a
string), encodes in ``json`` (text frames) or ``zlib`` (one deflate stream per connection, full
flushes, fragmented binary messages), answers HEARTBEAT with ACK, fans a client's PRESENCE out
as PRESENCE_UPDATE to every identified client (the sender too) and pings its clients.

On top of that it can misbehave on demand, for testing how a client copes: :meth:`abort`,
:meth:`disconnect`, :meth:`go_silent`, :meth:`fail_discovery`, :meth:`set_discovery_answer`,
:meth:`restart`, :meth:`send_raw`.

Using it in your own test suite (pytest)::

    import pytest

    from hatsu_sync import Client
    from hatsu_sync.testing import LocalGateway


    @pytest.fixture
    def gateway():
        with LocalGateway(session_ids={"test-session"}) as gw:
            yield gw


    def test_my_bot_sees_presence_updates(gateway):
        with Client("test-session", gateway=gateway.http_url) as client:
            gateway.wait_for_clients(1)
            gateway.send({"t": "PRESENCE_UPDATE", "id": "42", "d": {"type": 1}})
            names = [client.get_event(timeout=5).name for _ in range(3)]
        assert names == ["HELLO", "READY", "PRESENCE_UPDATE"]

Everything here binds to 127.0.0.1 on free ports by default, never logs session ids or message
contents, and :meth:`LocalGateway.stop` leaves no thread behind.

Given a server-side ``ssl_context``, both endpoints speak TLS: ``https://`` discovery and
``wss://``, with ``localhost`` as the URLs' host, for instance with a test CA from the
``trustme`` package::

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with LocalGateway(ssl_context=server_context) as gw:

After ``os.fork()``, a child process that inherited a running gateway finds it inert: its URLs
stay readable, every other method raises RuntimeError (it belongs to the parent process), and
nothing the child does touches the parent's sockets.

The package's modules: :mod:`._gateway` (the public class), :mod:`._core` (shared state),
:mod:`._connection` (one websocket connection), :mod:`._listener` and :mod:`._discovery` (the
two endpoints), :mod:`._faults` and :mod:`._observe` (faults on demand; counters and waits),
:mod:`._drivers` (feeding JSON lines and recordings, for ``hatsu-sync gateway``).
"""

from __future__ import annotations

from .._samples import SAMPLE_EVENTS
from ._behaviour import DEFAULT_USER
from ._gateway import LocalGateway

__all__ = ["DEFAULT_USER", "SAMPLE_EVENTS", "LocalGateway"]

# Shown (reprs, tracebacks, the API reference) where users import it from.
LocalGateway.__module__ = __name__
