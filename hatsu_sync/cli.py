"""The ``hatsu-sync`` command: ``demo``, ``listen`` and ``gateway``.

Ctrl-C ends every command with exit status 0 and no traceback; a failed connect or a fatal
close prints one line on stderr and exits 1. No output ever shows the session id.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any, Callable, TextIO

from . import __version__
from ._client import DEFAULT_GATEWAY, Client
from ._format import describe, redact
from ._samples import SAMPLE_EVENTS
from ._state import Connected, Disconnected
from .exceptions import HatsuError
from .models import Event

__all__ = ["main"]

_DEMO_SESSION = "demo-session"


def _say(stream: TextIO, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


def _run_demo(args: argparse.Namespace) -> int:
    from .testing import LocalGateway  # the websockets import is only paid by the demo

    out = sys.stdout
    delay = max(0.0, args.delay)
    with LocalGateway(session_ids=[_DEMO_SESSION], ready_delay=min(delay * 4, 1.0)) as gateway:
        _say(out, f"LocalGateway on {gateway.http_url} (websocket {gateway.ws_url})")
        client = Client(
            _DEMO_SESSION,
            gateway=gateway.http_url,
            encoding=args.encoding,
            backoff_base=0.05,
            backoff_max=0.2,
        )
        connected = threading.Semaphore(0)

        @client.on("connect")
        def on_connect(info: Connected) -> None:
            _say(out, f"-- connected to {info.url}")
            connected.release()

        @client.on("disconnect")
        def on_disconnect(info: Disconnected) -> None:
            then = "reconnecting" if info.reconnecting else "done"
            _say(out, f"-- disconnected (code {info.code}, {info.reason or 'no reason'}): {then}")

        with client:
            _say(out, f"Client {client.state.name.lower()} ({args.encoding} encoding)\n")
            half = len(SAMPLE_EVENTS) // 2
            # HELLO and READY first, then the script in two halves around a dropped connection.
            for expected in (2,):
                _show(client, expected, out)
            # Seeing HELLO does not mean the gateway has registered the client yet: it sends
            # only to the clients it has registered as identified.
            gateway.wait_for_clients()
            for payload in SAMPLE_EVENTS[:half]:
                gateway.send(payload)
                _show(client, 1, out, pause=delay)
            _say(out, "\n   (the gateway drops the connection: code 1011; the client reconnects)")
            connected.acquire(timeout=5.0)  # the first connection's notice
            gateway.disconnect(1011, "restarting")
            if not connected.acquire(timeout=10.0):
                raise HatsuError("the demo client did not reconnect")
            _show(client, 2, out)  # HELLO and READY again, on the new connection
            gateway.wait_for_clients()
            for payload in SAMPLE_EVENTS[half:]:
                gateway.send(payload)
                _show(client, 1, out, pause=delay)
            stats = client.stats
        _say(
            out,
            f"\nDone: {stats.events_received} events received, {stats.reconnects} reconnect, "
            f"{stats.decode_errors} decode errors.",
        )
    return 0


def _show(client: Client, count: int, out: TextIO, pause: float = 0.0) -> None:
    for _ in range(count):
        _say(out, "   " + describe(client.get_event(timeout=10.0)))
    if pause:
        threading.Event().wait(pause)  # pace the script so it reads like a live stream


def _session_id(args: argparse.Namespace) -> str:
    session_id = args.session_id or os.environ.get("HATSU_SESSION_ID", "")
    if not session_id:
        raise _UsageError("a session id is needed: --session-id ID or HATSU_SESSION_ID")
    return str(session_id)


class _UsageError(Exception):
    pass


def _run_listen(args: argparse.Namespace) -> int:
    session_id = _session_id(args)
    out, err = sys.stdout, sys.stderr
    client = Client(
        session_id,
        gateway=args.gateway or DEFAULT_GATEWAY,
        url=args.url,
        encoding=args.encoding,
    )
    client.on("connect", lambda info: _say(err, f"connected to {info.url}"))
    client.on(
        "disconnect",
        lambda info: _say(
            err,
            f"disconnected (code {info.code}, {info.reason or 'no reason'})"
            + ("; reconnecting" if info.reconnecting else ""),
        ),
    )
    show: Callable[[Event], str]
    if args.json:

        def show(event: Event) -> str:
            line = {"t": event.name, "d": event.data}
            if event.data is None:
                line = dict(event.raw.items())
            return json.dumps(redact(line, session_id), ensure_ascii=False, default=str)

    else:

        def show(event: Event) -> str:
            return describe(event, session_id)

    try:
        client.connect(timeout=args.timeout)
        for event in client:
            _say(out, show(event))
    finally:
        client.close()
    return 0


def _run_gateway(args: argparse.Namespace) -> int:
    from .testing import LocalGateway

    with LocalGateway(host=args.host, http_port=args.port) as gateway:
        _say(sys.stdout, f"discovery: {gateway.http_url}/available")
        _say(sys.stdout, f"websocket: {gateway.ws_url}")
        _say(sys.stdout, "Ctrl-C to stop.")
        threading.Event().wait()  # until Ctrl-C
    return 0  # pragma: no cover - only Ctrl-C leaves the wait


_EXAMPLES = {
    "demo": """examples:
  hatsu-sync demo                      every event kind from a local gateway, then exit
  hatsu-sync demo --encoding zlib      the same over the zlib stream
  hatsu-sync demo --delay 0            as fast as it goes""",
    "listen": """examples:
  hatsu-sync listen --session-id $ID                       the default gateway
  HATSU_SESSION_ID=$ID hatsu-sync listen --json            JSON lines, for jq
  hatsu-sync listen --session-id x --url ws://127.0.0.1:8765 --encoding zlib""",
    "gateway": """examples:
  hatsu-sync gateway                   a local gateway on free ports
  hatsu-sync gateway --port 8080       discovery at http://127.0.0.1:8080/available""",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hatsu-sync",
        description="A synchronous client for the hatsu gateway event stream.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(_EXAMPLES.values()),
    )
    parser.add_argument("--version", action="version", version=f"hatsu-sync {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr (DEBUG)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=_EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    demo = command("demo", "Run a local gateway with a scripted stream and print what arrives.")
    demo.add_argument("--encoding", choices=("json", "zlib"), default="json")
    demo.add_argument("--delay", type=float, default=0.05, help="seconds between events")

    listen = command("listen", "Connect to a gateway and print every event, one per line.")
    listen.add_argument("--session-id", help="the session id (default: $HATSU_SESSION_ID)")
    where = listen.add_mutually_exclusive_group()
    where.add_argument("--gateway", help=f"discovery base URL (default: {DEFAULT_GATEWAY})")
    where.add_argument("--url", help="a ws:// or wss:// URL to connect to directly")
    listen.add_argument("--encoding", choices=("json", "zlib"), default="json")
    listen.add_argument("--json", action="store_true", help="one JSON object per line")
    listen.add_argument("--timeout", type=float, default=10.0, help="connect timeout (seconds)")

    gateway = command("gateway", "Run a LocalGateway until Ctrl-C, to test your own code.")
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--port", type=int, default=0, help="the discovery (HTTP) port")
    return parser


_RUNNERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _run_demo,
    "listen": _run_listen,
    "gateway": _run_gateway,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(message)s")
    try:
        return _RUNNERS[args.command](args)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # The reader went away (`hatsu-sync listen --json | head`): end quietly, as on Ctrl-C.
        _drop_stdout()
        return 0
    except (HatsuError, _UsageError, ValueError, OSError) as exc:
        _say(sys.stderr, f"hatsu-sync {args.command}: {_one_line(exc)}")
        return 1


def _drop_stdout() -> None:
    # Point stdout at /dev/null: the interpreter's last flush would fail on the broken pipe
    # and print "Exception ignored ... BrokenPipeError".
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # ValueError: stdout is not a real file (tests, notebooks)
        pass


def _one_line(exc: BaseException) -> str:
    text: Any = str(exc) or type(exc).__name__
    return " ".join(str(text).split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
