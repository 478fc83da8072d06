"""hatsu_sync.testing.LocalGateway, driven by a plain websocket-client WebSocket as the client."""

from __future__ import annotations

import json
import secrets
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import websocket
from websocket import ABNF

from hatsu_sync.testing import DEFAULT_USER, LocalGateway

# Every wait in these tests scales with this one constant.
T = 5.0
SESSION = "sess-gateway-test"


@pytest.fixture
def gw() -> Iterator[LocalGateway]:
    with LocalGateway() as gateway:
        yield gateway


@pytest.fixture
def sockets() -> Iterator[list[websocket.WebSocket]]:
    """WebSockets opened by a test; all are shut down at teardown."""
    opened: list[websocket.WebSocket] = []
    yield opened
    for ws in opened:
        ws.shutdown()


def connect(gw: LocalGateway, opened: list[websocket.WebSocket]) -> websocket.WebSocket:
    ws = websocket.create_connection(gw.ws_url, timeout=T)
    opened.append(ws)
    return ws


def identify(
    gw: LocalGateway,
    opened: list[websocket.WebSocket],
    session_id: str = SESSION,
    **extra: Any,
) -> websocket.WebSocket:
    """Connect, identify and read HELLO and READY."""
    ws = connect(gw, opened)
    ws.send(json.dumps({"session_id": session_id, **extra}))
    if extra.get("encoding") == "zlib":
        inflate = zlib.decompressobj()
        names = [json.loads(inflate.decompress(recv_message(ws)))["t"] for _ in range(2)]
        ws.inflate = inflate  # type: ignore[attr-defined]
    else:
        names = [recv_json(ws)["t"] for _ in range(2)]
    assert names == ["HELLO", "READY"]
    return ws


def recv_json(ws: websocket.WebSocket) -> Any:
    opcode, data = ws.recv_data()
    assert opcode == ABNF.OPCODE_TEXT
    return json.loads(data)


def recv_fragments(ws: websocket.WebSocket) -> list[Any]:
    """The frames of one data message, as sent."""
    frames = [ws.recv_frame()]
    while not frames[-1].fin:
        frames.append(ws.recv_frame())
    return frames


def recv_message(ws: websocket.WebSocket) -> bytes:
    return b"".join(frame.data for frame in recv_fragments(ws))


def recv_close(ws: websocket.WebSocket) -> tuple[int, str]:
    """Skip frames until a close frame; return its code and reason."""
    while True:
        frame = ws.recv_frame()
        if frame.opcode == ABNF.OPCODE_CLOSE:
            (code,) = struct.unpack("!H", frame.data[:2])
            return code, frame.data[2:].decode()


def frames_until_timeout(ws: websocket.WebSocket) -> list[int]:
    """The opcodes of the frames that arrive until the socket's timeout passes with none."""
    opcodes = []
    while True:
        try:
            opcodes.append(ws.recv_frame().opcode)
        except websocket.WebSocketTimeoutException:
            return opcodes


def http_get(url: str) -> requests.Response:
    """GET straight to loopback, whatever proxy the environment names."""
    with requests.Session() as session:
        session.trust_env = False
        return session.get(url, timeout=T)


def gateway_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("hatsu-gateway")}


def test_hello_then_ready_with_a_double_encoded_user(
    gw: LocalGateway, sockets: list[websocket.WebSocket]
) -> None:
    """After identify the gateway sends HELLO, then READY whose d is the user as a JSON string."""
    ws = connect(gw, sockets)
    ws.send(json.dumps({"session_id": SESSION, "encoding": "json", "presences": True}))
    hello = recv_json(ws)
    ready = recv_json(ws)
    assert hello["t"] == "HELLO"
    assert hello["d"] is None
    assert isinstance(hello["s"], str)
    assert isinstance(hello["i"], str)
    assert ready["t"] == "READY"
    assert ready["s"] == SESSION
    assert ready["i"] is None
    assert isinstance(ready["d"], str)
    user = json.loads(ready["d"])
    assert set(user) == {*DEFAULT_USER, "session_ids"}
    assert user["session_ids"] == [SESSION]
    gw.wait_for_clients(1, timeout=T)
    assert gw.clients == 1
    assert gw.identifies == [{"session_id": SESSION, "encoding": "json", "presences": True}]


def test_events_sent_before_ready_arrive_between_hello_and_ready(
    sockets: list[websocket.WebSocket],
) -> None:
    """With a ready_delay, events sent meanwhile arrive after HELLO and before READY."""
    with LocalGateway(ready_delay=60) as gw:
        ws = connect(gw, sockets)
        ws.send(json.dumps({"session_id": SESSION}))
        assert recv_json(ws)["t"] == "HELLO"
        gw.wait_for_clients(1, timeout=T)
        gw.send({"t": "EARLY"})
        assert recv_json(ws)["t"] == "EARLY"


