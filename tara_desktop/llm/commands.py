"""``tara gguf info|validate|repair`` and ``tara models list|add|remove|download``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tara_desktop.llm import gguf_file
from tara_desktop.progress import ProgressBar

if TYPE_CHECKING:
    from tara_desktop.profile import Profile


def register(subparsers: argparse._SubParsersAction) -> None:
    gguf = subparsers.add_parser("gguf", help="inspect, validate or repair a GGUF model file")
    gsub = gguf.add_subparsers(dest="gguf_command", metavar="ACTION", parser_class=type(gguf), required=True)

    p = gsub.add_parser("info", help="what a GGUF file holds: architecture, size, quantization, context...")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--tensors", action="store_true", help="also list every tensor")
    p.set_defaults(handler=_gguf_info)

    p = gsub.add_parser("validate", help="check that a GGUF file is whole and loadable (exit 0 ok, 2 bad)")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--sha256", metavar="HEX",
                   help="also check the file's sha256 (default: the catalog's, for a file it lists)")
    p.set_defaults(handler=_gguf_validate)

    p = gsub.add_parser("repair", help="write a fixed copy of a GGUF whose damage is in metadata only")
    p.add_argument("path", metavar="PATH")
    p.add_argument("out", metavar="OUT")
    p.set_defaults(handler=_gguf_repair)

    models = subparsers.add_parser("models", help="your models and the catalog: list, add, remove, download")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", parser_class=type(models), required=True)

    p = msub.add_parser("list", help="installed and available models, their size and whether they fit")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(handler=_models_list)

    p = msub.add_parser("add", help="validate a GGUF file and register it (the file is linked, not copied)")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--name", help="the name to show (default: the file name)")
    p.set_defaults(handler=_models_add)

    p = msub.add_parser("remove", help="forget a registered model (the file stays on disk)")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=_models_remove)

    p = msub.add_parser("download", help="download a catalog model into your models folder (resumable)")
    p.add_argument("name", metavar="NAME", help="a catalog id, as shown by `tara models list`")
    p.set_defaults(handler=_models_download)


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


def _clean(text: str | None, default: str = "-") -> str:
    """Text from a file, safe to print: no control characters (no terminal escapes), one line."""
    if not text:
        return default
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


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
        ("type", _clean(info.model_type)),
        ("architecture", _clean(info.architecture, "unknown")),
        ("name", _clean(info.name)),
        ("parameters", _human_count(info.parameter_count)),
        ("quantization", info.quantization),
        ("context length", str(info.context_length) if info.context_length else "unknown"),
        ("chat template", "yes" if info.chat_template else "no (a default will be used)"),
        ("tokenizer", _clean(info.tokenizer_model, "none") + (f", {info.vocab_size} tokens" if info.vocab_size else "")),
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


def _catalog_sha256(path: str) -> str | None:
    """The catalog's sha256 for a file of this name, when the catalog records one."""
    from tara_desktop.errors import ConfigError
    from tara_desktop.llm.catalog import load_catalog

    try:
        entry = load_catalog().by_file(Path(path).name)
    except ConfigError:
        return None  # a broken catalog must not stop checking a file
    return entry.sha256 if entry is not None else None


