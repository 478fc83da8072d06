"""The zlib encoding: the same events, compressed by the gateway as one stream per connection.

Nothing changes for your code but ``encoding="zlib"``: the client keeps the inflate context,
reassembles fragmented messages and starts a fresh stream on every reconnect.

Without a session id this runs against a LocalGateway (a real hatsu gateway on 127.0.0.1)
that plays the sample events and one large GUILD_INIT; with one it reads your own stream:

    python examples/zlib_stream.py
    python examples/zlib_stream.py --session-id YOUR_SESSION_ID     # or set HATSU_SESSION_ID
"""

from __future__ import annotations

import argparse
import os
import sys

from hatsu_sync import DEFAULT_GATEWAY, Client, GuildInit, HatsuError
from hatsu_sync.testing import SAMPLE_EVENTS, LocalGateway

# A guild with 2,000 channels: about 300 KB of JSON, sent as one compressed message in
# 1 KiB fragments, like the deployed server did.
BIG_GUILD_INIT = {
    "t": "GUILD_INIT",
    "d": {
        "_id": "907362914021450000",
        "name": "Very Large Guild",
        "channels": [
            {"id": str(907362914021460000 + n), "name": f"channel-{n}", "type": 2}
            for n in range(2000)
        ],
    },
}


def read(client: Client, idle: float) -> None:
    """Print events until none arrives for ``idle`` seconds, then the client's counters."""
    for event in client.events(timeout=idle):
        if isinstance(event, GuildInit) and event.guild is not None:
            channels = len(event.guild.channels or [])
            print(f"{event.name}: {event.guild.name!r} with {channels} channels")
        else:
            print(event.name)
    stats = client.stats
    print(f"{stats.events_received} events, {stats.decode_errors} decode errors")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session-id", default=os.environ.get("HATSU_SESSION_ID"))
    parser.add_argument("--gateway", default=DEFAULT_GATEWAY, help="discovery base URL")
    parser.add_argument("--url", help="a ws:// or wss:// URL to connect to directly")
    parser.add_argument(
        "--idle", type=float, default=30.0, help="stop after this many quiet seconds"
    )
    args = parser.parse_args(argv)
    try:
        if args.session_id:
            client = Client(args.session_id, gateway=args.gateway, url=args.url, encoding="zlib")
            with client:
                read(client, args.idle)
        else:
            gateway = LocalGateway()
            with gateway, Client("local", gateway=gateway.http_url, encoding="zlib") as client:
                gateway.wait_for_clients()  # connect() returns before the gateway is ready
                gateway.send_many([*SAMPLE_EVENTS, BIG_GUILD_INIT])
                # Everything is sent already: a short quiet spell means the end.
                read(client, min(args.idle, 1.0))
    except KeyboardInterrupt:
        pass
    except HatsuError as exc:
        print(f"zlib_stream.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