def test_ready_follows_after_ready_delay(sockets: list[websocket.WebSocket]) -> None:
    """With a ready_delay, READY still comes after HELLO by itself."""
    with LocalGateway(ready_delay=0.05) as gw:
        ws = connect(gw, sockets)
        ws.send(json.dumps({"session_id": SESSION}))
        assert [recv_json(ws)["t"] for _ in range(2)] == ["HELLO", "READY"]


def test_ready_carries_a_custom_user(sockets: list[websocket.WebSocket]) -> None:
    """The user given to the constructor is READY's d, with the session id added."""
    with LocalGateway(user={"_id": "7", "username": "bob"}) as gw:
        ws = connect(gw, sockets)
        ws.send(json.dumps({"session_id": SESSION}))
        recv_json(ws)
        user = json.loads(recv_json(ws)["d"])
        assert user == {"_id": "7", "username": "bob", "session_ids": [SESSION]}


@pytest.mark.parametrize(
    ("message", "code", "reason"),
    [
        (json.dumps({"session_id": "intruder"}), 4002, "Invalid authorization"),
        ("this is not JSON", 4002, "Invalid Payload Type"),
        (json.dumps(["session_id", SESSION]), 4002, "Invalid Payload Type"),
        (json.dumps({"session_id": 12345}), 4002, "Invalid Payload Type"),
        (json.dumps({"encoding": "json"}), 4002, "Invalid Payload Type"),
        (json.dumps({"session_id": SESSION, "encoding": "etf"}), 4004, "Invalid encoding"),
        (
            json.dumps({"session_id": SESSION, "presences": "yes"}),
            4001,
            "Presence has to be a bool.",
        ),
    ],
)
def test_bad_identify_is_closed_with_the_servers_code(
    sockets: list[websocket.WebSocket], message: str, code: int, reason: str
) -> None:
    """A bad identify gets the deployed server's close code and reason, and no HELLO."""
    with LocalGateway(session_ids={SESSION}) as gw:
        ws = connect(gw, sockets)
        ws.send(message)
        frame = ws.recv_frame()
        assert frame.opcode == ABNF.OPCODE_CLOSE
        assert struct.unpack("!H", frame.data[:2])[0] == code
        assert frame.data[2:].decode() == reason
        assert gw.clients == 0


def test_session_ids_must_be_a_collection() -> None:
    """A single string for session_ids is refused rather than read as a set of characters."""
    with pytest.raises(TypeError):
        LocalGateway(session_ids="abc")


def test_zlib_messages_are_fragmented_full_flushes_of_one_stream(
    gw: LocalGateway, sockets: list[websocket.WebSocket]
) -> None:
    """zlib mode: 1024-byte binary fragments then an empty final continuation; one stream."""
    ws = connect(gw, sockets)
    ws.send(json.dumps({"session_id": SESSION, "encoding": "zlib"}))
    hello_frames = recv_fragments(ws)
    ready_frames = recv_fragments(ws)
    gw.wait_for_clients(1, timeout=T)
    big = {"t": "GUILD_INIT", "d": {"blob": secrets.token_hex(4000)}}
    gw.send(big)
    big_frames = recv_fragments(ws)

    inflate = zlib.decompressobj()
    decoded = []
    for index, frames in enumerate([hello_frames, ready_frames, big_frames]):
        first, *middle, last = frames
        assert first.opcode == ABNF.OPCODE_BINARY
        assert not first.fin
        assert all(frame.opcode == ABNF.OPCODE_CONT for frame in [*middle, last])
        assert last.fin
        assert last.data == b""
        data_frames = [first, *middle]
        assert all(len(frame.data) == 1024 for frame in data_frames[:-1])
        assert 0 < len(data_frames[-1].data) <= 1024
        message = b"".join(frame.data for frame in frames)
        assert message.endswith(b"\x00\x00\xff\xff")
        assert message.startswith(b"\x78\x9c") == (index == 0)
        decoded.append(json.loads(inflate.decompress(message)))
    assert len(big_frames) > 3
    assert [message["t"] for message in decoded] == ["HELLO", "READY", "GUILD_INIT"]
    assert decoded[2] == big


