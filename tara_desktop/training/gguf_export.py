"""Hugging Face models and PEFT LoRA adapters → GGUF files llama.cpp runs, written with the ``gguf`` package.

Supported families (llama.cpp's ``convert_hf_to_gguf.py`` / ``convert_lora_to_gguf.py`` are the reference):

- ``LlamaForCausalLM`` (Llama 3.x, and Mistral) → ``llama``; Q and K rows are permuted from Hugging Face's
  rotary layout (two halves) to llama.cpp's (interleaved pairs), for full weights and, in an adapter,
  for the rows of ``lora_B``;
- ``Qwen2ForCausalLM`` → ``qwen2`` and ``Phi3ForCausalLM`` → ``phi3`` (llama.cpp rotates these in the
  Hugging Face layout: no permutation);
- ``GPT2LMHeadModel`` (GPT-2, DialoGPT) → ``gpt2``; its ``Conv1D`` weights are stored transposed and are
  turned back into ``(out, in)`` matrices.

Tensor names go through ``gguf.get_tensor_name_map``. Full models are written as f32 or f16 (1-D tensors
and norms stay f32); quantization is :mod:`tara_desktop.training.quantize`'s job. Tensors are streamed one
at a time (header first, then data), so memory stays near the size of the largest tensor, and every
tensor is a point where progress is reported and a cancel takes effect.

Every public writer is atomic: it writes ``.<name>.<pid>.tara-partial`` beside the target, validates the
file (``tara_desktop.llm.gguf_file.validate``, then a real load in llama.cpp), and only then moves it into
place (:func:`tara_desktop.files.atomic_file`: fsync, ``os.replace``, fsync of the folder). A cancelled or
killed export leaves nothing at the final path; the stale partial file of a killed export is removed by
the next export to the same place.

The work is split by idea: :mod:`~tara_desktop.training.gguf_tensors` (architectures, reading weights,
streaming tensors), :mod:`~tara_desktop.training.gguf_full_export` (full models, merging) and
:mod:`~tara_desktop.training.gguf_lora_export` (adapters). This module holds the atomic output and the
validation, and keeps the public names of all three importable from here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tara_desktop.errors import TaraError
from tara_desktop.files import atomic_file
from tara_desktop.llm import gguf_file
from tara_desktop.llm.llama_logs import quiet_llama_logs
from tara_desktop.training.gguf_full_export import merge_adapter, write_model_gguf
from tara_desktop.training.gguf_lora_export import (
    BaseModelInfo,
    base_info,
    read_adapter_config,
    write_adapter_gguf,
)
from tara_desktop.training.gguf_tensors import (
    ARCHS,
    ArchSpec,
    ExportInfo,
    FileDtype,
    arch_for,
    permute_for_llama_cpp,
    read_hparams,
)

__all__ = [
    "ARCHS",
    "PARTIAL_SUFFIX",
    "WORKDIR_PREFIX",
    "ArchSpec",
    "BaseModelInfo",
    "ExportInfo",
    "FileDtype",
    "arch_for",
    "atomic_output",
    "base_info",
    "make_workdir",
    "merge_adapter",
    "permute_for_llama_cpp",
    "read_adapter_config",
    "read_hparams",
    "remove_stale_partials",
    "validate_adapter",
    "validate_model",
    "write_adapter_gguf",
    "write_model_gguf",
]

PARTIAL_SUFFIX = ".tara-partial"


def _partial_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.{os.getpid()}{PARTIAL_SUFFIX}")


WORKDIR_PREFIX = ".tara-export-"


def _alive(pid_text: str) -> bool:
    import psutil

    if not pid_text.isdigit():
        return False
    return int(pid_text) == os.getpid() or psutil.pid_exists(int(pid_text))


def make_workdir(folder: Path) -> Path:
    """A scratch folder for one export's intermediate files (same disk as the output), named by our pid."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-", dir=folder))


def remove_stale_partials(out: Path) -> int:
    """Delete partial files and scratch folders left beside ``out`` by exports that were killed."""
    import shutil

    removed = 0
    for stale in out.parent.glob(f".{out.name}.*{PARTIAL_SUFFIX}"):
        if _alive(stale.name[len(out.name) + 2 : -len(PARTIAL_SUFFIX)]):
            continue
        with contextlib.suppress(OSError):
            stale.unlink()
            removed += 1
    for stale in out.parent.glob(f"{WORKDIR_PREFIX}*"):
        if stale.is_dir() and not _alive(stale.name[len(WORKDIR_PREFIX) :].split("-")[0]):
            shutil.rmtree(stale, ignore_errors=True)
            removed += 1
    return removed


@contextlib.contextmanager
def atomic_output(out: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a partial path beside ``out``; on a clean exit it is fsynced and moved to ``out``.

    On any exception (a cancel, a failed validation) the partial file is removed and ``out`` is untouched.
    ``out`` existing is an error unless ``overwrite``: the old file then stays in place until the new one
    has been validated.
    """
    out = Path(out)
    if out.is_dir():
        raise TaraError(f"{out} is a folder; give a file name ending in .gguf")
    if out.exists() and not overwrite:
        raise TaraError(f"{out} already exists; choose another name or pass --force to replace it")
    if not out.parent.is_dir():
        raise TaraError(f"the folder {out.parent} does not exist; create it or choose another place")
    remove_stale_partials(out)
    with atomic_file(out, temp=_partial_path(out)) as partial:
        yield partial


def validate_model(path: Path) -> None:
    """Check a written model GGUF: the structural validator, then a real load and one token in llama.cpp."""
    gguf_file.validate(path)
    quiet_llama_logs()
    from llama_cpp import Llama

    try:
        llm = Llama(model_path=str(path), n_ctx=64, n_batch=64, n_threads=1, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise TaraError(f"llama.cpp cannot load the exported model ({exc}); this is a bug in the export, please report it") from None
    try:
        tokens = llm.tokenize(b"Hello", add_bos=True, special=False)[:8] or [0]
        llm.eval(tokens)
        import llama_cpp

        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
        if not np.all(np.isfinite(logits)):
            raise TaraError("the exported model produces invalid numbers (NaN/inf); the source weights are damaged")
    finally:
        llm.close()


def validate_adapter(path: Path, base_gguf: Path | None) -> None:
    """Check a written adapter: its structure, and, when the base GGUF is known, that llama.cpp applies it."""
    import gguf

    gguf_file.validate(path)
    reader = gguf.GGUFReader(str(path))
    kind = reader.fields.get("general.type")
    if kind is None or kind.contents() != "adapter":
        raise TaraError(f"{path} was not written as an adapter; this is a bug in the export, please report it")
    names = {t.name for t in reader.tensors}
    for name in names:
        if name.endswith(".lora_a") and name[:-1] + "b" not in names:
            raise TaraError(f"{path} lacks the B half of {name}; this is a bug in the export, please report it")
    if base_gguf is None:
        return
    import llama_cpp

    quiet_llama_logs()
    llm = llama_cpp.Llama(model_path=str(base_gguf), n_ctx=64, n_threads=1, verbose=False)
    try:
        adapter = llama_cpp.llama_adapter_lora_init(llm.model, str(path).encode())
        if not adapter:
            raise TaraError(
                f"llama.cpp refuses the adapter for the base {base_gguf.name}; the adapter was trained on another base model"
            )
        llama_cpp.llama_adapter_lora_free(adapter)
    finally:
        llm.close()
