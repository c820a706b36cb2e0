"""Opening a GGUF in llama.cpp: validate the file, check that it fits in the free memory
(:mod:`tara_desktop.llm.memory`: weights + KV cache at the context actually used + compute buffers), then
load it memory-mapped with llama.cpp's own logging silenced. Every failure is one clear
:class:`~tara_desktop.llm.model_check.ModelLoadError` line.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tara_desktop.llm import memory
from tara_desktop.llm.llama_logs import quiet_llama_logs
from tara_desktop.llm.model_check import ModelLoadError, validate_gguf

if TYPE_CHECKING:
    from llama_cpp import Llama

    from tara_desktop.jobs import JobState

log = logging.getLogger(__name__)


def physical_cores() -> int:
    """The computer's physical cores (llama.cpp runs best with one thread per core)."""
    try:
        import psutil

        return max(1, int(psutil.cpu_count(logical=False) or os.cpu_count() or 1))
    except Exception:
        return max(1, os.cpu_count() or 1)


def _ensure_std_fds() -> None:
    """llama-cpp-python silences loading by duplicating file descriptors 1 and 2; in a windowed app
    (pythonw, a frozen GUI on Windows) they may not exist, which would make every load fail. Point
    missing ones at the null device."""
    for fd in (1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


@dataclass(frozen=True)
class OpenedModel:
    """A model llama.cpp has loaded, with the settings it really runs at (context clamped to what the model
    was trained on) and the memory they need."""

    llm: Llama
    path: Path
    n_ctx: int
    n_threads: int
    n_batch: int
    memory_mb: float


def open_model(
    path: str | os.PathLike[str],
    *,
    n_ctx: int,
    n_threads: int,
    n_batch: int,
    state: JobState | None = None,
    available_mb: float | None = None,
    validated: bool = False,
) -> OpenedModel:
    """Validate, check the memory need, and load ``path``. ``n_threads=0`` uses the physical cores.
    ``available_mb`` overrides the measured free memory; ``validated`` skips the file validation when the
    caller (the pool) just did it."""
    p = Path(path).expanduser()
    if state is not None:
        state.report(0.0, f"checking {p.name}")
        state.check()
    if not p.is_file():
        raise ModelLoadError(f"model file {p} does not exist; check the path or run `tara models list`")
    if not validated:
        validate_gguf(p)
    shape = memory.shape_of_file(p)
    if not shape.is_text_model:
        raise ModelLoadError(
            f"model {p.name} has no layer/embedding sizes in its metadata; it is not a text model TARA can run"
        )
    estimate = memory.estimate(shape, n_ctx, n_batch)
    if estimate.n_ctx < n_ctx:  # beyond what it was trained on a model only degrades
        log.info("%s was trained on %d tokens of context; using that", p.name, estimate.n_ctx)
    n_ctx, n_batch = estimate.n_ctx, estimate.n_batch
    need = estimate.total_mb
    free = memory.available_memory_bytes() / memory.MB if available_mb is None else available_mb
    if need > free:
        raise ModelLoadError(
            f"model {p.name} needs about {need:,.0f} MB at a {n_ctx}-token context but only {free:,.0f} MB "
            "are available; close other programs, lower llm.context_size, or choose a smaller model"
        )
    threads = n_threads if n_threads > 0 else physical_cores()
    if state is not None:
        state.report(0.1, f"loading {p.name}")
        state.check()
    import llama_cpp

    quiet_llama_logs()
    _ensure_std_fds()
    try:
        llm = llama_cpp.Llama(
            model_path=str(p),
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_ubatch=n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            use_mmap=True,
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        log.info("llama.cpp refused %s: %s", p.name, type(exc).__name__)
        raise ModelLoadError(
            f"llama.cpp could not load {p.name} (unsupported architecture, damaged file or not enough memory); "
            "run `tara gguf validate` on it or choose another model"
        ) from None
    return OpenedModel(llm, p, n_ctx, threads, n_batch, need)


__all__ = ["OpenedModel", "open_model", "physical_cores"]
