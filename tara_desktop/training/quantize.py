"""Quantize a full-model GGUF through llama.cpp, and measure what each quantization costs.

- :func:`quantize` runs ``llama_model_quantize`` (Q4_K_M, Q5_K_M, Q8_0, Q2_K) and then reads the output's
  tensor types back: K-quants need rows divisible by 256 and Q8_0 by 32, and llama.cpp silently falls
  back to another type for tensors that do not fit. Those tensors are listed in the report.
- :func:`perplexity` evaluates a GGUF (optionally with a LoRA adapter) on held-out text with
  llama-cpp-python (``logits_all=True``): exp of the mean negative log-likelihood of each next token.
- :func:`compare_quantizations` builds the table a user sees before choosing: file size and validation
  perplexity for the unquantized model and every quantization asked for.

llama.cpp offers no progress callback or cancel inside one quantization; progress is reported between
steps and a cancel takes effect at the next step.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState

log = logging.getLogger(__name__)

# name → (llama_cpp ftype constant, the tensor types a 2-D weight may get without it being a fallback)
_K_TYPES = frozenset({"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"})
QUANTS: dict[str, tuple[str, frozenset[str]]] = {
    "Q4_K_M": ("LLAMA_FTYPE_MOSTLY_Q4_K_M", _K_TYPES),
    "Q5_K_M": ("LLAMA_FTYPE_MOSTLY_Q5_K_M", _K_TYPES),
    "Q8_0": ("LLAMA_FTYPE_MOSTLY_Q8_0", frozenset({"Q8_0"})),
    "Q2_K": ("LLAMA_FTYPE_MOSTLY_Q2_K", _K_TYPES),
}
DEFAULT_QUANT = "Q4_K_M"


def check_quant(name: str) -> str:
    """The canonical quantization name, or a TaraError listing the choices."""
    canonical = name.strip().upper()
    if canonical not in QUANTS:
        raise TaraError(f"unknown quantization {name!r}; choose one of {', '.join(QUANTS)}")
    return canonical


@dataclass
class QuantReport:
    """One quantized file: its size, how long it took, and which tensors did not get the requested type."""

    quant: str
    path: Path
    size_bytes: int
    seconds: float
    type_counts: dict[str, int]
    fallbacks: list[tuple[str, str]] = field(default_factory=list)  # (tensor name, type it got)

    def fallback_summary(self) -> str:
        if not self.fallbacks:
            return ""
        kinds = Counter(t for _, t in self.fallbacks)
        got = ", ".join(f"{n} to {t}" for t, n in sorted(kinds.items()))
        return (
            f"{len(self.fallbacks)} tensor(s) fell back from {self.quant} ({got}): their rows are not a multiple "
            f"of the block size ({256 if self.quant != 'Q8_0' else 32})"
        )


def tensor_types(path: Path) -> list[tuple[str, str, int]]:
    """(name, type name, number of dimensions) of every tensor in a GGUF."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    return [(t.name, t.tensor_type.name, len(t.shape)) for t in reader.tensors]


def find_fallbacks(path: Path, quant: str) -> list[tuple[str, str]]:
    """2-D weights of a quantized GGUF whose type is not one ``quant`` produces (llama.cpp fell back)."""
    expected = QUANTS[check_quant(quant)][1]
    return [(name, kind) for name, kind, ndim in tensor_types(path) if ndim >= 2 and kind not in expected]


def _run_quantize(src: Path, dst: Path, ftype: int, threads: int) -> int:
    import llama_cpp

    from tara_desktop.llm.llama_logs import quiet_llama_logs

    quiet_llama_logs()  # llama.cpp prints a line per tensor otherwise
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    return int(llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)))


def quantize(src: Path, dst: Path, quant: str, *, threads: int = 0, state: JobState | None = None) -> QuantReport:
    """Quantize the f16/f32 GGUF ``src`` into ``dst`` (not atomic: callers write to a partial path)."""
    import llama_cpp

    quant = check_quant(quant)
    ftype = int(getattr(llama_cpp, QUANTS[quant][0]))
    threads = threads or min(4, os.cpu_count() or 1)
    if state is not None:
        state.check()
        state.report(None, f"quantizing to {quant}")
    result: list[int] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            result.append(_run_quantize(src, dst, ftype, threads))
        except BaseException as exc:  # reported in the calling thread
            failure.append(exc)

    start = time.perf_counter()
    worker = threading.Thread(target=work, name=f"quantize-{quant}", daemon=True)
    worker.start()
    while worker.is_alive():  # keep reporting while llama.cpp works (it has no progress callback)
        worker.join(0.25)
        if state is not None:
            state.report(None, f"quantizing to {quant} ({time.perf_counter() - start:.0f} s)")
    if failure:
        raise failure[0]
    if not result or result[0] != 0 or not dst.is_file():
        raise TaraError(f"llama.cpp could not quantize {src.name} to {quant}; the input must be an f16 or f32 GGUF model")
    counts = Counter(kind for _, kind, _ in tensor_types(dst))
    report = QuantReport(quant, dst, dst.stat().st_size, time.perf_counter() - start, dict(counts), find_fallbacks(dst, quant))
    if report.fallbacks:
        log.info("%s", report.fallback_summary())
    if state is not None:
        state.check()
    return report


# ---------------------------------------------------------------------------------------------------------
# perplexity


def _log_softmax_nll(logits: np.ndarray, targets: np.ndarray) -> float:
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float((log_norm - z[np.arange(len(targets)), targets]).sum())


