"""The Client end to end, over real sockets, against a LocalGateway."""

from __future__ import annotations

import copy
import gc
import json
import logging
import pickle
import threading
import warnings
from typing import Any, Callable

import pytest

import hatsu_sync
from hatsu_sync import (
    ChannelCreate,
    Client,
    ClientClosed,
    Connected,
    ConnectError,
    Disconnected,
    DiscoveryError,
    Event,
    GatewayClosed,
    GuildCreate,
    GuildDelete,
    GuildInit,
    GuildJoin,
    GuildUpdate,
    Hello,
    InviteCreate,
    Notification,
    PresenceUpdate,
    Ready,
    State,
)
from hatsu_sync._samples import SAMPLE_EVENTS
from hatsu_sync.testing import LocalGateway

from .conftest import SESSION, T, client_threads, eventually, take, take_until

MakeClient = Callable[..., Client]


# -- connecting and receiving ------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["json", "zlib"])
def test_every_event_kind_arrives_as_its_model(
    gateway: LocalGateway, make_client: MakeClient, encoding: str
) -> None:
    """HELLO, READY and every sample event arrive in order, as their models, in both encodings."""
    client = make_client(encoding=encoding)
    client.connect(timeout=T)
    hello, ready = take(client, 2)
    assert isinstance(hello, Hello)
    assert isinstance(ready, Ready)
    assert isinstance(ready.user, dict)
    assert SESSION in ready.user["session_ids"]  # READY's d was decoded a second time
    assert gateway.identifies[-1] == {"session_id": SESSION, "encoding": encoding}

    gateway.send_many(SAMPLE_EVENTS)
    events = take(client, len(SAMPLE_EVENTS))
    assert [e.name for e in events] == [m["t"] for m in SAMPLE_EVENTS]
    assert [e.raw for e in events] == SAMPLE_EVENTS
    by_name: dict[str, Event] = {}
    for e in events:
        by_name.setdefault(e.name, e)
    expected = {
        "GUILD_INIT": GuildInit,
        "PRESENCE_UPDATE": PresenceUpdate,
        "NOTIFICATION": Notification,
        "GUILD_CREATE": GuildCreate,
        "GUILD_JOIN": GuildJoin,
        "GUILD_UPDATE": GuildUpdate,
        "CHANNEL_CREATE": ChannelCreate,
        "INVITE_CREATE": InviteCreate,
        "GUILD_DELETE": GuildDelete,
    }
    for name, cls in expected.items():
        assert type(by_name[name]) is cls, name
    init = by_name["GUILD_INIT"]
    assert isinstance(init, GuildInit)
    assert init.guild is not None
    assert init.guild.channels is not None
    assert init.guild.channels[0].name == "general"
    presence = by_name["PRESENCE_UPDATE"]
    assert isinstance(presence, PresenceUpdate)
    assert presence.user_id == "907362914021453111"
    assert presence.presence.embed is not None
    assert presence.presence.embed.text is not None
    assert presence.presence.embed.text.bottom == "3:12 left"
    notification = by_name["NOTIFICATION"]
    assert isinstance(notification, Notification)
    assert notification.type == "FRIEND_REQUEST"
    assert notification.data is None
    invite = by_name["INVITE_CREATE"]
    assert isinstance(invite, InviteCreate)
    assert invite.invite.code == "aBc12x"
    assert type(by_name["SOMETHING_NEW"]) is Event
    assert client.stats.events_received == 2 + len(SAMPLE_EVENTS)
    assert client.stats.decode_errors == 0


def test_url_skips_discovery(gateway: LocalGateway, make_client: MakeClient) -> None:
    """With url= the client connects straight to the websocket, even if discovery is broken."""
    gateway.fail_discovery("500")
    client = make_client(url=gateway.ws_url)
    client.connect(timeout=T)
    assert isinstance(client.get_event(timeout=T), Hello)


def test_context_manager_connects_and_closes(gateway: LocalGateway) -> None:
    """`with Client(...)` connects on enter and closes on exit."""
    with Client(SESSION, gateway=gateway.http_url) as client:
        assert client.state is State.CONNECTED
        assert isinstance(client.get_event(timeout=T), Hello)
    assert client.closed
    assert client.state is State.CLOSED


