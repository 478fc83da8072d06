"""Pull style: take events one at a time with get_event(), or loop over the client.

Without a session id this runs against a LocalGateway (a real hatsu gateway on 127.0.0.1)
that plays the sample events; with one it reads your own stream from the hatsu gateway:

    python examples/pull.py
    python examples/pull.py --session-id YOUR_SESSION_ID     # or set HATSU_SESSION_ID
"""

from __future__ import annotations

import argparse
import os
import sys

from hatsu_sync import DEFAULT_GATEWAY, Client, HatsuError, Notification, PresenceUpdate
from hatsu_sync.testing import SAMPLE_EVENTS, LocalGateway


def pull(client: Client, count: int | None) -> None:
    """Print events as they arrive; stop after ``count`` of them (None: until Ctrl-C)."""
    hello = client.get_event(timeout=30)  # HELLO comes first: the session id was accepted
    print(f"{hello.name}: the gateway accepted the session")
    seen = 1
    for event in client:  # waits for each event; ends when the client is closed
        if isinstance(event, PresenceUpdate) and event.presence is not None:
            print(f"{event.name}: user {event.user_id} is now type {event.presence.type}")
        elif isinstance(event, Notification):
            print(f"{event.name}: {event.type}")
        else:
            print(event.name)
        seen += 1
        if count is not None and seen >= count:
            break


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session-id", default=os.environ.get("HATSU_SESSION_ID"))
    parser.add_argument("--gateway", default=DEFAULT_GATEWAY, help="discovery base URL")
    parser.add_argument("--url", help="a ws:// or wss:// URL to connect to directly")
    parser.add_argument("--count", type=int, help="stop after this many events")
    args = parser.parse_args(argv)
    try:
        if args.session_id:
            with Client(args.session_id, gateway=args.gateway, url=args.url) as client:
                pull(client, args.count)
        else:
            with LocalGateway() as gateway, Client("local", gateway=gateway.http_url) as client:
                # connect() returns once the identify is sent; the gateway may not have read
                # it yet, and it only sends to clients that have identified.
                gateway.wait_for_clients()
                gateway.send_many(SAMPLE_EVENTS)
                pull(client, args.count or 2 + len(SAMPLE_EVENTS))
    except KeyboardInterrupt:
        pass
    except HatsuError as exc:
        print(f"pull.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