def perplexity(
    model_path: Path,
    text: str,
    *,
    adapter: Path | None = None,
    adapter_scale: float = 1.0,
    n_ctx: int = 256,
    max_tokens: int = 4096,
    threads: int = 0,
    state: JobState | None = None,
) -> float:
    """Perplexity of ``text`` under a GGUF model (plus an optional GGUF LoRA adapter), in llama.cpp.

    The text is cut into windows of ``n_ctx`` tokens, each starting with BOS when the model uses one;
    every token after the first of a window is scored. At most ``max_tokens`` tokens are used.
    """
    import llama_cpp

    from tara_desktop.llm.llama_logs import quiet_llama_logs

    quiet_llama_logs()
    llm = llama_cpp.Llama(
        model_path=str(model_path), n_ctx=n_ctx, n_batch=n_ctx, logits_all=True,
        n_threads=threads or min(4, os.cpu_count() or 1), verbose=False,
    )
    lora = None
    try:
        if adapter is not None:
            lora = llama_cpp.llama_adapter_lora_init(llm.model, str(adapter).encode())
            if not lora:
                raise TaraError(f"llama.cpp refuses the adapter {adapter.name} for {Path(model_path).name}; use the base it was trained on")
            arr = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(lora)
            llama_cpp.llama_set_adapters_lora(llm.ctx, arr, 1, (ctypes.c_float * 1)(adapter_scale))
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)[:max_tokens]
        bos = llm.token_bos()
        use_bos = bos >= 0 and llm.metadata.get("tokenizer.ggml.add_bos_token", "true") != "false"
        window = n_ctx - (1 if use_bos else 0)
        if len(tokens) < 2:
            raise TaraError("the validation text is too short to measure perplexity; give a few sentences")
        total, count = 0.0, 0
        for start in range(0, len(tokens), window):
            if state is not None:
                state.check()
            chunk = ([bos] if use_bos else []) + tokens[start : start + window]
            if len(chunk) < 2:
                break
            llm.reset()
            llm.eval(chunk)
            logits = np.asarray(llm.scores[: len(chunk) - 1])
            first = 1 if use_bos else 0  # do not score the first real token from BOS alone
            total += _log_softmax_nll(logits[first:], np.asarray(chunk[first + 1 :]))
            count += len(chunk) - 1 - first
        return math.exp(total / max(1, count))
    finally:
        if lora:
            with contextlib.suppress(Exception):
                llama_cpp.llama_set_adapters_lora(llm.ctx, None, 0, None)
                llama_cpp.llama_adapter_lora_free(lora)
        llm.close()


# ---------------------------------------------------------------------------------------------------------
# comparison table


@dataclass
class QuantRow:
    """One line of the size/perplexity table."""

    label: str
    size_bytes: int
    perplexity: float
    seconds: float = 0.0
    fallbacks: int = 0


def compare_quantizations(
    reference: Path,
    quants: list[str],
    text: str,
    workdir: Path,
    *,
    reference_label: str = "F16",
    keep: dict[str, Path] | None = None,
    max_tokens: int = 4096,
    state: JobState | None = None,
) -> tuple[list[QuantRow], dict[str, QuantReport]]:
    """Quantize ``reference`` to each of ``quants`` inside ``workdir`` and measure size and perplexity.

    Returns the table (reference first) and the reports. Files named in ``keep`` (quant → path) are
    written there instead of ``workdir`` and left for the caller; the others are deleted.
    """
    keep = keep or {}
    steps = 1 + 2 * len(quants)
    done = 0

    def step(message: str) -> None:
        nonlocal done
        if state is not None:
            state.check()
            state.report(done / steps, message)
        done += 1

    step(f"measuring {reference_label} perplexity")
    rows = [QuantRow(reference_label, reference.stat().st_size, perplexity(reference, text, max_tokens=max_tokens, state=state))]
    reports: dict[str, QuantReport] = {}
    for name in quants:
        quant = check_quant(name)
        dst = keep.get(quant, workdir / f"{reference.stem}.{quant}.gguf")
        step(f"quantizing to {quant}")
        report = quantize(reference, dst, quant, state=state)
        reports[quant] = report
        step(f"measuring {quant} perplexity")
        try:
            ppl = perplexity(dst, text, max_tokens=max_tokens, state=state)
        finally:
            if quant not in keep:
                dst.unlink(missing_ok=True)
        rows.append(QuantRow(quant, report.size_bytes, ppl, report.seconds, len(report.fallbacks)))
    if state is not None:
        state.report(1.0, "comparison done")
    return rows, reports


def format_table(rows: list[QuantRow], heading: str = "quantization") -> str:
    """The table as plain text: quantization (or ``heading``), size, perplexity, change against the first row."""
    base = rows[0].perplexity if rows else float("nan")
    lines = [f"{heading:<13}{'size':>11}{'perplexity':>12}{'vs ' + rows[0].label if rows else '':>10}  note"]
    for row in rows:
        size = f"{row.size_bytes / 1e6:.2f} MB" if row.size_bytes < 1e9 else f"{row.size_bytes / 1e9:.2f} GB"
        change = f"{(row.perplexity / base - 1) * 100:+.1f}%" if row is not rows[0] else "-"
        note = f"{row.fallbacks} tensors fell back" if row.fallbacks else ""
        lines.append(f"{row.label:<13}{size:>11}{row.perplexity:>12.3f}{change:>10}  {note}".rstrip())
    return "\n".join(lines)
