"""The shared parts of a GGUF export: which Hugging Face architectures map onto which llama.cpp ones,
reading a model's ``config.json`` and its weights (safetensors or PyTorch, one tensor at a time), and
streaming planned tensors into a ``gguf.GGUFWriter`` (header first, then data, fsynced), with progress and
cancel at every tensor. :mod:`gguf_full_export` and :mod:`gguf_lora_export` build on these.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState

if TYPE_CHECKING:
    from gguf import GGUFWriter, TensorNameMap

FileDtype = Literal["f32", "f16"]


@dataclass(frozen=True)
class ArchSpec:
    """How one Hugging Face architecture maps onto a llama.cpp architecture."""

    gguf_arch: str
    permute_qk: bool = False
    conv1d: bool = False  # GPT-2 stores linear weights as (in, out)


ARCHS: dict[str, ArchSpec] = {
    "LlamaForCausalLM": ArchSpec("llama", permute_qk=True),
    "MistralForCausalLM": ArchSpec("llama", permute_qk=True),
    "Qwen2ForCausalLM": ArchSpec("qwen2"),
    "Phi3ForCausalLM": ArchSpec("phi3"),
    "GPT2LMHeadModel": ArchSpec("gpt2", conv1d=True),
}
BY_GGUF_ARCH = {spec.gguf_arch: spec for spec in ARCHS.values()}


@dataclass
class ExportInfo:
    """What was written: where, what kind, how big, and a few facts worth showing the user."""

    path: Path
    kind: Literal["model", "adapter"]
    arch: str
    dtype: str
    tensors: int
    size_bytes: int
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------
# reading Hugging Face folders


def read_hparams(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise TaraError(f"{model_dir} has no config.json; choose a Hugging Face model folder or a trained adapter")
    try:
        hp = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TaraError(f"{path} cannot be read ({exc}); the model folder is damaged, copy it again") from None
    if not isinstance(hp, dict):
        raise TaraError(f"{path} is not a JSON object; the model folder is damaged, copy it again")
    if isinstance(hp.get("text_config"), dict):
        hp = {**hp, **hp["text_config"]}
    return hp


def arch_for(hp: dict[str, Any]) -> ArchSpec:
    names = hp.get("architectures") or []
    for name in names:
        if name in ARCHS:
            return ARCHS[name]
    got = ", ".join(names) or hp.get("model_type") or "unknown"
    supported = ", ".join(sorted(ARCHS))
    raise TaraError(f"the model architecture {got} is not supported for GGUF export; supported: {supported}")


def hparam(hp: dict[str, Any], *keys: str, default: Any = None) -> Any:
    """The first of ``keys`` set in ``config.json``, else ``default``; neither is a clear error."""
    for key in keys:
        if hp.get(key) is not None:
            return hp[key]
    if default is not None:
        return default
    raise TaraError(f"config.json lacks {' / '.join(keys)}; the model folder is incomplete, copy it again")


def rope_settings(hp: dict[str, Any]) -> dict[str, Any]:
    """Rope settings from either transformers 5's ``rope_parameters`` or the older ``rope_scaling``."""
    rope = dict(hp.get("rope_scaling") or {})
    rope.update(hp.get("rope_parameters") or {})
    if "rope_theta" not in rope and hp.get("rope_theta") is not None:
        rope["rope_theta"] = hp["rope_theta"]
    return rope


class TensorSource:
    """The tensors of a safetensors (or pytorch .bin) checkpoint, opened lazily, read one at a time."""

    def __init__(self, files: list[Path]) -> None:
        if not files:
            raise TaraError("no weights found (model.safetensors or pytorch_model.bin); copy the whole folder")
        self._where: dict[str, Path] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._bins: dict[Path, dict[str, Any]] = {}
        self._stack = contextlib.ExitStack()
        self._handles: dict[Path, Any] = {}
        for path in files:
            if path.suffix == ".safetensors":
                from safetensors import safe_open

                try:  # numpy reads f32/f16 without importing torch; bf16 needs torch
                    handle = self._stack.enter_context(safe_open(str(path), framework="numpy"))
                    if any(handle.get_slice(k).get_dtype() not in ("F32", "F16", "F64") for k in handle.keys()):
                        handle = self._stack.enter_context(safe_open(str(path), framework="pt"))
                except Exception as exc:
                    raise TaraError(f"{path} is not a readable safetensors file ({exc}); copy it again") from None
                self._handles[path] = handle
                for key in handle.keys():
                    self._where[key] = path
                    self._shapes[key] = tuple(handle.get_slice(key).get_shape())
            else:
                import torch

                try:
                    state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
                except Exception as exc:
                    raise TaraError(f"{path} cannot be read as PyTorch weights ({exc}); copy it again") from None
                self._bins[path] = state
                for key, value in state.items():
                    self._where[key] = path
                    self._shapes[key] = tuple(value.shape)

    @classmethod
    def for_folder(cls, folder: Path, stem: str) -> TensorSource:
        files = sorted(folder.glob(f"{stem}*.safetensors")) or sorted(folder.glob(f"{stem}*.bin"))
        if not files and stem == "model":
            files = sorted(folder.glob("pytorch_model*.bin"))
        return cls(files)

    def keys(self) -> list[str]:
        return list(self._where)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._shapes[name]

    def load(self, name: str) -> np.ndarray:
        path = self._where[name]
        tensor = self._handles[path].get_tensor(name) if path in self._handles else self._bins[path][name]
        if isinstance(tensor, np.ndarray):
            return tensor.astype(np.float32, copy=False)
        return tensor.float().numpy()

    def close(self) -> None:
        self._stack.close()
        self._bins.clear()


