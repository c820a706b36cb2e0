"""``tara route``: the routing decision for a message, or for every line of standard input.

    tara route [--json] [--previous D] [--pin D] TEXT
    tara route --jsonl < lines.txt

``--jsonl`` prints one JSON object per input line, in input order, each
``{"text", "domain", "confidence", "model", "adapter", "adapter_scale", "reason", "degraded"}``. A line that
is empty (or only whitespace) does not stop the batch: its object is ``{"text": ..., "error": ...}``. The
exit code is 0 once the whole input was read, whatever the per-line errors; each object says its own.
An empty TEXT (without ``--jsonl``) is an error: one ``error:`` line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

from tara_desktop.errors import TaraError

if TYPE_CHECKING:
    from tara_desktop.routing.router import DomainRouter, RouteDecision


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "route",
        help="show which domain, model and adapter a message is routed to",
        description="Show which domain, model and adapter TARA routes a message to.",
    )
    p.add_argument("text", nargs="*", metavar="TEXT", help="the message (words are joined with spaces)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the decision as one JSON object")
    out.add_argument(
        "--jsonl",
        action="store_true",
        help="route every line of standard input; print one JSON object per line, in order",
    )
    p.add_argument("--previous", metavar="DOMAIN", help="the conversation's previous domain")
    p.add_argument("--pin", metavar="DOMAIN", help="a domain pinned for the conversation (always wins)")
    p.add_argument(
        "--keywords",
        action="store_true",
        help="use the keyword router only (the degraded mode used when the embedding model is missing)",
    )
    p.set_defaults(handler=run_route)


def _router(args: argparse.Namespace) -> DomainRouter:
    from tara_desktop.config import load_configs
    from tara_desktop.routing.router import DomainRouter

    configs = load_configs()
    router = DomainRouter.from_configs(configs, **({"embedding_model": None} if args.keywords else {}))
    for what, domain in (("--previous", args.previous), ("--pin", args.pin)):
        if domain is not None and domain not in router.domains:
            raise TaraError(f"{what}: unknown domain {domain!r}; use one of {', '.join(router.domains)}")
    return router


def _line(decision: RouteDecision) -> str:
    adapter = decision.adapter or "none"
    return (
        f"{decision.domain}  confidence {decision.confidence:.2f}  model {decision.model}  "
        f"adapter {adapter}  ({decision.reason})"
    )


def _record(text: str, decision: RouteDecision) -> dict[str, Any]:
    return {
        "text": text,
        "domain": decision.domain,
        "confidence": decision.confidence,
        "model": decision.model,
        "adapter": decision.adapter,
        "adapter_scale": decision.adapter_scale,
        "reason": decision.reason,
        "degraded": decision.degraded,
    }


def run_route(args: argparse.Namespace) -> int:
    # Library chatter (model loading) must not pollute the output; our own warning is printed below.
    logging.getLogger("tara_desktop.routing").setLevel(logging.ERROR)
    if args.jsonl:
        if args.text:
            raise TaraError("--jsonl reads messages from standard input; do not also give TEXT")
        return _run_jsonl(args)
    text = " ".join(args.text)
    if not text.strip():
        raise TaraError("the message is empty; give the text to route, e.g. tara route \"fix my wifi\"")
    router = _router(args)
    decision = router.route(text, previous_domain=args.previous, pinned=args.pin)
    if decision.degraded:
        sys.stderr.write(f"warning: degraded routing (keywords only): {router.degraded_reason}\n")
    if args.json:
        print(json.dumps(_record(text, decision), ensure_ascii=False))
    else:
        print(_line(decision))
    return 0


def _run_jsonl(args: argparse.Namespace) -> int:
    router = _router(args)  # an unknown --pin/--previous fails here, before any output
    warned = False
    stream = sys.stdin.buffer
    for raw in stream:
        text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not text.strip():
            record: dict[str, Any] = {"text": text, "error": "empty line; nothing to route"}
        else:
            decision = router.route(text, previous_domain=args.previous, pinned=args.pin)
            if decision.degraded and not warned:
                sys.stderr.write(f"warning: degraded routing (keywords only): {router.degraded_reason}\n")
                warned = True
            record = _record(text, decision)
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    return 0
