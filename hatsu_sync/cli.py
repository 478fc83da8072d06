"""The ``hatsu-sync`` command: ``demo``, ``listen`` and ``gateway``.

Exit statuses: 0 when a command ends by itself or on Ctrl-C (no traceback); 1 after a failed
connect, a fatal close or an unreadable file, with one line on stderr; 2 for a usage error
(an unknown option, a missing session id), as argparse does. No line shows the session id,
and no line carries a terminal control character as is (see :mod:`hatsu_sync._clitext`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable, TextIO

from . import __version__
from ._client import DEFAULT_GATEWAY, Client
from ._clitext import hide, json_line, terminal_safe
from ._format import describe
from ._samples import SAMPLE_EVENTS
from ._state import MAIN_THREAD_SLICE, Connected, Disconnected
from .exceptions import HatsuError
from .models import Event

__all__ = ["main"]

_DEMO_SESSION = "demo-session"
_DISCOVERY_SUFFIX = "/available"
# How long Ctrl-C lets `listen` say goodbye to the gateway before exiting.
_CLOSE_ON_INTERRUPT = 1.0


class _UsageError(Exception):
    """A value on the command line that the command cannot use (exit status 2)."""


class _Output:
    """Writes whole lines, each made safe: redacted, no control characters, flushed."""

    def __init__(self, stream: TextIO, secrets: Sequence[str] = ()) -> None:
        self.stream = stream
        self.secrets = tuple(secrets)

    def line(self, text: str) -> None:
        """Write human-readable text (redacted, control characters escaped); each ``\n`` of
        ``text`` itself starts a new line."""
        for part in hide(text, self.secrets).split("\n"):
            self.raw(terminal_safe(part))

    def raw(self, text: str) -> None:
        """Write one line that is already safe (e.g. from :func:`json_line`)."""
        self.stream.write(text + "\n")
        self.stream.flush()


def _prepare(stream: TextIO) -> None:
    # A character the stream's encoding cannot hold (a cp1252 console, PYTHONIOENCODING=ascii)
    # is written as an escape rather than ending the command with UnicodeEncodeError.
    if isinstance(stream, io.TextIOWrapper):
        # ValueError, UnsupportedOperation: a detached or non-reconfigurable stream.
        with contextlib.suppress(ValueError, io.UnsupportedOperation):
            stream.reconfigure(errors="backslashreplace")


# -- demo ----------------------------------------------------------------------------------------


def _run_demo(args: argparse.Namespace) -> int:
    from .testing import LocalGateway  # the websockets import is only paid by the demo

    out = _Output(sys.stdout, [_DEMO_SESSION])
    delay = args.delay
    with LocalGateway(session_ids=[_DEMO_SESSION], ready_delay=min(delay * 4, 1.0)) as gateway:
        out.line(f"LocalGateway on {gateway.http_url} (websocket {gateway.ws_url})")
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
            out.line(f"-- connected to {info.url}")
            connected.release()

        @client.on("disconnect")
        def on_disconnect(info: Disconnected) -> None:
            then = "reconnecting" if info.reconnecting else "done"
            out.line(f"-- disconnected (code {info.code}, {info.reason or 'no reason'}): {then}")

        with client:
            out.line(f"Client {client.state.name.lower()} ({args.encoding} encoding)\n")
            half = len(SAMPLE_EVENTS) // 2
            _show(client, 2, out)  # HELLO and READY first
            # Seeing HELLO does not mean the gateway has registered the client yet: it sends
            # only to the clients it has registered as identified.
            gateway.wait_for_clients()
            for payload in SAMPLE_EVENTS[:half]:
                gateway.send(payload)
                _show(client, 1, out, pause=delay)
            out.line("\n   (the gateway drops the connection: code 1011; the client reconnects)")
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
        out.line(
            f"\nDone: {stats.events_received} events received, {stats.reconnects} reconnect, "
            f"{stats.decode_errors} decode errors."
        )
    return 0


def _show(client: Client, count: int, out: _Output, pause: float = 0.0) -> None:
    for _ in range(count):
        out.line("   " + _describe(client.get_event(timeout=10.0)))
    if pause:
        threading.Event().wait(pause)  # pace the script so it reads like a live stream


def _describe(event: Event) -> str:
    """One readable line for ``event``; the raw message if the summary cannot be made."""
    try:
        return describe(event)
    except Exception:  # an event shape the summary does not expect: show what came instead
        return f"{event.name} {json_line(event.raw)}"


# -- listen --------------------------------------------------------------------------------------


def _discovery_base(url: str) -> str:
    """The discovery base URL a Client takes: ``.../available`` (what the gateway command and
    the discovery endpoint's own address show) loses its last segment."""
    base = url.rstrip("/")
    if base.endswith(_DISCOVERY_SUFFIX):
        base = base[: -len(_DISCOVERY_SUFFIX)]
    return base


def _run_listen(args: argparse.Namespace) -> int:
    session_id: str = args.session_id
    out = _Output(sys.stdout, [session_id])
    err = _Output(sys.stderr, [session_id])
    try:
        client = Client(
            session_id,
            gateway=_discovery_base(args.gateway or DEFAULT_GATEWAY),
            url=args.url,
            encoding=args.encoding,
        )
    except ValueError as exc:  # a URL the client cannot use: the user's input, exit 2
        raise _UsageError(str(exc)) from exc

    def on_connect(info: Connected) -> None:
        err.line(f"connected to {info.url}")

    def on_disconnect(info: Disconnected) -> None:
        then = "; reconnecting" if info.reconnecting else ""
        err.line(f"disconnected (code {info.code}, {info.reason or 'no reason'}){then}")

    client.on("connect", on_connect)
    client.on("disconnect", on_disconnect)
    show: Callable[[Event], None]
    if args.json:

        def show(event: Event) -> None:
            # The whole message as the gateway sent it: a recording `gateway --replay` plays.
            out.raw(json_line(event.raw, [session_id]))

    else:

        def show(event: Event) -> None:
            out.line(_describe(event))

    # The client runs on a worker thread and the main thread only waits: Ctrl-C then always
    # lands in that wait, never inside the client's own code (a lock half taken, a frame
    # half written), and the close that follows is the same as from any other thread.
    failure: list[BaseException] = []
    finished = threading.Event()

    def pump() -> None:
        try:
            client.connect(timeout=args.timeout)
            for event in client:
                show(event)
        except BaseException as exc:  # handed to the main thread, which reports it
            failure.append(exc)
        finally:
            finished.set()

    worker = threading.Thread(target=pump, name="hatsu-cli-listen", daemon=True)
    worker.start()
    try:
        while not finished.wait(MAIN_THREAD_SLICE):  # in slices: see _state.MAIN_THREAD_SLICE
            pass
    except KeyboardInterrupt:
        # The user wants out now: a short goodbye (the close frame), not the full 5 s.
        client.close(timeout=_CLOSE_ON_INTERRUPT)
        worker.join(_CLOSE_ON_INTERRUPT)  # the close ends its wait for events
        raise
    client.close()
    if failure:
        raise failure[0]
    return 0


# -- gateway -------------------------------------------------------------------------------------


def _run_gateway(args: argparse.Namespace) -> int:
    from .testing import LocalGateway
    from .testing._drivers import feed_lines, read_recording

    out = _Output(sys.stdout)
    err = _Output(sys.stderr)
    replay: list[dict[str, Any]] = []
    if args.replay is not None:
        name = args.replay
        with open(name, encoding="utf-8", errors="replace") as recording:
            replay, skipped = read_recording(
                recording, lambda text: err.line(f"hatsu-sync gateway: {name}: {text}")
            )
        if not replay and skipped:
            raise ValueError(f"{name} holds no JSON object to replay")

    with LocalGateway(host=args.host, http_port=args.port, ws_port=args.ws_port) as gateway:
        gateway.set_replay(replay)
        out.line(f"discovery: {gateway.http_url}")
        out.line(f"websocket: {gateway.ws_url}")
        out.line(f"try:       hatsu-sync listen --session-id any --gateway {gateway.http_url}")
        if args.replay is not None:
            out.line(f"replaying {len(replay)} message(s) of {args.replay} to each new client")
        out.line(
            "Each JSON object typed or piped here, one per line, goes to every connected "
            "client. Ctrl-C to stop."
        )

        def complain(text: str) -> None:
            err.line(f"hatsu-sync gateway: stdin {text}")

        stdin = sys.stdin
        sent = 0 if stdin is None else feed_lines(gateway, stdin, complain)
        # The input ended (a pipe that closed, </dev/null): go on serving until Ctrl-C.
        out.line(f"stdin ended ({sent} line(s) sent); serving until Ctrl-C.")
        while True:  # only Ctrl-C (KeyboardInterrupt) ends it; in slices: see MAIN_THREAD_SLICE
            time.sleep(MAIN_THREAD_SLICE)


# -- the parser ----------------------------------------------------------------------------------

_EXAMPLES = {
    "demo": """examples:
  hatsu-sync demo                      every event kind from a local gateway, then exit
  hatsu-sync demo --encoding zlib      the same over the zlib stream
  hatsu-sync demo --delay 0            as fast as it goes""",
    "listen": """examples:
  hatsu-sync listen --session-id $ID                       the default gateway
  HATSU_SESSION_ID=$ID hatsu-sync listen --json            JSON lines, for jq
  hatsu-sync listen --session-id $ID --json > rec.jsonl    a recording, for gateway --replay
  hatsu-sync listen --session-id x --url ws://127.0.0.1:8765 --encoding zlib
  hatsu-sync listen --session-id x --gateway http://127.0.0.1:8080""",
    "gateway": """examples:
  hatsu-sync gateway                   a local gateway on free ports
  hatsu-sync gateway --port 8080       discovery at http://127.0.0.1:8080/available
  hatsu-sync gateway --ws-port 8765    the websocket at ws://127.0.0.1:8765
  hatsu-sync gateway --replay rec.jsonl          play a listen --json recording
  echo '{"t": "GUILD_DELETE", "d": null}' | hatsu-sync gateway

Each JSON object on stdin, one per line, goes to every client connected at that moment (each
line waits for a first client); a line that is not a JSON object is reported on stderr and
skipped. When stdin ends the gateway keeps serving until Ctrl-C. --replay sends a recording's
messages (its HELLO and READY excepted) to each client that identifies, after its READY.""",
}


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text}")
    return value


