"""``tara export DIR --gguf OUT [--merge] [--quant Q4_K_M|Q5_K_M|Q8_0|Q2_K]``: a trained adapter or a model
folder → a validated GGUF, with a progress bar on stderr, registered for its domain when one is known.

OUT that already exists is refused (exit 2) unless ``--force``: then it is replaced atomically, and only
once the new file has been validated, so the old file is never lost to a failed export. Ctrl-C stops the
export and leaves nothing at OUT (exit 130).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.training import export_job as ej
from tara_desktop.training import quantize as qz

if TYPE_CHECKING:
    from tara_desktop.config import Domain


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained adapter or a model folder to GGUF",
        description=(
            "DIR is a training output folder or PEFT adapter (-> a GGUF LoRA adapter, or with --merge the merged "
            "full model) or a Hugging Face model folder (-> a full GGUF). The file appears at OUT only after it "
            "was validated in llama.cpp. With --domain (or a training job that names one) it is registered for "
            "that domain: the next message there uses it."
        ),
    )
    p.add_argument("source", metavar="DIR", type=Path, help="training output folder, adapter folder, or model folder")
    p.add_argument("--gguf", metavar="OUT", type=Path, required=True, help="the GGUF file to write")
    p.add_argument("--merge", action="store_true", help="merge the adapter into its base and write a full model")
    p.add_argument("--quant", type=_quant, metavar="|".join(qz.QUANTS), help="quantize the full model (default: keep f16)")
    p.add_argument("--dtype", choices=("f16", "f32"), default="f16", help="float type when not quantizing (default f16)")
    p.add_argument("--base", type=Path, help="the base model (folder or .gguf) the adapter was trained on, if not recorded")
    p.add_argument("--domain", help="register the result for this domain (default: the training job's domain)")
    p.add_argument("--no-register", action="store_true", help="only write the file; do not change the model mapping")
    p.add_argument("--compare", action="store_true", help="with --quant: also measure the other quantizations for the table")
    p.add_argument("--eval-text", type=Path, metavar="FILE", help="held-out text for perplexity (default: bundled demo text)")
    p.add_argument("--name", help="model name stored in the GGUF (general.name)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists (atomically, after validation)")
    p.set_defaults(handler=cmd_export)


def _quant(value: str) -> str:
    try:
        return qz.check_quant(value)
    except TaraError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class ProgressBar:
    """A one-line progress bar on stderr (a line per change when stderr is not a terminal)."""

    def __init__(self, width: int = 30) -> None:
        self.width = width
        self.tty = sys.stderr.isatty()
        self.last = ""
        self.fraction = 0.0

    def __call__(self, fraction: float | None, message: str) -> None:
        if fraction is not None:  # None (no estimate for this step): keep the bar where it is
            self.fraction = fraction
        done = round(self.fraction * self.width)
        bar = f"[{'#' * done}{' ' * (self.width - done)}] {round(self.fraction * 100):3d}%"
        line = f"{bar} {message}"[:120]
        if self.tty:
            sys.stderr.write("\r" + line.ljust(len(self.last)))
        elif line != self.last:
            sys.stderr.write(line + "\n")
        self.last = line
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty and self.last:
            sys.stderr.write("\n")
            sys.stderr.flush()


def cmd_export(args: argparse.Namespace) -> int:
    eval_text = None
    if args.eval_text is not None:
        try:
            eval_text = args.eval_text.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TaraError(f"cannot read {args.eval_text} ({exc}); give a UTF-8 text file") from None
    if args.compare and not args.quant:
        raise TaraError("--compare needs --quant (the quantization to keep)")
    domains = _domains()
    if args.domain is not None and args.domain not in domains:
        raise TaraError(f"unknown domain {args.domain!r}; choose one of {', '.join(sorted(domains))}")
    source = ej.resolve_source(args.source)
    domain = args.domain or source.domain
    if domain and not args.no_register:  # fail before the work if the profile cannot be opened
        from tara_desktop.profile.commands import open_profile

        open_profile().close()
    request = ej.ExportRequest(
        source=args.source, out=args.gguf, merge=args.merge, quant=args.quant, dtype=args.dtype, base=args.base,
        overwrite=args.force, name=args.name, compare=args.compare, eval_text=eval_text,
    )
    bar = ProgressBar()
    state = JobState(bar)
    try:
        result = ej.run_export(request, state)
    finally:
        bar.done()
    _print_result(result)
    if domain and not args.no_register:
        _register(result, domain, domains)
    return 0


def _domains() -> dict[str, Domain]:
    from tara_desktop.config import load_configs

    return dict(load_configs().domains)


def _print_result(result: ej.ExportResult) -> None:
    what = "GGUF LoRA adapter" if result.kind == "adapter" else "GGUF model"
    quant = f", {result.quant.quant}" if result.quant else ""
    print(f"wrote {result.path} ({what}, {result.arch}{quant}, {result.size_bytes / 1e6:.2f} MB) in {result.seconds:.1f} s")
    for note in result.notes:
        print(f"  note: {note}")
    if result.table:
        print(qz.format_table(result.table, "model" if result.kind == "adapter" else "quantization"))


def _register(result: ej.ExportResult, domain: str, domains: dict[str, Domain]) -> None:
    from tara_desktop.config import load_configs
    from tara_desktop.profile.commands import open_profile
    from tara_desktop.training import gguf_export as gx

    if result.kind == "adapter":
        model = result.base_gguf
        if model is None:  # trained on a Hugging Face folder: it must fit the GGUF the domain runs today
            name = load_configs().mapping.for_domain(domain).model
            model = ej.resolve_model_file(name)
            if model is None:
                raise TaraError(f"the model {name} of domain {domain} is not installed; export with --merge instead")
            gx.validate_adapter(result.path, model)
        adapter: Path | None = result.path
    else:
        model, adapter = result.path, None
    with open_profile() as profile:
        ej.register_for_domain(profile, domain, model=model, adapter=adapter, domains=domains)
    print(f"registered for domain {domain}: the next {domain} message uses it")
