"""``tara chat``: one turn through the whole pipeline (router, context window, engine, profile)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tara_desktop.cli import interrupts_call
from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "chat",
        help="one turn: route, answer with the local model (streamed), store it in the profile",
        description="Send one message through TARA's whole pipeline and stream the reply to stdout.",
    )
    p.add_argument("text", metavar="TEXT",
                   help="the message, or - to read it from stdin (then it does not show in `ps`)")
    p.add_argument("--model", type=Path, help="use this GGUF instead of the domain's mapped model")
    p.add_argument("--adapter", type=Path, help="apply this GGUF LoRA adapter")
    p.add_argument("--domain", help="pin the domain instead of routing")
    p.add_argument("--conversation", type=int, metavar="ID", help="continue this conversation")
    p.add_argument("--continue", dest="continue_last", action="store_true",
                   help="continue the most recent conversation")
    p.add_argument("--json", action="store_true", help="after the reply, print the turn's details as JSON on stderr")
    p.set_defaults(handler=_chat)


def _write(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


def _message(text: str) -> str:
    """The message: the argument, or with ``-`` all of stdin (UTF-8; one trailing newline dropped)."""
    if text != "-":
        return text
    try:
        message = sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TaraError(f"the message on stdin is not valid UTF-8 text (byte {exc.start}); send UTF-8") from None
    message = message.removesuffix("\n").removesuffix("\r")
    if not message.strip():
        raise TaraError("no message on stdin; pipe one in, e.g. `echo hello | tara chat -`")
    return message


def _chat(args: argparse.Namespace) -> int:
    import json

    args.text = _message(args.text)

    from tara_desktop.assistant import Assistant
    from tara_desktop.turn import TurnRequest

    for flag, path in (("--model", args.model), ("--adapter", args.adapter)):
        if path is not None and not path.is_file():
            raise TaraError(f"{flag} {path}: no such file; give the path of a .gguf file")
    with Assistant.open() as assistant:
        if args.domain is not None and args.domain not in assistant.configs.domains:
            raise TaraError(
                f"unknown domain {args.domain!r}; choose one of {', '.join(assistant.configs.domains)}"
            )
        cid = args.conversation
        if args.continue_last and cid is None:
            cid = assistant.conversations.most_recent()
        if cid is not None:
            damaged: list[str] = []
            assistant.profile.store.messages(cid, on_damaged="skip", damaged=damaged)
            if damaged:
                sys.stderr.write(
                    f"warning: {len(damaged)} damaged message(s) of conversation {cid} skipped "
                    "(run `tara profile audit-verify`)\n"
                )
        state = JobState()
        with interrupts_call(state.cancel):
            result = assistant.run_turn(
                TurnRequest(
                    text=args.text,
                    conversation_id=cid,
                    pinned_domain=args.domain,
                    model_path=args.model,
                    adapter_path=args.adapter,
                ),
                state,
                on_token=_write,
            )
        sys.stdout.write("\n")
        sys.stdout.flush()
        summary = f"[{result.domain} · {result.model}"
        summary += f" + {result.adapter}" if result.adapter else ""
        summary += f" · {result.tokens_per_s:.1f} tok/s" if result.tokens_per_s else ""
        summary += " · stopped]" if result.cancelled else "]"
        sys.stderr.write(summary + "\n")
        if args.json:
            sys.stderr.write(json.dumps({
                "conversation_id": result.conversation_id, "user_message_id": result.user_message_id,
                "message_id": result.message_id, "finish_reason": result.finish_reason,
                "completion_tokens": result.completion_tokens, **result.meta,
            }) + "\n")
        return 130 if result.cancelled else 0