def permute_for_llama_cpp(w: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder the rows of a Q or K projection (or a LoRA B) from Hugging Face's rotary layout to llama.cpp's."""
    shape = w.shape
    return w.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


# ---------------------------------------------------------------------------------------------------------
# writing


def tensor_names(spec: ArchSpec, n_layer: int) -> TensorNameMap:
    """Hugging Face tensor names → llama.cpp's, for ``spec``'s architecture with ``n_layer`` blocks."""
    import gguf

    return gguf.get_tensor_name_map(arch_enum(spec.gguf_arch), n_layer)


def new_writer(spec: ArchSpec, kind: Literal["model", "adapter"], name: str, description: str | None = None) -> GGUFWriter:
    """A GGUF writer for a model or a LoRA adapter of ``spec``'s architecture, with the ``general.name``
    (and ``general.description``) keys every GGUF we write carries."""
    import gguf

    writer = gguf.GGUFWriter(path=None, arch=spec.gguf_arch)
    writer.add_type(gguf.GGUFType.MODEL if kind == "model" else gguf.GGUFType.ADAPTER)
    writer.add_name(name)
    if description:
        writer.add_description(description)
    return writer


def write_export(
    writer: GGUFWriter, kind: Literal["model", "adapter"], path: Path, plan: list[PlannedTensor], *, dtype: FileDtype,
    notes: list[str], state: JobState | None, progress: tuple[float, float],
) -> ExportInfo:
    """Finish the header (quantization version), stream the planned tensors to ``path`` and say what was written."""
    import gguf

    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    stream_tensors(writer, Path(path), plan, state, progress)
    return ExportInfo(Path(path), kind, writer.arch, dtype, len(plan), Path(path).stat().st_size, notes)


@dataclass
class PlannedTensor:
    """One tensor to write: its GGUF name, shape and dtype up front (for the header), its data on demand."""

    name: str
    shape: tuple[int, ...]  # numpy order
    dtype: Any
    load: Callable[[], np.ndarray]


def stream_tensors(writer: GGUFWriter, path: Path, plan: list[PlannedTensor], state: JobState | None, span: tuple[float, float]) -> None:
    """Write the header and then each planned tensor's data to ``path``, reporting progress within ``span``
    and honouring a cancel between tensors; the file is fsynced before the writer closes."""
    lo, hi = span
    for item in plan:
        nbytes = int(np.prod(item.shape)) * np.dtype(item.dtype).itemsize
        writer.add_tensor_info(item.name, item.shape, np.dtype(item.dtype), nbytes)
    writer.write_header_to_file(path=path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    try:
        for i, item in enumerate(plan):
            if state is not None:
                state.check()
                state.report(lo + (hi - lo) * i / max(1, len(plan)), f"writing {item.name}")
            data = np.ascontiguousarray(item.load().astype(item.dtype, copy=False))
            if data.shape != item.shape:
                raise TaraError(f"tensor {item.name} has shape {data.shape}, expected {item.shape}; the checkpoint is inconsistent")
            writer.write_tensor_data(data)
        writer.flush()
        assert writer.fout is not None
        for fh in writer.fout:
            os.fsync(fh.fileno())
    finally:
        writer.close()


def arch_enum(gguf_arch: str) -> Any:
    """The ``gguf.MODEL_ARCH`` member for a llama.cpp architecture name."""
    import gguf

    for enum, arch_name in gguf.MODEL_ARCH_NAMES.items():
        if arch_name == gguf_arch:
            return enum
    raise TaraError(f"gguf does not know the architecture {gguf_arch!r}")
