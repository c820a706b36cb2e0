"""The export job: a trained adapter or a model folder → a validated GGUF, registered for its domain.

:func:`run_export` is the plain ``run(request, state)`` function the GUI's Export button and
``tara export`` both call. It picks the path by what ``source`` is:

- a training job folder (``DIR/adapter/`` + ``DIR/job.json``) or a PEFT adapter folder → a GGUF LoRA
  adapter (the fast path: a few MB, applied on the already-loaded base at run time), or, with ``merge``,
  the adapter merged into its base and written as a full GGUF;
- a Hugging Face model folder → a full GGUF.

A full model can be quantized (Q4_K_M by default in the app; Q5_K_M, Q8_0, Q2_K); the result then carries a
table of file size and validation perplexity, and the tensors llama.cpp had to fall back on.

Registration (:func:`register_for_domain`) stores the result in the profile under the setting
``model_mapping.overrides`` — ``{domain: {"model": PATH, "adapter": PATH | None, "adapter_scale": 1.0}}``
with absolute paths — and writes a ``model_import`` audit entry. Given the running Assistant, it goes
through the assistant (the one owner of the mapping), which swaps the mapping in place, so the next
message in that domain uses the new model without a restart; ``tara export`` (no app running in that
process) writes the setting, read by the next Assistant that opens.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.training import gguf_export as gx
from tara_desktop.training import quantize as qz

if TYPE_CHECKING:
    from tara_desktop.assistant import Assistant
    from tara_desktop.profile import Profile

log = logging.getLogger(__name__)

AUDIT_EVENT = "model_import"


@dataclass
class ExportRequest:
    """What to export and how. ``quant`` None keeps the float type (``dtype``)."""

    source: Path
    out: Path
    merge: bool = False
    quant: str | None = None
    dtype: gx.FileDtype = "f16"
    base: Path | None = None
    overwrite: bool = False
    name: str | None = None
    description: str | None = None
    compare: bool = False  # table rows for every quantization, not only the chosen one
    eval_text: str | None = None  # held-out text for perplexity; None: the bundled demo corpus's held-out part


@dataclass
class ExportResult:
    """The validated file, what it is, and the numbers worth showing."""

    path: Path
    kind: str  # "adapter" | "model"
    arch: str
    size_bytes: int
    seconds: float
    base_gguf: Path | None = None
    domain: str | None = None
    quant: qz.QuantReport | None = None
    table: list[qz.QuantRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Source:
    kind: str  # "adapter" | "model"
    folder: Path
    domain: str | None = None
    base: Path | None = None


def resolve_source(path: Path) -> Source:
    """Say what ``path`` is: a training job folder, a PEFT adapter folder, or a full model folder."""
    path = Path(path)
    if not path.exists():
        raise TaraError(f"{path} does not exist; give a training output folder or a model folder")
    if not path.is_dir():
        raise TaraError(f"{path} is a file; give a training output folder (with adapter/) or a model folder")
    job: dict[str, Any] = {}
    job_file = path / "job.json"
    if job_file.is_file():
        try:
            loaded = json.loads(job_file.read_text(encoding="utf-8"))
            job = loaded.get("spec", loaded) if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            job = {}
    domain = job.get("domain") if isinstance(job.get("domain"), str) else None
    base = Path(job["base"]) if isinstance(job.get("base"), str) else None
    if (path / "adapter" / "adapter_config.json").is_file():
        return Source("adapter", path / "adapter", domain, base)
    if (path / "adapter_config.json").is_file():
        return Source("adapter", path, domain, base)
    if (path / "config.json").is_file():
        return Source("model", path, domain)
    if job_file.is_file():
        raise TaraError(f"the training job in {path} has no finished adapter yet; let it finish (or resume it) and export again")
    raise TaraError(f"{path} holds neither a trained adapter (adapter_config.json) nor a model (config.json)")


def _adapter_base(source: Source, override: Path | None) -> Path:
    if override is not None:
        base = Path(override)
    elif source.base is not None:
        base = source.base
    else:
        cfg = gx.read_adapter_config(source.folder)
        named = cfg.get("base_model_name_or_path")
        base = Path(named) if isinstance(named, str) and named else Path()
    if not str(base) or not base.exists():
        raise TaraError(
            f"the adapter's base model {str(base) or '(not recorded)'} is not on this computer; pass --base PATH "
            "(the model folder or .gguf it was trained on)"
        )
    return base


def default_eval_text() -> str:
    """Held-out text for validation perplexity: every tenth pair of the bundled demo corpus."""
    from tara_desktop import paths

    parts: list[str] = []
    for path in sorted((paths.resources_dir() / "demo_corpus").glob("*.jsonl")):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if i % 10 == 9 and line.strip():
                msgs = json.loads(line)["messages"]
                parts.append("\n".join(m["content"] for m in msgs))
    if not parts:
        raise TaraError("no validation text: give one with --eval-text FILE")
    return "\n\n".join(parts)


def run_export(req: ExportRequest, state: JobState) -> ExportResult:
    """Export as ``req`` asks; the file appears at ``req.out`` only once it has been validated."""
    start = time.perf_counter()
    source = resolve_source(req.source)
    quant = qz.check_quant(req.quant) if req.quant else None
    if source.kind == "adapter" and not req.merge and quant:
        raise TaraError("quantization applies to full models; add --merge to merge the adapter into its base first")
    out = Path(req.out)
    if out.suffix.lower() != ".gguf":
        raise TaraError(f"{out} does not end in .gguf; name the output file NAME.gguf")
    state.report(0.0, "starting the export")
    with gx.atomic_output(out, overwrite=req.overwrite) as partial:
        work = gx.make_workdir(out.parent)
        try:
            if source.kind == "adapter" and not req.merge:
                result = _export_adapter(req, source, partial, state)
            else:
                model_dir, tokenizer_from, base = source.folder, None, None
                if source.kind == "adapter":
                    base = _adapter_base(source, req.base)
                    model_dir = gx.merge_adapter(source.folder, base, work / "merged", state=state)
                    tokenizer_from = base if base.is_file() else None
                result = _export_model(req, model_dir, partial, work, tokenizer_from=tokenizer_from, quant=quant, state=state)
                result.base_gguf = base if base is not None and base.is_file() else None
        finally:
            shutil.rmtree(work, ignore_errors=True)
        state.check()
    result.path = out
    result.size_bytes = out.stat().st_size
    result.domain = source.domain
    result.seconds = time.perf_counter() - start
    state.report(1.0, f"exported {out.name}")
    return result


def _export_adapter(req: ExportRequest, source: Source, partial: Path, state: JobState) -> ExportResult:
    base = _adapter_base(source, req.base)
    info = gx.write_adapter_gguf(
        source.folder, partial, gx.base_info(base), dtype=req.dtype, name=req.name or f"{source.domain or 'tara'} adapter",
        state=state, progress=(0.05, 0.7),
    )
    base_gguf = base if base.is_file() else None
    state.report(0.75, "validating the adapter")
    gx.validate_adapter(partial, base_gguf)
    table: list[qz.QuantRow] = []
    if base_gguf is not None:
        text = req.eval_text or default_eval_text()
        state.report(0.85, "measuring perplexity with and without the adapter")
        table = [
            qz.QuantRow("base", base_gguf.stat().st_size, qz.perplexity(base_gguf, text, state=state)),
            qz.QuantRow("base+adapter", partial.stat().st_size, qz.perplexity(base_gguf, text, adapter=partial, state=state)),
        ]
    return ExportResult(partial, "adapter", info.arch, info.size_bytes, 0.0, base_gguf=base_gguf, table=table, notes=info.notes)


def _export_model(
    req: ExportRequest, model_dir: Path, partial: Path, work: Path, *,
    tokenizer_from: Path | None, quant: str | None, state: JobState,
) -> ExportResult:
    target = work / "model.f16.gguf" if quant else partial
    info = gx.write_model_gguf(
        model_dir, target, dtype="f16" if quant else req.dtype, name=req.name or model_dir.name,
        description=req.description, tokenizer_from=tokenizer_from, state=state, progress=(0.1, 0.5 if quant else 0.85),
    )
    result = ExportResult(partial, "model", info.arch, info.size_bytes, 0.0, notes=info.notes)
    if quant:
        text = req.eval_text or default_eval_text()
        quants = [quant] + ([q for q in qz.QUANTS if q != quant] if req.compare else [])
        sub = _Span(state, 0.5, 0.9)
        rows, reports = qz.compare_quantizations(target, quants, text, work, keep={quant: partial}, state=sub)
        result.table, result.quant = rows, reports[quant]
        if reports[quant].fallbacks:
            result.notes.append(reports[quant].fallback_summary())
    state.report(0.92, "validating the model in llama.cpp")
    gx.validate_model(partial)
    return result


class _Span(JobState):
    """A view of a parent JobState that maps 0..1 onto ``lo..hi`` and shares its cancel flag."""

    def __init__(self, parent: JobState, lo: float, hi: float) -> None:
        super().__init__()
        self._parent, self._lo, self._hi = parent, lo, hi

    def report(self, fraction: float | None, message: str = "") -> None:
        self._parent.report(None if fraction is None else self._lo + (self._hi - self._lo) * fraction, message)

    def check(self) -> None:
        self._parent.check()

    @property
    def cancelled(self) -> bool:
        return self._parent.cancelled


# ---------------------------------------------------------------------------------------------------------
# registration


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def register_for_domain(
    profile: Assistant | Profile, domain: str, *, model: str | Path, adapter: str | Path | None = None, adapter_scale: float = 1.0,
    domains: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Make ``domain`` use ``model`` (+ ``adapter``) from the next message on, and audit it.

    ``profile`` is the running app's :class:`~tara_desktop.assistant.Assistant` (the one owner of the
    mapping: it swaps it in place) or, with no app in this process, a Profile.

    Stores ``{"model", "adapter", "adapter_scale"}`` (absolute paths) under ``domain`` in the profile
    setting ``model_mapping.overrides`` and appends a ``model_import`` audit entry (file names and
    sha256, no user content). ``domains`` (name → anything) rejects unknown domain names. Returns the entry.
    """
    if domains is not None and domain not in domains:
        raise TaraError(f"unknown domain {domain!r}; choose one of {', '.join(sorted(domains))}")
    model_path = Path(model).resolve()
    adapter_path = Path(adapter).resolve() if adapter is not None else None
    for p in (model_path, adapter_path):
        if p is not None and not p.is_file():
            raise TaraError(f"{p} does not exist; export it first, then register it")
    entry = {"model": str(model_path), "adapter": str(adapter_path) if adapter_path else None, "adapter_scale": float(adapter_scale)}
    from tara_desktop.assistant import Assistant
    from tara_desktop.model_mapping import MAPPING_KEY, stored_choices

    if isinstance(profile, Assistant):  # the running app: it stores the choice and swaps its mapping in place
        profile.set_domain_choice(domain, entry)
        profile = profile.profile
    else:  # no app in this process (``tara export``): the next Assistant to open reads it
        overrides = stored_choices(profile.store)
        overrides[domain] = entry
        profile.store.set_setting(MAPPING_KEY, overrides)
    details: dict[str, Any] = {"domain": domain, "model": model_path.name, "model_sha256": file_sha256(model_path)}
    if adapter_path is not None:
        details.update(adapter=adapter_path.name, adapter_sha256=file_sha256(adapter_path), adapter_scale=float(adapter_scale))
    profile.audit.append(AUDIT_EVENT, details)
    log.info("registered a %s for domain %s", "model + adapter" if adapter_path else "model", domain)
    return entry


def resolve_model_file(name: str, profile_dir: Path | None = None) -> Path | None:
    """Find a mapping's model/adapter file: absolute, or under the bundled or the user's models folder."""
    from tara_desktop import paths

    candidate = Path(name)
    if candidate.is_absolute():
        return candidate if candidate.is_file() else None
    for folder in (paths.bundled_models_dir(), paths.user_models_dir(profile_dir or paths.profile_dir())):
        if (folder / candidate).is_file():
            return folder / candidate
    return None