def test_send_reaches_every_identified_client_in_order(
    gw: LocalGateway, sockets: list[websocket.WebSocket]
) -> None:
    """send, send_many and send_raw go to every identified client, in order, in its encoding."""
    plain = identify(gw, sockets)
    packed = identify(gw, sockets, encoding="zlib")
    bystander = connect(gw, sockets)  # connected but never identified
    gw.wait_for_clients(2, timeout=T)

    assert gw.send({"t": "ONE"}) == 2
    assert gw.send_many([{"t": "TWO"}, {"t": "THREE", "d": [1, 2]}]) == 2
    assert gw.send_raw("raw text") == 2
    assert gw.send_raw(b"\x00\x01raw") == 2

    assert [recv_json(plain)["t"] for _ in range(3)] == ["ONE", "TWO", "THREE"]
    assert plain.recv_data() == (ABNF.OPCODE_TEXT, b"raw text")
    assert plain.recv_data() == (ABNF.OPCODE_BINARY, b"\x00\x01raw")

    inflate = packed.inflate  # type: ignore[attr-defined]
    names = [json.loads(inflate.decompress(recv_message(packed)))["t"] for _ in range(3)]
    assert names == ["ONE", "TWO", "THREE"]
    assert packed.recv_data() == (ABNF.OPCODE_TEXT, b"raw text")
    assert packed.recv_data() == (ABNF.OPCODE_BINARY, b"\x00\x01raw")

    bystander.settimeout(0.2)
    with pytest.raises(websocket.WebSocketTimeoutException):
        bystander.recv_frame()


def test_send_many_keeps_order_in_bulk(
    gw: LocalGateway, sockets: list[websocket.WebSocket]
) -> None:
    """Thousands of events sent at once arrive complete and in order."""
    ws = identify(gw, sockets, encoding="zlib")
    gw.wait_for_clients(1, timeout=T)
    count = 5000
    assert gw.send_many({"t": "N", "d": i} for i in range(count)) == 1
    inflate = ws.inflate  # type: ignore[attr-defined]
    got = [json.loads(inflate.decompress(recv_message(ws)))["d"] for _ in range(count)]
    assert got == list(range(count))


def test_send_refuses_what_is_not_json(gw: LocalGateway) -> None:
    """A payload that cannot be JSON-encoded raises TypeError, and send_raw wants str or bytes."""
    with pytest.raises(TypeError):
        gw.send({"t": object()})
    with pytest.raises(TypeError):
        gw.send_raw(42)  # type: ignore[arg-type]


def test_disconnect_sends_the_close_code(
    gw: LocalGateway, sockets: list[websocket.WebSocket]
) -> None:
    """disconnect() closes every client with that code and reason; the client's answer is kept."""
    ws = identify(gw, sockets)
    gw.wait_for_clients(1, timeout=T)
    assert gw.disconnect(4003, "Too much users on WebSocket") == 1
    assert gw.clients == 0
    assert recv_close(ws) == (4003, "Too much users on WebSocket")
    ws.close()
    gw.wait_for_closes(1, timeout=T)
    assert gw.closes == [(1000, "")]


def test_disconnect_refuses_unsendable_codes(gw: LocalGateway) -> None:
    """Codes that cannot appear in a close frame are a ValueError."""
    for code in (1005, 1006, 999, 5000):
        with pytest.raises(ValueError, match="close code"):
            gw.disconnect(code)


def test_abort_drops_the_connection_without_a_close_frame(
    gw: LocalGateway, sockets: list[websocket.WebSocket]
) -> None:
    """abort() resets the TCP connection: the client sees a reset or EOF, never a close frame."""
    ws = identify(gw, sockets)
    gw.wait_for_clients(1, timeout=T)
    assert gw.abort() == 1
    assert gw.clients == 0
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        ws.recv_frame()
    gw.wait_for_closes(1, timeout=T)
    assert gw.closes == [(None, "")]


def test_silent_gateway_answers_nothing_until_resumed(
    gw: LocalGateway, sockets: list[websocket.WebSocket]
) -> None:
    """go_silent() stops pongs and reading; resume() answers what came meanwhile."""
    ws = identify(gw, sockets)
    gw.wait_for_clients(1, timeout=T)
    gw.go_silent()
    ws.ping(b"are you there")
    ws.send(json.dumps({"t": "HEARTBEAT", "s": 1}))
    ws.settimeout(0.3)
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv_frame()
    assert gw.received == []
    gw.resume()
    ws.settimeout(T)
    pong = ws.recv_frame()
    assert (pong.opcode, pong.data) == (ABNF.OPCODE_PONG, b"are you there")
    assert recv_json(ws)["t"] == "ACK"


