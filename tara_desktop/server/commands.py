"""``tara serve``: TARA's OpenAI-compatible API on this computer (127.0.0.1 unless told otherwise)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from tara_desktop.cli import interrupts_call


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from tara_desktop.server.runner import DEFAULT_HOST, DEFAULT_PORT

    p = subparsers.add_parser(
        "serve",
        help="serve the OpenAI-compatible API (chat, models, speech) on 127.0.0.1",
        description=(
            "Serve TARA's routed local models on an OpenAI-compatible API: point an app at "
            "http://127.0.0.1:PORT/v1 with TARA's token as the API key. Requests are not stored unless the "
            "client sends 'store': true (or the X-TARA-Store: 1 header) and history consent is on."
        ),
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}, this computer only)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a --host other computers can reach (anyone on the network with the token can use it)")
    p.add_argument("--show-token", action="store_true", help="print the API token (created on first use) and exit")
    p.add_argument("--new-token", action="store_true", help="replace the API token (old clients are refused) and print it")
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from tara_desktop.errors import TaraError
    from tara_desktop.server.runner import check_port, is_loopback, remote_warning

    check_port(args.port)
    if not is_loopback(args.host) and not args.allow_remote:
        raise TaraError(f"--host {args.host} is not a loopback address; add --allow-remote to serve other "
                        "computers (anyone on the network with the token could use TARA), or use 127.0.0.1")
    if args.show_token or args.new_token:
        from tara_desktop.profile import Profile
        from tara_desktop.server.token import api_token, new_token

        with Profile.open() as profile:
            print(new_token(profile.store) if args.new_token else api_token(profile.store))
        return 0

    from tara_desktop.assistant import Assistant
    from tara_desktop.server.runner import ApiServer

    if not is_loopback(args.host):
        sys.stderr.write(remote_warning(args.host) + "\n")
    with Assistant.open() as assistant:
        server = ApiServer(assistant, host=args.host, port=args.port, allow_remote=args.allow_remote)
        server.log.subscribe(lambda record: _print_line(record.line()))
        server.start()
        stop = threading.Event()
        try:
            with interrupts_call(stop.set, signal.SIGINT, signal.SIGTERM):
                sys.stderr.write(f"TARA's OpenAI-compatible API: {server.url}  (API key: `tara serve --show-token`; "
                                 "Ctrl+C stops)\n")
                sys.stderr.flush()
                while not stop.wait(0.5):
                    if not server.running:
                        raise TaraError(f"the API server stopped ({server.error or 'unknown reason'})")
        finally:
            server.stop()
        sys.stderr.write("stopped\n")
    return 0


def _print_line(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
