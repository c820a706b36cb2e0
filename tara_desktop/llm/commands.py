"""``tara gguf info|validate|repair`` and ``tara models list|add|remove|download``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tara_desktop.llm import gguf_file


def register(subparsers: argparse._SubParsersAction) -> None:
    gguf = subparsers.add_parser("gguf", help="inspect, validate or repair a GGUF model file")
    gsub = gguf.add_subparsers(dest="gguf_command", metavar="ACTION", required=True)

    p = gsub.add_parser("info", help="what a GGUF file holds: architecture, size, quantization, context...")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--tensors", action="store_true", help="also list every tensor")
    p.set_defaults(handler=_gguf_info)

    p = gsub.add_parser("validate", help="check that a GGUF file is whole and loadable (exit 0 ok, 2 bad)")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--sha256", metavar="HEX", help="also check the file's sha256")
    p.set_defaults(handler=_gguf_validate)

    p = gsub.add_parser("repair", help="write a fixed copy of a GGUF whose damage is in metadata only")
    p.add_argument("path", metavar="PATH")
    p.add_argument("out", metavar="OUT")
    p.set_defaults(handler=_gguf_repair)


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _human_count(n: int) -> str:
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def _gguf_info(args: argparse.Namespace) -> int:
    info = gguf_file.inspect(args.path)
    if args.json:
        out = info.summary()
        if args.tensors:
            out["tensors"] = [
                {"name": t.name, "shape": list(t.shape), "type": t.type_name, "offset": t.offset, "bytes": t.n_bytes}
                for t in info.tensors
            ]
        print(json.dumps(out, indent=2))
        return 0
    rows = [
        ("file", str(info.path)),
        ("size", f"{_human_bytes(info.size_bytes)} ({info.size_bytes} bytes)"),
        ("type", info.model_type),
        ("architecture", info.architecture or "unknown"),
        ("name", info.name or "-"),
        ("parameters", _human_count(info.parameter_count)),
        ("quantization", info.quantization),
        ("context length", str(info.context_length) if info.context_length else "unknown"),
        ("chat template", "yes" if info.chat_template else "no (a default will be used)"),
        ("tokenizer", f"{info.tokenizer_model or 'none'}" + (f", {info.vocab_size} tokens" if info.vocab_size else "")),
        ("layers", str(info.n_layers) if info.n_layers else "unknown"),
        ("embedding", str(info.n_embd) if info.n_embd else "unknown"),
        ("heads", f"{info.n_head or '?'} (kv {info.n_head_kv or '?'})"),
        ("tensors", f"{info.tensor_count}: " + ", ".join(f"{n} {t}" for t, n in info.tensor_types.items())),
        ("GGUF version", str(info.version)),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if args.tensors:
        for t in info.tensors:
            print(f"  {t.name:<48} {t.type_name:<8} {'x'.join(str(d) for d in t.shape):<20} {t.n_bytes}")
    for problem in info.problems:
        print(f"warning: {problem.message} (`tara gguf repair` can fix it)", file=sys.stderr)
    return 0


def _gguf_validate(args: argparse.Namespace) -> int:
    info = gguf_file.validate(args.path, expected_sha256=args.sha256)
    extra = ", sha256 matches" if args.sha256 else ""
    print(
        f"ok: {info.path} is a valid GGUF {info.model_type} ({info.architecture or 'unknown architecture'}, "
        f"{info.quantization}, {info.tensor_count} tensors{extra})"
    )
    return 0


def _gguf_repair(args: argparse.Namespace) -> int:
    from tara_desktop.llm import gguf_repair

    report = gguf_repair.repair(Path(args.path), Path(args.out))
    for line in report.fixes:
        print(f"fixed: {line}")
    print(f"ok: wrote {report.out}")
    return 0
