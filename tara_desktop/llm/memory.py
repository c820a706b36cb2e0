"""The one memory model: what a GGUF model needs to run, and whether that fits this computer.

Everything that talks about a model's memory uses this module: the engine (before it loads), the pool
(its budget and which models to unload), the Models page's "Fits this computer?" column, the welcome's
recommendations and ``tara models list``. So a model shown as fitting is never refused at the same
settings.

What a loaded model needs (llama.cpp, CPU, memory-mapped weights):

- **weights**: the file (tensor data plus the header llama.cpp keeps), resident to run at speed;
- **KV cache**: f16 keys and values for every layer at the context actually used: the configured
  ``llm.context_size`` clamped to what the model was trained on (``n_ctx_train``), padded the way
  llama.cpp pads it (multiples of 256);
- **compute buffers**: the worst-case graph llama.cpp reserves for one micro-batch. Its allocator reuses
  memory, so the buffer is the larger of the logits for every token of the batch and the attention scores
  (f32, every head, the whole context, plus the mask), and a margin for the layer activations. Checked
  against the buffer sizes llama.cpp itself reports (tests/llm/test_memory.py);
- a fixed overhead (the context, the sampler, the tokenizer's tables).

The numbers come from the file's GGUF metadata (read by :mod:`tara_desktop.llm.gguf_file`) or, before the
file is downloaded, from the catalog's published architecture numbers (``models/catalog.yaml``).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from tara_desktop.llm.file_versions import PerFileVersion, version_of

if TYPE_CHECKING:
    from tara_desktop.llm.catalog import CatalogModel
    from tara_desktop.llm.gguf_info import GgufInfo

log = logging.getLogger(__name__)
T = TypeVar("T")

MB = 1024 * 1024
GB = 1024 * MB
CTX_PAD = 256  # llama.cpp rounds the context (KV cache size) up to a multiple of this
OVERHEAD_BYTES = 32 * MB
ACTIVATION_FACTOR = 8  # f32 activations per token beside the logits/scores, in multiples of n_embd
AUTO_BUDGET_FRACTION = 0.5  # llm.memory_budget_mb = 0: this share of the computer's memory
AUTO_BUDGET_MIN_MB = 1024

# Defaults for a catalog entry that lacks a number (conservative: a typical 7-8B llama).
_DEFAULT_VOCAB = 128_256
_DEFAULT_EMBD = 4096


# ----------------------------------------------------------------------------------------------- shape


@dataclass(frozen=True)
class ModelShape:
    """The numbers the estimate needs, from a GGUF header (``source="file"``) or the catalog."""

    weights_bytes: int
    n_layers: int | None
    n_embd: int | None
    n_head: int | None
    n_head_kv: int | None
    head_dim_k: int | None
    head_dim_v: int | None
    n_vocab: int | None
    n_ctx_train: int | None
    source: Literal["file", "catalog"] = "file"

    @property
    def is_text_model(self) -> bool:
        """Has the layer and embedding sizes a text model needs (llama.cpp cannot run it otherwise)."""
        return bool(self.n_layers and self.n_embd)


def shape_from_gguf(info: GgufInfo) -> ModelShape:
    return ModelShape(
        weights_bytes=info.size_bytes,
        n_layers=info.n_layers,
        n_embd=info.n_embd,
        n_head=info.n_head,
        n_head_kv=info.n_head_kv,
        head_dim_k=info.head_dim_k,
        head_dim_v=info.head_dim_v,
        n_vocab=info.vocab_size,
        n_ctx_train=info.context_length,
        source="file",
    )


_SHAPES: PerFileVersion[ModelShape] = PerFileVersion()


def shape_of_file(path: str | os.PathLike[str]) -> ModelShape:
    """The shape of a GGUF file on disk (parsed once per file version: size, modification time, inode).

    Raises :class:`~tara_desktop.llm.gguf_reader.InvalidGguf` for a file that is not a readable GGUF."""
    from tara_desktop.llm import gguf_file

    key = Path(path).expanduser().resolve()
    version = version_of(key)
    shape = _SHAPES.get(key, version)
    if shape is None:
        shape = shape_from_gguf(gguf_file.inspect(key))
        _SHAPES.put(key, version, shape)
    return shape


def remember(info: GgufInfo) -> None:
    """Cache the shape of a file just parsed elsewhere (the validator), so the load's estimate does not
    parse the header again."""
    key = info.path.expanduser().resolve()
    _SHAPES.put(key, version_of(key), shape_from_gguf(info))


def shape_from_catalog(entry: CatalogModel) -> ModelShape | None:
    """The shape from a catalog entry's published numbers; None when even its size is unknown."""
    weights = entry.weights_bytes()
    if not weights:
        return None
    n_head = entry.n_embd // entry.head_dim if entry.n_embd and entry.head_dim else None
    return ModelShape(
        weights_bytes=weights,
        n_layers=entry.n_layers,
        n_embd=entry.n_embd,
        n_head=n_head,
        n_head_kv=entry.n_head_kv,
        head_dim_k=entry.head_dim,
        head_dim_v=entry.head_dim,
        n_vocab=entry.n_vocab,
        n_ctx_train=entry.context_length,
        source="catalog",
    )