_VERBOSE_HELP = "log to stderr (DEBUG)"


def _parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    return _build_parser()[0]


def _build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser, and each command's own parser (for its usage errors)."""
    parser = argparse.ArgumentParser(
        prog="hatsu-sync",
        description="A synchronous client for the hatsu gateway event stream.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(_EXAMPLES.values()),
    )
    parser.add_argument("--version", action="version", version=f"hatsu-sync {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=_VERBOSE_HELP)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parsers: dict[str, argparse.ArgumentParser] = {}

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=_EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        # -v after the command name too; SUPPRESS keeps a -v given before it.
        sub.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE_HELP
        )
        parsers[name] = sub
        return sub

    demo = command("demo", "Run a local gateway with a scripted stream and print what arrives.")
    demo.add_argument("--encoding", choices=("json", "zlib"), default="json")
    demo.add_argument("--delay", type=_non_negative, default=0.05, help="seconds between events")

    listen = command("listen", "Connect to a gateway and print every event, one per line.")
    listen.add_argument("--session-id", help="the session id (default: $HATSU_SESSION_ID)")
    where = listen.add_mutually_exclusive_group()
    where.add_argument(
        "--gateway",
        help=f"discovery base URL, or the same ending in /available (default: {DEFAULT_GATEWAY})",
    )
    where.add_argument("--url", help="a ws:// or wss:// URL to connect to directly")
    listen.add_argument("--encoding", choices=("json", "zlib"), default="json")
    listen.add_argument(
        "--json",
        action="store_true",
        help="each message as the gateway sent it (session id redacted), one JSON object a line",
    )
    listen.add_argument("--timeout", type=_positive, default=10.0, help="connect timeout (seconds)")

    gateway = command("gateway", "Run a LocalGateway until Ctrl-C, to test your own code.")
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument(
        "--port", type=_port, default=0, help="the discovery (HTTP) port (default: a free one)"
    )
    gateway.add_argument(
        "--ws-port", type=_port, default=0, help="the websocket port (default: a free one)"
    )
    gateway.add_argument(
        "--replay", metavar="FILE", help="a listen --json recording to play to each client"
    )
    return parser, parsers


_RUNNERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _run_demo,
    "listen": _run_listen,
    "gateway": _run_gateway,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 (done, or Ctrl-C), 1 (a failure, reported in one line on stderr).

    Raises:
        SystemExit: from argparse, with status 0 for ``--help``/``--version`` and 2 for a
            usage error.
    """
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Also when Ctrl-C lands before a command's own handling (parsing, imports).
        return 0


def _main(argv: Sequence[str] | None) -> int:
    parser, parsers = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "listen":
        args.session_id = args.session_id or os.environ.get("HATSU_SESSION_ID", "")
        if not args.session_id:
            parsers["listen"].error("a session id is needed: --session-id ID or HATSU_SESSION_ID")
    _prepare(sys.stdout)
    _prepare(sys.stderr)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(message)s")
    err = _Output(sys.stderr, [args.session_id] if args.command == "listen" else [])
    try:
        return _RUNNERS[args.command](args)
    except _UsageError as exc:
        parsers[args.command].error(terminal_safe(hide(_one_line(exc), err.secrets)))
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # The reader went away (`hatsu-sync listen --json | head`): end quietly, as on Ctrl-C.
        _drop_stdout()
        return 0
    except (HatsuError, ValueError, OSError) as exc:
        err.line(f"hatsu-sync {args.command}: {_one_line(exc)}")
        return 1


def _drop_stdout() -> None:
    # Point stdout at /dev/null: the interpreter's last flush would fail on the broken pipe
    # and print "Exception ignored ... BrokenPipeError".
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):  # not a real file (tests, notebooks)
        pass


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