def _gguf_validate(args: argparse.Namespace) -> int:
    expected = args.sha256 or _catalog_sha256(args.path)
    info = gguf_file.validate(args.path, expected_sha256=expected)
    extra = ""
    if args.sha256:
        extra = ", sha256 matches"
    elif expected:
        extra = ", sha256 matches the catalog"
    print(
        f"ok: {info.path} is a valid GGUF {_clean(info.model_type)} ({_clean(info.architecture, 'unknown architecture')}, "
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


# ----------------------------------------------------------------------------- tara models


def _open_profile() -> Profile:
    from tara_desktop.profile import Profile

    return Profile.open()


def _models_list(args: argparse.Namespace) -> int:
    from tara_desktop import paths
    from tara_desktop.config import load_configs
    from tara_desktop.llm import memory
    from tara_desktop.llm.catalog import load_catalog
    from tara_desktop.llm.library import ModelLibrary, list_models

    configs = load_configs()
    catalog = load_catalog(known_domains=set(configs.domains))
    llm = configs.app.llm
    with _open_profile() as profile:
        machine = memory.Machine.now(paths.user_models_dir(Path(profile.dir)))
        rows = list_models(
            ModelLibrary(profile), catalog,
            n_ctx=llm.context_size, budget_mb=llm.memory_budget_mb, n_batch=llm.batch_size, memory=machine,
        )
    best = memory.best_fit([(r, r.fit) for r in rows if r.status == "available"])
    budget = memory.budget_mb(llm.memory_budget_mb, machine.total_ram_bytes)
    if args.json:
        print(json.dumps([{**r.to_json(), "recommended": r is best} for r in rows], indent=2))
        return 0
    header = ("NAME", "STATUS", "SIZE", "NEEDS", "FITS THIS COMPUTER", "LOADED")
    table = [header]
    for r in rows:
        size = ("~" if r.size_is_estimate else "") + _human_bytes(r.size_bytes) if r.size_bytes else "?"
        need = memory.human(r.fit.need_bytes) if r.fit.need_bytes else "?"
        fit = r.fit.label + (" (recommended)" if r is best else "")
        table.append((r.name, r.status, size, need, fit, "yes" if r.loaded else "no"))
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(f"{cell:<{w}}" for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])
    for r in rows:
        if r.fit.verdict not in ("fits", "unknown"):
            print(f"note: {r.name}: {r.fit.reason}", file=sys.stderr)
        if r.problem:
            print(f"note: {r.name}: {r.problem}", file=sys.stderr)
    disk = f", {memory.human(machine.free_disk_bytes)} free disk" if machine.free_disk_bytes is not None else ""
    auto = " (automatic: half of the memory)" if llm.memory_budget_mb <= 0 else ""
    print(f"(needs at a {llm.context_size}-token context, clamped to each model's own; this computer: "
          f"{memory.human(machine.available_ram_bytes)} of {memory.human(machine.total_ram_bytes)} memory free{disk}; "
          f"memory budget {memory.human(budget * memory.MB)}{auto})")
    if best is not None:
        print(f"recommended for this computer: {best.name} (`tara models download {best.name}`)")
    return 0


def _models_add(args: argparse.Namespace) -> int:
    from tara_desktop.jobs import JobState
    from tara_desktop.llm.catalog import load_catalog
    from tara_desktop.llm.library import ModelLibrary

    catalog = load_catalog()
    with _open_profile() as profile:
        bar = ProgressBar()
        state = JobState(bar if sys.stderr.isatty() else None)
        try:
            model = ModelLibrary(profile).add(args.path, name=args.name, catalog=catalog, state=state)
        finally:
            bar.end()
    print(f"added {model.name}: {model.path} ({_human_bytes(model.size_bytes)}, sha256 {model.sha256[:12]}...)")
    return 0


def _models_remove(args: argparse.Namespace) -> int:
    from tara_desktop.llm.library import ModelLibrary

    with _open_profile() as profile:
        model = ModelLibrary(profile).remove(args.name)
    print(f"removed {model.name} from your models; the file {model.path} was not deleted")
    return 0


def _models_download(args: argparse.Namespace) -> int:
    from tara_desktop import paths
    from tara_desktop.errors import TaraError
    from tara_desktop.jobs import JobState
    from tara_desktop.llm.catalog import load_catalog
    from tara_desktop.llm.download import Unreachable, download_catalog_model
    from tara_desktop.llm.library import ModelLibrary

    catalog = load_catalog()
    entry = catalog.get(args.name)
    if entry.bundled or entry.source is None:
        raise TaraError(f"{entry.id} ships with TARA and is not downloaded: it is in {paths.bundled_models_dir()}")
    with _open_profile() as profile:
        models_dir = paths.user_models_dir(Path(profile.dir))
        bar = ProgressBar()
        try:
            model, status = download_catalog_model(entry, models_dir, ModelLibrary(profile), state=JobState(bar),
                                                   catalog=catalog)
        except Unreachable as exc:
            bundled = next((e for e in catalog if e.bundled), None)
            keeps = f"; until then TARA answers with its bundled {bundled.name}, which works offline" if bundled else ""
            raise TaraError(f"{exc}{keeps}") from None
        finally:
            bar.end()
    if status == "already":
        print(f"{entry.id} is already downloaded: {model.path} (registered as {model.name})")
        return 0
    print(f"downloaded {entry.id} to {model.path} and added it to your models")
    return 0
