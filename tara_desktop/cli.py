"""The ``tara`` command: subcommands over the same services the GUI uses.

Each area of the app contributes its subcommands through a ``commands`` module with a
``register(subparsers)`` function, imported only when the command asked for needs it (``tara route``
never imports the training code).
Handlers raise :class:`~tara_desktop.errors.TaraError` for bad input: printed as one ``error:`` line,
exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from types import FrameType

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
    "tara_desktop.server.commands",
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one ``error:`` line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


#: The subcommand main() was asked to run: build_parser() then imports only the areas up to the one that
#: provides it (a `tara route` never imports the training or profile code). None: all (for --help).
_requested: ContextVar[str | None] = ContextVar("tara_requested_command", default=None)


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (after the top-level options), or None."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--profile":
            i += 2
            continue
        if arg.startswith("--profile="):
            i += 1
            continue
        return None if arg.startswith("-") else arg
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``tara`` parser. With ``only`` (or the command main() is running), areas are imported in order
    until one has registered that command: the command's own imports stay the only heavy ones."""
    wanted = only if only is not None else _requested.get()
    parser = _Parser(prog="tara", description="TARA: a local, private AI assistant.")
    parser.add_argument("--version", action="version", version=f"tara {__version__}")
    parser.add_argument("--profile", metavar="DIR", help="profile directory (default: TARA_HOME or the OS data dir)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
        if wanted is not None and wanted in subparsers.choices:
            break
    return parser


@contextmanager
def interrupts_call(callback: Callable[[], None], *signals: signal.Signals) -> Iterator[None]:
    """While the block runs, Ctrl+C (SIGINT, or the ``signals`` given) calls ``callback`` (e.g. a job state's
    ``cancel``) instead of raising KeyboardInterrupt; the previous handlers come back afterwards."""

    def handler(_sig: int, _frame: FrameType | None) -> None:
        callback()

    previous = {s: signal.signal(s, handler) for s in signals or (signal.SIGINT,)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def _not_utf8(argv: Sequence[str]) -> str | None:
    """The first argument that is not valid UTF-8 text (undecodable bytes arrive as lone surrogates)."""
    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return arg
    return None


def describe_failure(exc: BaseException) -> str | None:
    """One sentence for an error that is the environment's, not a bug: a full disk, a read-only folder,
    a symbolic link loop, text that is not UTF-8. None for anything else (a bug: let it show)."""
    from tara_desktop.files import describe_os_error

    if isinstance(exc, OSError):
        return describe_os_error(exc)
    if isinstance(exc, RuntimeError) and str(exc).startswith("Symlink loop"):  # pathlib.resolve, Python < 3.13
        return f"the path is a symbolic link loop ({str(exc).removeprefix('Symlink loop from ')}); point it at a real folder"
    if isinstance(exc, UnicodeError):
        return "some text is not valid UTF-8 (a command-line argument or a file); retype it or save the file as UTF-8"
    if type(exc).__module__ == "sqlite3":
        return f"a database failed ({exc}); if the disk is full free some space, then try again"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    bad = _not_utf8(raw)
    if bad is not None:
        try:
            shown = ascii(os.fsencode(bad))[1:]
        except UnicodeError:
            shown = ascii(bad)
        sys.stderr.write(
            f"error: the argument {shown} is not valid UTF-8 text; TARA reads its command line as UTF-8 — "
            "retype it in a UTF-8 terminal (for a message, `tara chat -` reads it from stdin)\n"
        )
        return 2
    token = _requested.set(_command_in(raw))
    try:
        parser = build_parser()
    finally:
        _requested.reset(token)
    args = parser.parse_args(raw)
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
    except Exception as exc:
        message = describe_failure(exc)
        if message is None:
            raise
        sys.stderr.write(f"error: {message}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