def test_state_moves_from_idle_to_closed(gateway: LocalGateway, make_client: MakeClient) -> None:
    """state goes IDLE -> CONNECTED -> CLOSED and `closed` follows it."""
    client = make_client()
    assert client.state is State.IDLE
    assert not client.closed
    client.connect(timeout=T)
    assert client.state is State.CONNECTED
    client.close()
    assert client.state is State.CLOSED
    assert client.closed


# -- get_event ------------------------------------------------------------------------------------


def test_get_event_timeouts(gateway: LocalGateway, make_client: MakeClient) -> None:
    """timeout > 0 waits then raises TimeoutError; timeout <= 0 polls."""
    client = make_client()
    client.connect(timeout=T)
    take(client, 2)
    with pytest.raises(TimeoutError):
        client.get_event(timeout=0.05)
    with pytest.raises(TimeoutError):
        client.get_event(timeout=0)
    with pytest.raises(TimeoutError):
        client.get_event(timeout=-1)
    gateway.send({"t": "PING_ME", "d": 1})
    eventually(lambda: client.stats.events_received == 3)
    assert client.get_event(timeout=0).name == "PING_ME"


def test_get_event_none_blocks_until_an_event(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """get_event(None) blocks until an event arrives."""
    client = make_client()
    client.connect(timeout=T)
    take(client, 2)
    got: list[Event] = []
    waiter = threading.Thread(target=lambda: got.append(client.get_event()))
    waiter.start()
    gateway.send({"t": "LATE", "d": None})
    waiter.join(T)
    assert [e.name for e in got] == ["LATE"]


def test_several_consumers_each_event_goes_to_one(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """Several threads calling get_event at once receive every event exactly once."""
    client = make_client()
    client.connect(timeout=T)
    take(client, 2)
    seen: list[int] = []
    lock = threading.Lock()

    def consume() -> None:
        for event in client.events(timeout=0.5):
            with lock:
                seen.append(event.data)

    consumers = [threading.Thread(target=consume) for _ in range(4)]
    for thread in consumers:
        thread.start()
    gateway.send_many({"t": "N", "d": i} for i in range(2000))
    for thread in consumers:
        thread.join(T * 2)
    assert sorted(seen) == list(range(2000))


def test_close_wakes_a_blocked_get_event(gateway: LocalGateway, make_client: MakeClient) -> None:
    """close() from another thread wakes a get_event() blocked with no timeout: ClientClosed."""
    client = make_client()
    client.connect(timeout=T)
    take(client, 2)
    outcome: list[BaseException] = []

    def blocked() -> None:
        try:
            client.get_event()
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=blocked)
    waiter.start()
    client.close()
    waiter.join(T)
    assert not waiter.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], ClientClosed)


