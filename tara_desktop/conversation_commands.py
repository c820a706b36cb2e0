"""``tara conversations list | show ID | delete ID | delete --all --yes``: the conversation service from
the command line (the GUI's conversation list is the other face of the same :class:`Conversations`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tara_desktop.errors import TaraError

if TYPE_CHECKING:
    from tara_desktop.conversation import Conversations


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    conv = subparsers.add_parser("conversations", help="list, show or delete your stored conversations")
    sub = conv.add_subparsers(dest="conversations_command", metavar="ACTION", parser_class=type(conv))

    def show_help(_args: argparse.Namespace) -> int:
        conv.print_help()
        return 2

    conv.set_defaults(handler=show_help)

    p = sub.add_parser("list", help="every conversation, newest activity first")
    p.add_argument("--json", action="store_true", help="one JSON array of {id, title, created_at, ...}")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("show", help="the messages of one conversation")
    p.add_argument("id", metavar="ID", help="the conversation's number (see `tara conversations list`)")
    p.add_argument("--json", action="store_true", help="one JSON object with the conversation and its messages")
    p.set_defaults(handler=cmd_show)

    p = sub.add_parser("delete", help="delete one conversation, or all of them with --all --yes")
    p.add_argument("id", metavar="ID", nargs="?", help="the conversation's number")
    p.add_argument("--all", action="store_true", help="delete every conversation")
    p.add_argument("--yes", action="store_true", help="confirm deleting every conversation")
    p.set_defaults(handler=cmd_delete)


@contextmanager
def _conversations() -> Iterator[Conversations]:
    from tara_desktop.conversation import Conversations
    from tara_desktop.profile.commands import open_profile

    profile = open_profile()
    try:
        conversations = Conversations(profile)
        conversations.migrate()
        yield conversations
    finally:
        profile.close()


def _id(raw: str | None) -> int:
    if raw is None:
        raise TaraError("give the conversation's number (see `tara conversations list`), or --all --yes")
    try:
        value = int(raw)
    except ValueError:
        raise TaraError(f"{raw!r} is not a conversation number; see `tara conversations list`") from None
    if value < 1:
        raise TaraError(f"{raw!r} is not a conversation number; see `tara conversations list`")
    return value


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _exists(conversations: Conversations, cid: int) -> None:
    if not any(c.id == cid for c in conversations.list()):
        raise TaraError(f"there is no conversation {cid}; see `tara conversations list`")


def cmd_list(args: argparse.Namespace) -> int:
    with _conversations() as conversations:
        items = conversations.list()
        counts = {c.id: len(conversations.store.messages(c.id, on_damaged="skip")) for c in items}
    if args.json:
        print(json.dumps([
            {"id": c.id, "title": c.title, "created_at": _iso(c.created_at), "updated_at": _iso(c.updated_at),
             "pinned_domain": c.pinned_domain, "messages": counts[c.id]}
            for c in items
        ], ensure_ascii=False))
        return 0
    if not items:
        sys.stderr.write("no conversations yet\n")
        return 0
    for c in items:
        pin = f" [{c.pinned_domain}]" if c.pinned_domain else ""
        when = datetime.fromtimestamp(c.updated_at, UTC).strftime("%Y-%m-%d %H:%M")
        print(f"{c.id:>5}  {when}  {counts[c.id]:>4} msgs  {c.title or 'Untitled'}{pin}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    cid = _id(args.id)
    with _conversations() as conversations:
        _exists(conversations, cid)
        conversation = conversations.open(cid)
    if args.json:
        print(json.dumps({
            "id": cid, "title": conversation.title, "pinned_domain": conversation.pinned_domain,
            "summary": None if conversation.summary() is None else conversation.summary().__dict__,  # type: ignore[union-attr]
            "messages": [
                {"id": m.id, "role": m.role, "content": m.content, "meta": m.meta, "created_at": _iso(m.created_at)}
                for m in conversation.messages
            ],
        }, ensure_ascii=False))
        return 0
    print(f"# {conversation.title or 'Untitled'}")
    for m in conversation.messages:
        label = "You" if m.role == "user" else "TARA" if m.role == "assistant" else m.role
        extra = f" ({m.meta['domain']})" if m.role == "assistant" and m.meta.get("domain") else ""
        extra += " [stopped]" if m.meta.get("cancelled") else ""
        print(f"\n[{m.id}] {label}{extra}:\n{m.content}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    if args.all:
        if args.id is not None:
            raise TaraError("give either a conversation number or --all, not both")
        if not args.yes:
            raise TaraError("deleting every conversation cannot be undone; add --yes to confirm")
        with _conversations() as conversations:
            n = conversations.delete_all()
        sys.stderr.write(f"deleted {n} conversation(s)\n")
        return 0
    cid = _id(args.id)
    with _conversations() as conversations:
        _exists(conversations, cid)
        conversations.delete(cid)
    sys.stderr.write(f"deleted conversation {cid}\n")
    return 0
