"""Callback style: register handlers with @client.on, then wait() while they run.

Without a session id this runs against a LocalGateway (a real hatsu gateway on 127.0.0.1)
that plays the sample events, drops the connection once (the client reconnects) and plays
them again; with one it handles your own stream from the hatsu gateway until Ctrl-C:

    python examples/callbacks.py
    python examples/callbacks.py --session-id YOUR_SESSION_ID   # or set HATSU_SESSION_ID
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from hatsu_sync import (
    DEFAULT_GATEWAY,
    Client,
    Connected,
    Disconnected,
    Event,
    HatsuError,
    Notification,
    PresenceUpdate,
)
from hatsu_sync.testing import SAMPLE_EVENTS, LocalGateway


def register(client: Client, count: int | None) -> threading.Semaphore:
    """Register the handlers; the client closes itself after ``count`` events (None: never).

    Returns a semaphore released on every connection, for the local demo to pace itself.
    """
    connected = threading.Semaphore(0)
    seen = 0

    @client.on("connect")
    def on_connect(info: Connected) -> None:
        print(f"-- connected to {info.url}")
        connected.release()

    @client.on("disconnect")
    def on_disconnect(info: Disconnected) -> None:
        then = "reconnecting" if info.reconnecting else "done"
        print(f"-- disconnected (code {info.code}, {info.reason or 'no reason'}): {then}")

    @client.on(PresenceUpdate)  # a model class: matched with isinstance
    def on_presence(event: PresenceUpdate) -> None:
        if event.presence is not None:
            print(f"   user {event.user_id} is now type {event.presence.type}")

    @client.on("NOTIFICATION")  # an event name
    def on_notification(event: Notification) -> None:
        print(f"   notification {event.type}: {event.excerpt}")

    @client.on("*")  # every gateway event, after the handlers registered before it
    def on_any(event: Event) -> None:
        nonlocal seen
        seen += 1
        print(f"{seen:3} {event.name}")
        if count is not None and seen >= count:
            client.close()  # safe from inside a handler: wait() then returns

    @client.on("error")  # an undecodable message, or a handler that raised
    def on_error(error: Exception) -> None:
        print(f"!! {type(error).__name__}: {error}")

    return connected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session-id", default=os.environ.get("HATSU_SESSION_ID"))
    parser.add_argument("--gateway", default=DEFAULT_GATEWAY, help="discovery base URL")
    parser.add_argument("--url", help="a ws:// or wss:// URL to connect to directly")
    parser.add_argument("--count", type=int, help="close after this many events")
    args = parser.parse_args(argv)
    try:
        if args.session_id:
            client = Client(args.session_id, gateway=args.gateway, url=args.url)
            register(client, args.count)  # before connecting, so that no event is missed
            with client:
                client.wait()  # until the client closes (or Ctrl-C)
            return 0
        with LocalGateway() as gateway:
            # Fast reconnects for the demo; the defaults back off from 1 s up to 60 s.
            client = Client("local-session", gateway=gateway.http_url, backoff_base=0.05)
            # HELLO + READY + the sample events, twice (once per connection).
            connected = register(client, args.count or 2 * (2 + len(SAMPLE_EVENTS)))
            with client:
                gateway.wait_for_clients()  # connect() returns before the gateway is ready
                gateway.send_many(SAMPLE_EVENTS)
                connected.acquire(timeout=10)  # the first connection's notice
                gateway.disconnect(1011, "restarting")  # an unexpected close: the client...
                if not connected.acquire(timeout=10):  # ...reconnects by itself
                    print("callbacks.py: the client did not reconnect", file=sys.stderr)
                    return 1
                gateway.wait_for_clients()
                gateway.send_many(SAMPLE_EVENTS)
                if not client.wait(timeout=30):
                    print("callbacks.py: the events did not all arrive", file=sys.stderr)
                    return 1
    except KeyboardInterrupt:
        pass
    except HatsuError as exc:
        print(f"callbacks.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
