"""The ``tara`` command: subcommands over the same services the GUI uses.

Each area of the app contributes its subcommands through a ``commands`` module with a
``register(subparsers)`` function; an area not built yet is simply absent from ``tara --help``.
Handlers raise :class:`~tara_desktop.errors.TaraError` for bad input: printed as one ``error:`` line,
exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from tara_desktop import __version__
from tara_desktop.errors import TaraError

# Areas that contribute subcommands, in the order they appear in `tara --help`.
COMMAND_MODULES = (
    "tara_desktop.assistant_commands",
    "tara_desktop.conversation_commands",
    "tara_desktop.routing.commands",
    "tara_desktop.llm.commands",
    "tara_desktop.voice.commands",
    "tara_desktop.training.commands",
    "tara_desktop.training.export_commands",
    "tara_desktop.profile.commands",
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one ``error:`` line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tara", description="TARA: a local, private AI assistant.")
    parser.add_argument("--version", action="version", version=f"tara {__version__}")
    parser.add_argument("--profile", metavar="DIR", help="profile directory (default: TARA_HOME or the OS data dir)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # that area is not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.profile:
        os.environ["TARA_HOME"] = args.profile
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(handler(args) or 0)
    except TaraError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("stopped\n")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