def test_buffered_events_come_before_the_close_error(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """After close(), buffered events are returned first, then ClientClosed."""
    client = make_client()
    client.connect(timeout=T)
    gateway.wait_for_clients(1, timeout=T)  # the gateway has the identify
    gateway.send_many({"t": "N", "d": i} for i in range(3))
    eventually(lambda: client.stats.events_received == 5)
    client.close()
    assert [e.name for e in take(client, 5)] == ["HELLO", "READY", "N", "N", "N"]
    with pytest.raises(ClientClosed):
        client.get_event(timeout=0)
    with pytest.raises(ClientClosed):
        client.get_event()


def test_events_iteration_stops_on_timeout_and_on_close(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """events(timeout) stops after a quiet spell; iter(client) stops after close."""
    client = make_client()
    client.connect(timeout=T)
    assert [e.name for e in client.events(timeout=0.3)] == ["HELLO", "READY"]
    gateway.send({"t": "LAST", "d": None})
    eventually(lambda: client.stats.events_received == 3)
    client.close()
    assert [e.name for e in client] == ["LAST"]


def test_buffer_is_bounded_and_drops_the_oldest(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """With max_queue=5 and 20 events unread, the 5 newest stay and 17 drops are counted."""
    client = make_client(max_queue=5)
    client.connect(timeout=T)
    gateway.wait_for_clients(1, timeout=T)  # the gateway has the identify
    gateway.send_many({"t": "N", "d": i} for i in range(20))
    eventually(lambda: client.stats.events_received == 22)
    assert [e.data for e in take(client, 5)] == [15, 16, 17, 18, 19]
    assert client.stats.events_dropped == 17
    with pytest.raises(TimeoutError):
        client.get_event(timeout=0)


# -- callbacks ------------------------------------------------------------------------------------


def test_callbacks_by_name_class_star_in_order_on_one_thread(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """Handlers match by name, class and '*', run in registration order on one callback thread."""
    client = make_client()
    calls: list[tuple[str, str, str]] = []
    done = threading.Event()

    @client.on("PRESENCE_UPDATE")
    def by_name(event: Event) -> None:
        calls.append(("name", event.name, threading.current_thread().name))

    @client.on(PresenceUpdate)
    def by_class(event: Event) -> None:
        calls.append(("class", event.name, threading.current_thread().name))

    @client.on("*")
    def every(event: Event) -> None:
        calls.append(("*", event.name, threading.current_thread().name))
        if event.name == "END":
            done.set()

    assert by_name.__name__ == "by_name"  # the decorator returns the function itself
    client.connect(timeout=T)
    gateway.wait_for_clients(1, timeout=T)  # the gateway has the identify
    gateway.send_many([SAMPLE_EVENTS[1], {"t": "OTHER", "d": 1}, {"t": "END", "d": None}])
    assert done.wait(T)
    threads = {thread for _, _, thread in calls}
    assert threads == {"hatsu-sync-callbacks"}
    assert [(kind, name) for kind, name, _ in calls] == [
        ("*", "HELLO"),
        ("*", "READY"),
        ("name", "PRESENCE_UPDATE"),
        ("class", "PRESENCE_UPDATE"),
        ("*", "PRESENCE_UPDATE"),
        ("*", "OTHER"),
        ("*", "END"),
    ]


def test_get_event_does_not_wait_for_callbacks(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """Events reach get_event() while a handler is blocked."""
    client = make_client()
    release = threading.Event()
    client.on("*", lambda event: release.wait(T))
    client.connect(timeout=T)
    gateway.wait_for_clients(1, timeout=T)  # the gateway has the identify
    gateway.send({"t": "X", "d": None})
    assert [e.name for e in take(client, 3)] == ["HELLO", "READY", "X"]
    release.set()


def test_callbacks_and_get_event_each_get_their_own_equal_event(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """An event a handler takes reaches get_event() too, equal, as an object of its own: what
    the handler reads or changes stays out of get_event()'s event, built from the message."""
    client = make_client()
    handled: list[Event] = []
    done = threading.Event()

    def handler(event: Event) -> None:
        assert isinstance(event, PresenceUpdate)
        assert event.presence is not None
        handled.append(event)
        event.presence.description = "changed by a handler"
        done.set()

    client.on("PRESENCE_UPDATE", handler)
    client.connect(timeout=T)
    gateway.wait_for_clients(1, timeout=T)
    message = next(m for m in SAMPLE_EVENTS if m["t"] == "PRESENCE_UPDATE")
    gateway.send(message)
    assert done.wait(T)
    pulled = take(client, 3)[2]
    assert isinstance(pulled, PresenceUpdate)
    assert pulled is not handled[0]
    assert pulled.presence is not None
    assert pulled.presence is not handled[0].presence
    assert pulled.presence.description != "changed by a handler"
    assert pulled.raw == message
    assert pulled.user_id == handled[0].user_id


def test_handled_and_unhandled_events_and_errors_keep_their_order(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """Events some handler takes, events none does and undecodable messages, mixed in one
    burst: get_event() has every event in order, and the callbacks see theirs and each
    "error" in order, the error between the events it came between."""
    client = make_client()
    seen: list[Any] = []
    done = threading.Event()

    def handler(event: Event) -> None:
        seen.append(event.data)
        if event.data == 299:
            done.set()

    client.on("A", handler)
    client.on("error", lambda error: seen.append("error"))
    client.connect(timeout=T)
    gateway.wait_for_clients(1, timeout=T)
    expected = []
    for i in range(300):
        if i == 150:
            gateway.send_raw("not json")
            expected.append("error")
        name = "A" if i % 3 else "B"
        gateway.send({"t": name, "d": i})
        if name == "A":  # the last, 299, is one
            expected.append(i)
    assert done.wait(T)
    assert seen == expected
    pulled = take(client, 302)[2:]
    assert [e.data for e in pulled] == list(range(300))
    assert [e.name for e in pulled[:6]] == ["B", "A", "A", "B", "A", "A"]
    assert client.stats.events_dropped == 0


def test_events_no_handler_takes_reach_get_event_as_decoded(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """With handlers for other names only, get_event() gets the event the decoder made (no
    twin, and built at once while the reader keeps up), and no callback queue holds it."""
    client = make_client()
    client.on("NOTIFICATION", lambda event: None)
    client.connect(timeout=T)
    gateway.wait_for_clients(1, timeout=T)
    gateway.send(next(m for m in SAMPLE_EVENTS if m["t"] == "PRESENCE_UPDATE"))
    pulled = take(client, 3)[2]
    assert isinstance(pulled, PresenceUpdate)
    assert pulled._hot  # built by the decoder, waiting for its first read
    assert pulled.presence is not None


def test_off_removes_a_handler(gateway: LocalGateway, make_client: MakeClient) -> None:
    """off() stops a handler from being called and says whether it was registered."""
    client = make_client()
    seen: list[str] = []
    done = threading.Event()

    def handler(event: Event) -> None:
        seen.append(event.name)

    client.on("A", handler)
    client.on("B", lambda event: done.set())
    assert client.off("A", handler) is True
    assert client.off("A", handler) is False
    client.connect(timeout=T)
    gateway.wait_for_clients(1, timeout=T)  # the gateway has the identify
    gateway.send_many([{"t": "A", "d": 1}, {"t": "B", "d": 1}])
    assert done.wait(T)
    assert seen == []


def test_raising_handler_is_logged_and_reported(
    gateway: LocalGateway, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A raising handler goes to 'error', is logged once at INFO (no traceback), stops nothing."""
    client = make_client()
    errors: list[BaseException] = []
    seen: list[Any] = []
    done = threading.Event()

    @client.on("N")
    def bad(event: Event) -> None:
        raise RuntimeError(f"boom {event.data}")

    @client.on("N")
    def good(event: Event) -> None:
        seen.append(event.data)
        if event.data == 2:
            done.set()

    client.on("error", errors.append)
    with caplog.at_level(logging.INFO, logger="hatsu_sync"):
        client.connect(timeout=T)
        gateway.wait_for_clients(1, timeout=T)  # the gateway has the identify
        gateway.send_many({"t": "N", "d": i} for i in range(3))
        assert done.wait(T)
        eventually(lambda: len(errors) == 3)
    assert seen == [0, 1, 2]
    assert [str(e) for e in errors] == ["boom 0", "boom 1", "boom 2"]
    records = [r for r in caplog.records if "raised" in r.getMessage()]
    assert len(records) == 3
    assert all(r.levelno == logging.INFO and not r.exc_info for r in records)
    assert client.state is State.CONNECTED


def test_lifecycle_callbacks(gateway: LocalGateway, make_client: MakeClient) -> None:
    """'connect' gets a Connected with the ws URL; 'disconnect' gets one Disconnected on close."""
    client = make_client()
    got: list[Any] = []
    client.on("connect", got.append)
    client.on("disconnect", got.append)
    client.connect(timeout=T)
    client.close()
    assert got[0] == Connected(url=gateway.ws_url)
    assert len(got) == 2
    assert isinstance(got[1], Disconnected)
    assert got[1].reconnecting is False


def test_close_from_inside_a_callback(gateway: LocalGateway, make_client: MakeClient) -> None:
    """close() called inside a handler closes the client and every thread ends."""
    client = make_client()
    disconnected = threading.Event()
    client.on("READY", lambda event: client.close())
    client.on("disconnect", lambda info: disconnected.set())
    client.connect(timeout=T)
    assert client.wait(T) is True
    assert disconnected.wait(T)
    eventually(lambda: not client_threads(), what="threads to end")


def test_callback_queue_is_bounded(gateway: LocalGateway, make_client: MakeClient) -> None:
    """A blocked handler's backlog is bounded by max_queue; the overflow is counted."""
    client = make_client(max_queue=10)
    release = threading.Event()
    client.on("N", lambda event: release.wait(T))
    client.connect(timeout=T)
    gateway.wait_for_clients(1, timeout=T)  # the gateway has the identify
    gateway.send_many({"t": "N", "d": i} for i in range(50))
    eventually(lambda: client.stats.events_received == 52)
    assert client.stats.callbacks_dropped >= 50 - 10 - 1
    release.set()


def test_on_rejects_bad_keys_and_handlers(make_client: MakeClient) -> None:
    """on() raises TypeError for a key or handler of the wrong kind, ValueError for ""."""
    client = make_client()
    with pytest.raises(TypeError):
        client.on(42, print)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="unknown callback key"):
        client.on("", print)
    with pytest.raises(TypeError):
        client.on(dict, print)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        client.on("X", "not callable")  # type: ignore[call-overload]


# -- closing, waiting, reconnecting policy basics ------------------------------------------------


def test_close_is_idempotent_and_final(gateway: LocalGateway, make_client: MakeClient) -> None:
    """close() twice is fine; connect() on a closed client raises ClientClosed."""
    client = make_client()
    client.connect(timeout=T)
    client.close()
    client.close()
    with pytest.raises(ClientClosed):
        client.connect()
    assert client.wait(0) is True


def test_connect_twice_is_refused(gateway: LocalGateway, make_client: MakeClient) -> None:
    """connect() while connected raises RuntimeError."""
    client = make_client()
    client.connect(timeout=T)
    with pytest.raises(RuntimeError):
        client.connect()


def test_wait_times_out_then_returns_true_on_close(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """wait() returns False on timeout and True once another thread closes the client."""
    client = make_client()
    client.connect(timeout=T)
    assert client.wait(0.05) is False
    closer = threading.Thread(target=client.close)
    closer.start()
    assert client.wait(T) is True
    closer.join(T)


def test_fatal_close_raises_gateway_closed(make_client: MakeClient) -> None:
    """An unknown session id is closed with 4002: get_event and wait raise GatewayClosed."""
    with LocalGateway(session_ids=["the-good-one"]) as gw:
        client = make_client(gateway=gw.http_url)
        client.connect(timeout=T)  # returns once identify is sent
        with pytest.raises(GatewayClosed) as caught:
            client.wait(T)
        assert caught.value.code == 4002
        with pytest.raises(GatewayClosed):
            client.get_event(timeout=T)
        assert client.state is State.CLOSED
        assert SESSION not in str(caught.value)


def test_loss_without_reconnect_raises_gateway_closed(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """With reconnect=False an abort closes the client: GatewayClosed with code None."""
    client = make_client(reconnect=False)
    got: list[Disconnected] = []
    client.on("disconnect", got.append)
    client.connect(timeout=T)
    take(client, 2)
    gateway.abort()
    with pytest.raises(GatewayClosed) as caught:
        client.wait(T)
    assert caught.value.code is None
    eventually(lambda: got)
    assert got[0].code is None
    assert got[0].reconnecting is False


def test_close_code_without_reconnect(gateway: LocalGateway, make_client: MakeClient) -> None:
    """With reconnect=False a 1011 close ends the client with GatewayClosed(1011)."""
    client = make_client(reconnect=False)
    client.connect(timeout=T)
    take(client, 2)
    gateway.disconnect(1011, "server error")
    with pytest.raises(GatewayClosed) as caught:
        client.get_event(timeout=T)
    assert (caught.value.code, caught.value.reason) == (1011, "server error")


# -- connect failures -----------------------------------------------------------------------------


def test_discovery_failure_raises_and_leaves_no_thread(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """A failing discovery raises DiscoveryError naming the URL and status; connect() can retry."""
    gateway.fail_discovery("500")
    client = make_client()
    with pytest.raises(DiscoveryError) as caught:
        client.connect(timeout=T)
    assert gateway.http_url in str(caught.value)
    assert "500" in str(caught.value)
    assert caught.value.__cause__ is not None or caught.value.status == 500
    assert client.state is State.IDLE
    assert not client_threads()
    gateway.fail_discovery(None)
    client.connect(timeout=T)
    assert isinstance(client.get_event(timeout=T), Hello)


def test_refused_connection_raises_connect_error(make_client: MakeClient) -> None:
    """A websocket URL where nothing listens raises ConnectError chained to the cause."""
    with LocalGateway() as gw:
        dead = gw.ws_url
    client = make_client(url=dead)
    with pytest.raises(ConnectError) as caught:
        client.connect(timeout=T)
    assert dead in str(caught.value)
    assert caught.value.__cause__ is not None
    assert not client_threads()


# -- sending --------------------------------------------------------------------------------------


def test_send_reaches_the_gateway(gateway: LocalGateway, make_client: MakeClient) -> None:
    """send() delivers a JSON text message; HEARTBEAT gets an ACK back."""
    client = make_client()
    client.connect(timeout=T)
    client.send({"t": "HEARTBEAT", "s": 7})
    ack = take_until(client, "ACK")
    assert ack.raw["s"] == 7
    assert {"t": "HEARTBEAT", "s": 7} in gateway.received


def test_send_errors(gateway: LocalGateway, make_client: MakeClient) -> None:
    """send() refuses non-dicts, oversize messages, an unconnected and a closed client."""
    client = make_client()
    with pytest.raises(ConnectError):
        client.send({"t": "X"})
    client.connect(timeout=T)
    with pytest.raises(TypeError):
        client.send(["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.send({"t": object()})
    with pytest.raises(ValueError, match="bytes"):
        client.send({"t": "X", "d": "x" * 2**20})
    client.close()
    with pytest.raises(ClientClosed):
        client.send({"t": "X"})


# -- construction, repr, stats --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"session_id": ""}, ValueError),
        ({"session_id": "   "}, ValueError),
        ({"session_id": None}, TypeError),
        ({"encoding": "etf"}, ValueError),
        ({"ping_interval": 5.0, "ping_timeout": 5.0}, ValueError),
        ({"ping_interval": 5.0, "ping_timeout": 10.0}, ValueError),
        ({"ping_interval": 0}, ValueError),
        ({"ping_timeout": -1}, ValueError),
        ({"url": "http://127.0.0.1:1"}, ValueError),
        ({"gateway": "ftp://example.invalid"}, ValueError),
        ({"max_queue": 0}, ValueError),
        ({"max_retries": -1}, ValueError),
        ({"max_message_size": 0}, ValueError),
        ({"backoff_base": -1}, ValueError),
        ({"proxy": "socks5://127.0.0.1:1080"}, ValueError),
        ({"proxy": "http://127.0.0.1"}, ValueError),
        ({"ssl_context": "yes"}, TypeError),
        ({"fatal_close_codes": ["4002"]}, TypeError),
        ({"max_buffer_bytes": 0}, ValueError),
        ({"max_buffer_bytes": 1.5}, TypeError),
        ({"retry_first_connect": "yes"}, TypeError),
    ],
)
def test_constructor_validates(kwargs: dict[str, Any], error: type[Exception]) -> None:
    """Bad constructor arguments raise at once, without I/O, and never echo the session id."""
    kwargs = {"session_id": SESSION, **kwargs}
    with pytest.raises(error) as caught:
        Client(**kwargs)
    assert SESSION not in str(caught.value)


def test_pings_can_be_disabled() -> None:
    """ping_interval=None and ping_timeout=None are accepted."""
    Client(SESSION, ping_interval=None)
    Client(SESSION, ping_timeout=None)
    Client(SESSION, ping_interval=None, ping_timeout=None)


def test_repr_never_shows_the_session_id(gateway: LocalGateway, make_client: MakeClient) -> None:
    """repr(client) shows the state and URL, never the session id."""
    client = make_client()
    assert SESSION not in repr(client)
    client.connect(timeout=T)
    text = repr(client)
    assert SESSION not in text
    assert "CONNECTED" in text
    assert gateway.ws_url in text
    assert SESSION not in repr(client._settings)


def test_public_names() -> None:
    """Every name API.md fixes is exported from hatsu_sync and listed in __all__."""
    fixed = [
        "Client",
        "State",
        "Event",
        "Hello",
        "Ready",
        "PresenceUpdate",
        "Presence",
        "Embed",
        "EmbedText",
        "Notification",
        "GuildCreate",
        "GuildJoin",
        "GuildInit",
        "GuildUpdate",
        "GuildDelete",
        "InviteCreate",
        "ChannelCreate",
        "Guild",
        "Channel",
        "Invite",
        "HatsuError",
        "ConnectError",
        "DiscoveryError",
        "GatewayClosed",
        "ClientClosed",
        "Connected",
        "Disconnected",
        "DEFAULT_GATEWAY",
        "PRODUCTION_1",
    ]
    for name in fixed:
        assert name in hatsu_sync.__all__, name
        assert hasattr(hatsu_sync, name), name
    assert hatsu_sync.DEFAULT_GATEWAY == "https://gateway.vincentrps.xyz"
    assert hatsu_sync.PRODUCTION_1 == "wss://gateway-prod-1.vincentrps.xyz"
    assert issubclass(hatsu_sync.DiscoveryError, hatsu_sync.ConnectError)
    for error in ("ConnectError", "GatewayClosed", "ClientClosed"):
        assert issubclass(getattr(hatsu_sync, error), hatsu_sync.HatsuError)
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("hatsu_sync").handlers)


def test_unclosed_client_warns_when_collected(gateway: LocalGateway) -> None:
    """A connected client that is garbage-collected warns (ResourceWarning) and closes."""
    client = Client(SESSION, gateway=gateway.http_url)
    client.connect(timeout=T)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del client
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in caught)
    eventually(lambda: not client_threads(), what="the collected client's threads to end")


def test_identify_payload_is_plain_json(gateway: LocalGateway, make_client: MakeClient) -> None:
    """The identify is one JSON text message with session_id and encoding."""
    client = make_client(encoding="zlib")
    client.connect(timeout=T)
    gateway.wait_for_clients(1, timeout=T)
    assert json.loads(json.dumps(gateway.identifies[0])) == {
        "session_id": SESSION,
        "encoding": "zlib",
    }


# -- second release: forgotten connect, handler keys, duplicates, settings -----------------------


def test_a_client_never_connected_refuses_to_wait(make_client: MakeClient) -> None:
    """Before connect(), get_event (any timeout), events, iteration and wait raise at once."""
    client = make_client()
    calls: list[Callable[[], Any]] = [
        client.get_event,
        lambda: client.get_event(timeout=5),
        lambda: client.get_event(timeout=0),
        client.events,
        lambda: iter(client),
        client.wait,
        lambda: client.wait(5),
    ]
    for call in calls:
        with pytest.raises(RuntimeError, match=r"call client\.connect\(\)") as caught:
            call()
        assert not isinstance(caught.value, TimeoutError)
        assert "with Client(...)" in str(caught.value)


def test_a_failed_connect_leaves_the_client_refusing_to_wait(make_client: MakeClient) -> None:
    """After a failed connect(), get_event() still raises at once instead of blocking."""
    client = make_client(url="ws://127.0.0.1:1")
    with pytest.raises(ConnectError):
        client.connect(timeout=T)
    with pytest.raises(RuntimeError, match="connect"):
        client.get_event()


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("connected", "did you mean 'connect'"),
        ("disconnected", "did you mean 'disconnect'"),
        ("erorr", "did you mean 'error'"),
        ("presence_update", "'PRESENCE_UPDATE'"),
        ("Ready", "'READY'"),
        ("", ""),
        ("on message", ""),
    ],
)
def test_on_refuses_keys_that_would_never_be_called(
    make_client: MakeClient, key: str, hint: str
) -> None:
    """on() raises ValueError for a key no event or lifecycle could match, naming the valid ones."""
    client = make_client()
    with pytest.raises(ValueError, match="unknown callback key") as caught:
        client.on(key, print)
    message = str(caught.value)
    assert hint in message
    for name in ("'connect'", "'disconnect'", "'error'", "'*'"):
        assert name in message
    with pytest.raises(ValueError, match="unknown callback key"):
        client.on(key)  # the decorator form refuses at once too


def test_on_accepts_every_documented_key(make_client: MakeClient) -> None:
    """Upper-case names (known or not), model classes, '*' and lifecycle names are accepted."""
    client = make_client()
    for key in ("PRESENCE_UPDATE", "SOMETHING_NEW_2", "*", "connect", "disconnect", "error"):
        client.on(key, print)
    client.on(PresenceUpdate, print)
    client.on(Event, print)


def test_off_without_a_handler_removes_every_handler_of_the_key(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """off(key) drops all of key's handlers (a re-run notebook cell's old ones) and says so."""
    client = make_client()
    seen: list[str] = []
    client.on("A", lambda event: seen.append("old 1"))
    client.on("A", lambda event: seen.append("old 2"))
    client.on("B", lambda event: seen.append("b"))
    assert client.off("A") is True
    assert client.off("A") is False
    client.on("A", lambda event: seen.append("new"))
    done = threading.Event()
    client.on("DONE", lambda event: done.set())
    client.connect(timeout=T)
    gateway.wait_for_clients(1, timeout=T)
    gateway.send_many([{"t": "A"}, {"t": "B"}, {"t": "DONE"}])
    assert done.wait(T)
    assert seen == ["new", "b"]
    with pytest.raises(ValueError, match="unknown callback key"):
        client.off("a")


def test_handlers_added_while_events_flow_get_the_next_events(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """A handler registered (or removed) inside a handler applies from the next event on."""
    client = make_client()
    seen: list[tuple[str, int]] = []
    done = threading.Event()

    def late(event: Event) -> None:
        seen.append(("late", event.data))

    def first(event: Event) -> None:
        seen.append(("first", event.data))
        if event.data == 1:
            client.on("N", late)
        if event.data == 3:
            client.off("N", late)
        if event.data == 4:
            done.set()

    client.on("N", first)
    client.connect(timeout=T)
    gateway.wait_for_clients(1, timeout=T)
    gateway.send_many({"t": "N", "d": i} for i in range(5))
    assert done.wait(T)
    assert seen == [
        ("first", 0),
        ("first", 1),
        ("first", 2),
        ("late", 2),
        ("first", 3),
        ("late", 3),
        ("first", 4),
    ]


def test_a_second_open_client_for_one_session_is_warned_about(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """Connecting a second client with the same session id warns, without the id."""
    first = make_client()
    first.connect(timeout=T)
    other = make_client("another-session-id")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        other.connect(timeout=T)  # another session: fine
        second = make_client()
        second.connect(timeout=T)
    assert len(caught) == 1, [str(w.message) for w in caught]
    warning = caught[0]
    assert issubclass(warning.category, UserWarning)
    assert warning.filename == __file__  # it points at the user's connect()
    assert "client.close()" in str(warning.message)
    assert SESSION not in str(warning.message)
    first.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        third = make_client()
        second.close()
        third.connect(timeout=T)  # the old ones are closed: no warning
    assert caught == []


def test_the_duplicate_warning_as_an_error_leaves_nothing_started(
    gateway: LocalGateway, make_client: MakeClient
) -> None:
    """With warnings as errors (pytest -W error) the duplicate warning raises from connect()
    before anything starts: the second client stays IDLE, has no thread, and connects later."""
    first = make_client()
    first.connect(timeout=T)
    threads_before = {thread.ident for thread in client_threads()}
    second = make_client()
    with warnings.catch_warnings():
        warnings.simplefilter("error", hatsu_sync.DuplicateClientWarning)
        with pytest.raises(hatsu_sync.DuplicateClientWarning):
            second.connect(timeout=T)
    assert second.state is State.IDLE
    assert {thread.ident for thread in client_threads()} <= threads_before
    first.close()
    second.connect(timeout=T)
    assert second.get_event(timeout=T).name == "HELLO"


def test_settings_reach_the_transport(make_client: MakeClient) -> None:
    """retry_first_connect is off by default and passed on when set."""
    assert make_client()._settings.retry_first_connect is False
    assert make_client(retry_first_connect=True)._settings.retry_first_connect is True


def test_repr_of_a_half_built_client_and_copies(make_client: MakeClient) -> None:
    """repr() of a client whose constructor raised works; copy, deepcopy and pickle refuse."""
    half = Client.__new__(Client)
    assert "not initialised" in repr(half)
    del half  # its __del__ must not raise either
    client = make_client()
    for attempt in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError, match="cannot be copied or pickled"):
            attempt(client)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"gateway": "ftp://user:hunter2secret@example.invalid"},
        {"url": "http://user:hunter2secret@127.0.0.1:1"},
        {"proxy": "socks5://user:hunter2secret@127.0.0.1:1080"},
        {"proxy": "http://user:hunter2secret@127.0.0.1"},
    ],
)
def test_url_errors_never_show_a_password(kwargs: dict[str, Any]) -> None:
    """ValueError messages about gateway, url and proxy redact the URL's password."""
    with pytest.raises(ValueError, match="must") as caught:
        Client(SESSION, **kwargs)
    assert "hunter2secret" not in str(caught.value)
    assert "[redacted]" in str(caught.value)


def test_connected_url_hides_a_password(gateway: LocalGateway, make_client: MakeClient) -> None:
    """A ws:// URL with user info shows its password redacted in Connected.url and repr()."""
    url = gateway.ws_url.replace("ws://", "ws://user:hunter2secret@")
    client = make_client(url=url)
    got: list[Connected] = []
    client.on("connect", got.append)
    client.connect(timeout=T)
    eventually(lambda: got)
    assert "hunter2secret" not in got[0].url
    assert "hunter2secret" not in repr(client)