def test_silent_gateway_accepts_tcp_but_not_the_handshake(gw: LocalGateway) -> None:
    """While silent a new connection is accepted, but its handshake is answered only on resume."""
    gw.go_silent()
    with socket.create_connection(("127.0.0.1", gw.ws_port), timeout=T) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        gw.wait_for_connections(1, timeout=T)
        sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            sock.recv(1024)
        gw.resume()
        sock.settimeout(T)
        assert sock.recv(1024).startswith(b"HTTP/1.1 101")


def test_silence_suspends_the_gateways_keepalive(sockets: list[websocket.WebSocket]) -> None:
    """While silent the gateway neither pings nor enforces pongs; after resume() it does again."""
    with LocalGateway(ping_interval=0.5, ping_timeout=0.2) as gw:
        ws = connect(gw, sockets)  # never answers pings
        gw.go_silent()
        ws.settimeout(1.0)  # longer than ping_interval + ping_timeout
        # No close frame; at most one ping, sent before the silence began (a stalled test).
        assert frames_until_timeout(ws) in ([], [ABNF.OPCODE_PING])
        gw.resume()
        ws.settimeout(T)
        assert recv_close(ws) == (1011, "keepalive ping timeout")


def test_gateway_pings_and_closes_a_client_that_never_pongs(
    sockets: list[websocket.WebSocket],
) -> None:
    """The gateway pings; a pong keeps the connection, a missing pong closes it with 1011."""
    with LocalGateway(ping_interval=0.05, ping_timeout=1.0) as gw:
        ws = connect(gw, sockets)
        first = ws.recv_frame()
        assert first.opcode == ABNF.OPCODE_PING
        ws.pong(first.data)
        second = ws.recv_frame()
        assert second.opcode == ABNF.OPCODE_PING  # answered: still open, pinged again
        assert recv_close(ws) == (1011, "keepalive ping timeout")


def test_client_pings_are_answered(gw: LocalGateway, sockets: list[websocket.WebSocket]) -> None:
    """A client's ping gets a pong with the same data."""
    ws = identify(gw, sockets)
    ws.ping(b"hi")
    pong = ws.recv_frame()
    assert (pong.opcode, pong.data) == (ABNF.OPCODE_PONG, b"hi")


def test_heartbeat_gets_an_ack_and_messages_are_kept(
    gw: LocalGateway, sockets: list[websocket.WebSocket]
) -> None:
    """HEARTBEAT is answered with ACK echoing s; every client message is kept in received."""
    ws = identify(gw, sockets)
    ws.send(json.dumps({"t": "HEARTBEAT", "s": 41}))
    ack = recv_json(ws)
    assert ack["t"] == "ACK"
    assert ack["s"] == 41
    assert "_s" in ack
    assert ack["d"] is None
    ws.send("not json")
    gw.wait_for_received(2, timeout=T)
    assert gw.received == [{"t": "HEARTBEAT", "s": 41}, b"not json"]


def test_message_over_one_mib_is_closed_with_1009(
    gw: LocalGateway, sockets: list[websocket.WebSocket]
) -> None:
    """A client message over 1 MiB closes the connection with 1009."""
    ws = identify(gw, sockets)
    ws.send("x" * (2**20 + 1))
    assert recv_close(ws)[0] == 1009


def test_restart_moves_the_websocket_port(
    gw: LocalGateway, sockets: list[websocket.WebSocket]
) -> None:
    """restart() drops the clients and listens on a new port, which discovery then names."""
    ws = identify(gw, sockets)
    gw.wait_for_clients(1, timeout=T)
    old_port = gw.ws_port
    gw.restart()
    assert gw.ws_port != old_port
    assert gw.clients == 0
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        ws.recv_frame()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", old_port), timeout=T).close()
    answer = http_get(gw.http_url + "/available")
    assert answer.json() == {"port": gw.ws_port}
    identify(gw, sockets)
    gw.wait_for_clients(1, timeout=T)
    gw.wait_for_identifies(2, timeout=T)


def test_restart_can_keep_the_port(gw: LocalGateway, sockets: list[websocket.WebSocket]) -> None:
    """restart(new_port=False) drops the clients and keeps listening where it was."""
    ws = identify(gw, sockets)
    port = gw.ws_port
    gw.restart(new_port=False)
    assert gw.ws_port == port
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        ws.recv_frame()
    identify(gw, sockets)
    gw.wait_for_clients(1, timeout=T)