# ----------------------------------------------------------------------------------------------- estimate


def effective_context(requested: int, n_ctx_train: int | None) -> int:
    """The context llama.cpp is asked for: the setting, but never beyond what the model was trained on
    (past it a model only degrades)."""
    requested = max(1, int(requested))
    if n_ctx_train and 0 < n_ctx_train < requested:
        return int(n_ctx_train)
    return requested


def effective_batch(n_batch: int, n_ctx: int) -> int:
    return max(1, min(int(n_batch), int(n_ctx)))


def _pad(n: int, to: int) -> int:
    return (n + to - 1) // to * to


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a loaded model needs, by part, at ``n_ctx`` (already clamped) and ``n_batch``."""

    weights_bytes: int
    kv_cache_bytes: int
    compute_bytes: int
    overhead_bytes: int
    n_ctx: int
    n_batch: int
    source: Literal["file", "catalog"]
    complete: bool  # False when architecture numbers were missing and defaults stood in

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.compute_bytes + self.overhead_bytes

    @property
    def total_mb(self) -> float:
        return self.total_bytes / MB


def kv_cache_bytes(shape: ModelShape, n_ctx: int) -> int:
    """An f16 KV cache for ``n_ctx`` tokens (0 when the shape lacks the numbers)."""
    if not shape.n_layers or not shape.n_head_kv:
        return 0
    head = shape.n_embd // shape.n_head if shape.n_embd and shape.n_head else 0
    k = shape.head_dim_k or head
    v = shape.head_dim_v or head
    if not k or not v:
        return 0
    return shape.n_layers * n_ctx * shape.n_head_kv * (k + v) * 2


def estimate(shape: ModelShape, n_ctx: int, n_batch: int = 256) -> MemoryEstimate:
    """What ``shape`` needs with the ``llm.context_size`` / ``llm.batch_size`` settings ``n_ctx`` and
    ``n_batch`` (the context is clamped to the model's training context first, as the engine does)."""
    ctx = effective_context(n_ctx, shape.n_ctx_train)
    batch = effective_batch(n_batch, ctx)
    kv_ctx = _pad(ctx, CTX_PAD)
    complete = bool(shape.n_layers and shape.n_embd and shape.n_vocab and shape.n_head_kv)
    kv = kv_cache_bytes(shape, kv_ctx)
    if not kv and shape.n_layers is None:
        # no architecture numbers at all: assume a KV cache as large as a typical 8B llama's per token
        kv = 32 * kv_ctx * 8 * 256 * 2
    n_embd = shape.n_embd or _DEFAULT_EMBD
    n_vocab = shape.n_vocab or _DEFAULT_VOCAB
    n_head = shape.n_head or max(1, n_embd // 128)
    logits = n_vocab * batch * 4
    scores = kv_ctx * batch * n_head * 4 + kv_ctx * batch * 4  # KQ for every head + the mask
    activations = batch * n_embd * 4 * ACTIVATION_FACTOR
    return MemoryEstimate(
        weights_bytes=int(shape.weights_bytes),
        kv_cache_bytes=int(kv),
        compute_bytes=int(max(logits, scores) + activations),
        overhead_bytes=OVERHEAD_BYTES,
        n_ctx=ctx,
        n_batch=batch,
        source=shape.source,
        complete=complete,
    )


def estimate_file(path: str | os.PathLike[str], n_ctx: int, n_batch: int = 256) -> MemoryEstimate:
    """:func:`estimate` for a GGUF file on disk."""
    return estimate(shape_of_file(path), n_ctx, n_batch)


def estimate_catalog(entry: CatalogModel, n_ctx: int, n_batch: int = 256) -> MemoryEstimate | None:
    """:func:`estimate` for a catalog entry not on disk yet (None when its size is unknown)."""
    shape = shape_from_catalog(entry)
    return estimate(shape, n_ctx, n_batch) if shape is not None else None


# ----------------------------------------------------------------------------------------------- the computer


@dataclass(frozen=True)
class Machine:
    """This computer's memory (psutil) and the free disk where models are downloaded."""

    available_ram_bytes: int
    total_ram_bytes: int
    free_disk_bytes: int | None = None  # None: not known (no download to judge)

    @classmethod
    def now(cls, models_dir: Path | None = None) -> Machine:
        """Measured now; ``models_dir``: where downloads go (its disk's free space is measured)."""
        import psutil

        vm = psutil.virtual_memory()
        return cls(int(vm.available), int(vm.total), free_disk_bytes(models_dir) if models_dir else None)


def free_disk_bytes(folder: Path) -> int | None:
    """Free bytes on the disk that holds ``folder`` (or its nearest existing parent)."""
    p = Path(folder).expanduser()
    while not p.exists() and p.parent != p:
        p = p.parent
    try:
        return int(shutil.disk_usage(p).free)
    except OSError:
        return None


def available_memory_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def total_memory_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def budget_mb(setting_mb: float, total_ram_bytes: int | None = None) -> float:
    """The model memory budget in MB: ``llm.memory_budget_mb``, or with 0 (automatic) half of this
    computer's memory (at least 1 GB), which leaves room for the app, speech and the system."""
    if setting_mb and setting_mb > 0:
        return float(setting_mb)
    total = total_ram_bytes if total_ram_bytes is not None else total_memory_bytes()
    return max(float(AUTO_BUDGET_MIN_MB), total * AUTO_BUDGET_FRACTION / MB)


# ----------------------------------------------------------------------------------------------- fit

Verdict = Literal["fits", "over budget", "low memory", "won't fit", "no disk space", "unknown"]


def human(n_bytes: float) -> str:
    """1.5 GB / 730 MB: how sizes read in labels."""
    if n_bytes >= GB:
        return f"{n_bytes / GB:.1f} GB"
    return f"{n_bytes / MB:,.0f} MB"


@dataclass(frozen=True)
class Fit:
    """Whether a model fits: this computer (memory, and disk for a download) and, separately, the budget.

    ``label`` is the short text of the Models page's column; ``reason`` one sentence with the numbers and
    what to do. ``fits_computer`` ignores the budget; ``within_budget`` ignores the computer."""

    verdict: Verdict
    label: str
    reason: str
    need_bytes: int | None = None
    fits_computer: bool = False
    within_budget: bool = False
    budget_mb: float | None = None

    @property
    def loadable(self) -> bool:
        """The pool and the engine load it now at these settings."""
        return self.verdict == "fits"


def judge(
    need: MemoryEstimate | None,
    machine: Machine,
    *,
    budget_setting_mb: float,
    download_bytes: int | None = None,
) -> Fit:
    """The verdict for a model needing ``need`` on ``machine`` with the ``llm.memory_budget_mb`` setting
    (0 = automatic). ``download_bytes``: the file still has to be downloaded (checked against free disk).

    The order of the checks is the order of what a user can change: the computer's memory (nothing to do
    but choose a smaller model), its disk, what is free right now (close other programs), and last the
    budget (a setting)."""
    budget = budget_mb(budget_setting_mb, machine.total_ram_bytes)
    if need is None:
        return Fit("unknown", "unknown", "its size is not known", budget_mb=budget)
    n = need.total_bytes
    at = f"at a {need.n_ctx}-token context"
    within = n / MB <= budget
    if n > machine.total_ram_bytes:
        return Fit("won't fit", "won't fit this computer",
                   f"needs about {human(n)} {at}, more than this computer's {human(machine.total_ram_bytes)} of memory; "
                   "choose a smaller model or lower llm.context_size",
                   n, False, within, budget)
    if download_bytes is not None and machine.free_disk_bytes is not None and download_bytes > machine.free_disk_bytes:
        return Fit("no disk space", "not enough free disk",
                   f"the download is {human(download_bytes)} but only {human(machine.free_disk_bytes)} are free on the "
                   "disk of your models folder; free some space first",
                   n, False, within, budget)
    if n > machine.available_ram_bytes:
        return Fit("low memory", "fits this computer; not enough free memory now",
                   f"needs about {human(n)} {at} and {human(machine.available_ram_bytes)} are free now; "
                   "close other programs",
                   n, True, within, budget)
    if not within:
        setting = "automatic" if not budget_setting_mb or budget_setting_mb <= 0 else "your"
        return Fit("over budget", f"fits this computer; over {setting} {human(budget * MB)} memory budget",
                   f"needs about {human(n)} {at}: this computer has room, but the model memory budget is "
                   f"{human(budget * MB)}; raise it in Settings (llm.memory_budget_mb)",
                   n, True, False, budget)
    return Fit("fits", "fits", f"needs about {human(n)} {at}", n, True, True, budget)


def best_fit(candidates: Sequence[tuple[T, Fit]]) -> T | None:
    """The model to recommend for this computer: the largest one that fits its memory free now, its disk and
    the memory budget (so a recommended model is never refused when it answers)."""
    ok = [(fit.need_bytes or 0, i, item) for i, (item, fit) in enumerate(candidates) if fit.verdict == "fits"]
    if not ok:
        return None
    return max(ok, key=lambda t: (t[0], -t[1]))[2]


__all__ = [
    "Fit",
    "Machine",
    "MemoryEstimate",
    "ModelShape",
    "best_fit",
    "budget_mb",
    "effective_context",
    "estimate",
    "estimate_catalog",
    "estimate_file",
    "judge",
    "kv_cache_bytes",
    "remember",
    "shape_from_catalog",
    "shape_from_gguf",
    "shape_of_file",
]