def test_discovery_answers_and_faults(gw: LocalGateway) -> None:
    """Discovery answers {"port": N} without Content-Type on /available and /port; faults apply."""
    for path in ("/available", "/port", "/available?x=1"):
        answer = http_get(gw.http_url + path)
        assert answer.status_code == 200
        assert json.loads(answer.content) == {"port": gw.ws_port}
        assert "Content-Type" not in answer.headers
    assert http_get(gw.http_url + "/elsewhere").status_code == 404

    gw.fail_discovery("500")
    assert http_get(gw.http_url + "/available").status_code == 500
    gw.fail_discovery("garbage")
    garbage = http_get(gw.http_url + "/available")
    assert garbage.status_code == 200
    assert b"port" not in garbage.content
    gw.set_discovery_answer(200, b"https://example.test")
    assert http_get(gw.http_url + "/available").content == b"https://example.test"
    gw.fail_discovery(None)
    assert http_get(gw.http_url + "/available").json() == {"port": gw.ws_port}
    assert gw.discovery_requests == 7
    with pytest.raises(ValueError, match="unknown discovery mode"):
        gw.fail_discovery("slow")


def test_discovery_fault_for_a_number_of_requests(gw: LocalGateway) -> None:
    """fail_discovery(mode, times=n) affects the next n requests only."""
    gw.fail_discovery("500", times=2)
    statuses = [http_get(gw.http_url + "/available").status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    with pytest.raises(ValueError, match="times"):
        gw.fail_discovery("500", times=0)


def test_hanging_discovery_is_released_by_resuming(gw: LocalGateway) -> None:
    """A request held by "hang" gets the normal answer once the mode goes back to None."""
    gw.fail_discovery("hang")
    results: list[requests.Response] = []
    thread = threading.Thread(target=lambda: results.append(http_get(gw.http_url + "/available")))
    thread.start()
    gw.wait_for_discovery_requests(1, timeout=T)
    assert results == []
    gw.fail_discovery(None)
    thread.join(T)
    assert results[0].json() == {"port": gw.ws_port}


def test_identifies_are_cumulative_across_connections(
    gw: LocalGateway, sockets: list[websocket.WebSocket]
) -> None:
    """identifies keeps every identify, from every connection, in order."""
    identify(gw, sockets, session_id="a").close()
    identify(gw, sockets, session_id="b")
    gw.wait_for_identifies(2, timeout=T)
    assert [payload["session_id"] for payload in gw.identifies] == ["a", "b"]
    assert gw.connections == 2


def test_waits_time_out(gw: LocalGateway) -> None:
    """Every wait raises TimeoutError when its count is not reached in time."""
    with pytest.raises(TimeoutError):
        gw.wait_for_clients(1, timeout=0.05)
    with pytest.raises(TimeoutError):
        gw.wait_for_identifies(1, timeout=0.05)
    with pytest.raises(TimeoutError):
        gw.wait_for_received(1, timeout=0.05)


def test_urls_and_repr() -> None:
    """The URLs exist once started, stay readable after stop, and repr shows them."""
    gw = LocalGateway()
    with pytest.raises(RuntimeError):
        _ = gw.http_url
    with gw:
        assert gw.http_url == f"http://127.0.0.1:{gw.http_port}"
        assert gw.ws_url == f"ws://127.0.0.1:{gw.ws_port}"
        assert gw.http_url in repr(gw)
        assert gw.ws_url in repr(gw)
        assert gw.running
    assert not gw.running
    assert gw.ws_url in repr(gw)
    gw.stop()  # idempotent
    with pytest.raises(RuntimeError):
        gw.start()


def test_stop_closes_clients_with_going_away(sockets: list[websocket.WebSocket]) -> None:
    """stop() closes every open connection with 1001."""
    with LocalGateway() as gw:
        ws = identify(gw, sockets)
        gw.wait_for_clients(1, timeout=T)
    assert recv_close(ws) == (1001, "going away")


def test_stop_returns_promptly_while_silent_and_hanging(
    sockets: list[websocket.WebSocket],
) -> None:
    """stop() returns promptly with a hanging discovery request and a silent gateway, and leaves
    no gateway thread behind."""
    before = gateway_threads()
    gw = LocalGateway().start()
    identify(gw, sockets)
    gw.wait_for_clients(1, timeout=T)
    gw.fail_discovery("hang")
    hanging = socket.create_connection(("127.0.0.1", gw.http_port), timeout=T)
    try:
        hanging.sendall(b"GET /available HTTP/1.0\r\n\r\n")
        gw.wait_for_discovery_requests(1, timeout=T)
        gw.go_silent()
        started = time.monotonic()
        gw.stop()
        assert time.monotonic() - started < T / 2
    finally:
        hanging.close()
    assert gateway_threads() <= before
