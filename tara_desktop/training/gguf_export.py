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
file (``tara_desktop.llm.gguf_file.validate`` when present, then a real load in llama.cpp), and only then
moves it into place with ``os.replace``. A cancelled or killed export leaves nothing at the final path;
the stale partial file of a killed export is removed by the next export to the same place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.llm.llama_logs import quiet_llama_logs

log = logging.getLogger(__name__)

FileDtype = Literal["f32", "f16"]
PARTIAL_SUFFIX = ".tara-partial"
DEMO_NOTICE = "TARA demo model"


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
_BY_GGUF_ARCH = {spec.gguf_arch: spec for spec in ARCHS.values()}
_SKIP_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")
_CONV1D_SUFFIXES = (".c_attn.weight", ".c_proj.weight", ".c_fc.weight")


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


def _find(hp: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if hp.get(key) is not None:
            return hp[key]
    if default is not None:
        return default
    raise TaraError(f"config.json lacks {' / '.join(keys)}; the model folder is incomplete, copy it again")


def _rope(hp: dict[str, Any]) -> dict[str, Any]:
    """Rope settings from either transformers 5's ``rope_parameters`` or the older ``rope_scaling``."""
    rope = dict(hp.get("rope_scaling") or {})
    rope.update(hp.get("rope_parameters") or {})
    if "rope_theta" not in rope and hp.get("rope_theta") is not None:
        rope["rope_theta"] = hp["rope_theta"]
    return rope


class _TensorSource:
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
    def for_folder(cls, folder: Path, stem: str) -> _TensorSource:
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
# hyperparameters


def _add_hparams(writer: Any, spec: ArchSpec, hp: dict[str, Any], n_layer: int, ftype: int) -> None:
    import gguf

    writer.add_block_count(n_layer)
    writer.add_file_type(ftype)
    if spec.gguf_arch == "gpt2":
        n_embd = _find(hp, "n_embd", "hidden_size")
        writer.add_context_length(_find(hp, "n_positions", "n_ctx", "max_position_embeddings"))
        writer.add_embedding_length(n_embd)
        writer.add_feed_forward_length(_find(hp, "n_inner", default=4 * n_embd))
        writer.add_head_count(_find(hp, "n_head", "num_attention_heads"))
        writer.add_layer_norm_eps(_find(hp, "layer_norm_epsilon", default=1e-5))
        return
    n_embd = _find(hp, "hidden_size")
    n_head = _find(hp, "num_attention_heads")
    head_dim = hp.get("head_dim") or n_embd // n_head
    rope = _rope(hp)
    writer.add_vocab_size(_find(hp, "vocab_size"))
    writer.add_context_length(_find(hp, "max_position_embeddings", default=2048))
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(_find(hp, "intermediate_size"))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(_find(hp, "num_key_value_heads", default=n_head))
    writer.add_layer_norm_rms_eps(_find(hp, "rms_norm_eps", default=1e-6))
    writer.add_rope_freq_base(float(rope.get("rope_theta", 10000.0)))
    if head_dim != n_embd // n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    rope_type = str(rope.get("rope_type", rope.get("type", "default"))).lower()
    if spec.gguf_arch == "phi3":
        rope_dims = int(float(hp.get("partial_rotary_factor", 1.0)) * n_embd) // n_head
        writer.add_rope_dimension_count(rope_dims)
        orig = hp.get("original_max_position_embeddings") or hp.get("max_position_embeddings") or 4096
        writer.add_rope_scaling_orig_ctx_len(int(orig))
        writer.add_sliding_window(int(hp.get("sliding_window") or 0))
        if rope_type in ("su", "longrope"):
            scale = (hp.get("max_position_embeddings") or orig) / orig
            if scale > 1.0:
                writer.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(orig)))
        return
    writer.add_rope_dimension_count(head_dim)
    if rope_type == "linear" and rope.get("factor"):
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    elif rope_type == "yarn" and rope.get("factor"):
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(rope["factor"]))
        if rope.get("original_max_position_embeddings"):
            writer.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))
    elif rope_type not in ("default", "llama3", "none"):
        raise TaraError(f"rope scaling {rope_type!r} is not supported for GGUF export; export an unscaled model")


def _extra_tensors(spec: ArchSpec, hp: dict[str, Any]) -> dict[str, np.ndarray]:
    """Tensors llama.cpp needs that are not in the checkpoint (Llama 3.1+ rope frequency factors, Phi-3 long rope)."""
    rope = _rope(hp)
    rope_type = str(rope.get("rope_type", rope.get("type", "default"))).lower()
    out: dict[str, np.ndarray] = {}
    if spec.gguf_arch == "llama" and rope_type == "llama3":
        base = float(rope.get("rope_theta", 10000.0))
        dim = hp.get("head_dim") or hp["hidden_size"] // hp["num_attention_heads"]
        freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
        factor = float(rope.get("factor", 8.0))
        low, high = float(rope.get("low_freq_factor", 1.0)), float(rope.get("high_freq_factor", 4.0))
        old_ctx = float(rope.get("original_max_position_embeddings", 8192))
        factors = []
        for freq in freqs:
            wavelen = 2 * math.pi / freq
            if wavelen < old_ctx / high:
                factors.append(1.0)
            elif wavelen > old_ctx / low:
                factors.append(factor)
            else:
                smooth = (old_ctx / wavelen - low) / (high - low)
                factors.append(1 / ((1 - smooth) / factor + smooth))
        out["rope_freqs.weight"] = np.asarray(factors, dtype=np.float32)
    if spec.gguf_arch == "phi3" and rope_type in ("su", "longrope"):
        out["rope_factors_long.weight"] = np.asarray(rope["long_factor"], dtype=np.float32)
        out["rope_factors_short.weight"] = np.asarray(rope["short_factor"], dtype=np.float32)
    return out


def _add_general(writer: Any, name: str, description: str | None) -> None:
    writer.add_name(name)
    if description:
        writer.add_description(description)


# ---------------------------------------------------------------------------------------------------------
# streaming writer


@dataclass
class _Planned:
    name: str
    shape: tuple[int, ...]  # numpy order
    dtype: Any
    load: Callable[[], np.ndarray]


def _stream(writer: Any, path: Path, plan: list[_Planned], state: JobState | None, span: tuple[float, float]) -> None:
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


def _out_dtype(name: str, ndim: int, dtype: FileDtype) -> Any:
    if dtype == "f32" or ndim <= 1 or not name.endswith(".weight") or name.endswith("_norm.weight"):
        return np.float32
    if name.startswith("position_embd"):
        return np.float32
    return np.float16


def write_model_gguf(
    model_dir: Path,
    path: Path,
    *,
    dtype: FileDtype = "f16",
    name: str | None = None,
    description: str | None = None,
    tokenizer_from: Path | None = None,
    state: JobState | None = None,
    progress: tuple[float, float] = (0.0, 1.0),
) -> ExportInfo:
    """Convert the Hugging Face model folder ``model_dir`` into a GGUF written at ``path`` (not atomic).

    ``tokenizer_from`` copies the tokenizer metadata from an existing GGUF (used when the model was
    loaded from a GGUF for training and merged) instead of converting ``tokenizer.json``.
    """
    import gguf

    model_dir = Path(model_dir)
    hp = read_hparams(model_dir)
    spec = arch_for(hp)
    n_layer = int(_find(hp, "num_hidden_layers", "n_layer", "num_layers"))
    tmap = gguf.get_tensor_name_map(_arch_enum(spec.gguf_arch), n_layer)
    source = _TensorSource.for_folder(model_dir, "model")
    notes: list[str] = []
    try:
        n_head = int(_find(hp, "num_attention_heads", "n_head"))
        n_head_kv = int(hp.get("num_key_value_heads") or n_head)
        plan: list[_Planned] = []
        for key, value in _extra_tensors(spec, hp).items():

            def constant(v: np.ndarray = value) -> np.ndarray:
                return v

            plan.append(_Planned(key, value.shape, np.float32, constant))
        for key in source.keys():
            if key.endswith(_SKIP_SUFFIXES):
                continue
            out_name = tmap.get_name(key, try_suffixes=(".weight", ".bias"))
            if out_name is None:
                raise TaraError(f"tensor {key} of this {spec.gguf_arch} model has no GGUF name; the model has parts TARA cannot convert")
            shape = source.shape(key)
            transform: Callable[[np.ndarray], np.ndarray] | None = None
            if spec.conv1d and key.endswith(_CONV1D_SUFFIXES):
                shape = tuple(reversed(shape))
                transform = np.transpose
            elif spec.permute_qk and key.endswith(("q_proj.weight", "q_proj.bias")):
                transform = lambda w: permute_for_llama_cpp(w, n_head)  # noqa: E731
            elif spec.permute_qk and key.endswith(("k_proj.weight", "k_proj.bias")):
                transform = lambda w: permute_for_llama_cpp(w, n_head_kv)  # noqa: E731

            def load(k: str = key, t: Callable[[np.ndarray], np.ndarray] | None = transform) -> np.ndarray:
                data = source.load(k)
                return t(data) if t is not None else data

            plan.append(_Planned(out_name, shape, _out_dtype(out_name, len(shape), dtype), load))
        if not any(p.name == "output.weight" for p in plan):
            notes.append("output shares the token embeddings (tied weights)")
        ftype = gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16
        writer = gguf.GGUFWriter(path=None, arch=spec.gguf_arch)
        writer.add_type(gguf.GGUFType.MODEL)
        _add_general(writer, name or model_dir.name, description)
        _add_hparams(writer, spec, hp, n_layer, int(ftype))
        if tokenizer_from is not None:
            _copy_tokenizer(writer, tokenizer_from)
        else:
            from tara_desktop.training.gguf_vocab import add_tokenizer

            tok = add_tokenizer(writer, model_dir, int(_find(hp, "vocab_size")))
            notes.append(f"tokenizer {tok['model']}/{tok['pre']}, {tok['n_tokens']} tokens")
            if not tok["chat_template"]:
                notes.append("no chat template: the app uses a default one")
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        _stream(writer, Path(path), plan, state, progress)
    finally:
        source.close()
    return ExportInfo(Path(path), "model", spec.gguf_arch, dtype, len(plan), Path(path).stat().st_size, notes)


def _arch_enum(gguf_arch: str) -> Any:
    import gguf

    for enum, arch_name in gguf.MODEL_ARCH_NAMES.items():
        if arch_name == gguf_arch:
            return enum
    raise TaraError(f"gguf does not know the architecture {gguf_arch!r}")


def _copy_tokenizer(writer: Any, gguf_path: Path) -> None:
    """Copy every ``tokenizer.*`` key of an existing GGUF into ``writer``."""
    import gguf

    reader = gguf.GGUFReader(str(gguf_path))
    for key, fld in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = fld.types[0]
        value = fld.contents()
        if vtype == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, value, vtype, sub_type=fld.types[-1])
        else:
            writer.add_key_value(key, value, vtype)


# ---------------------------------------------------------------------------------------------------------
# LoRA adapters


@dataclass(frozen=True)
class BaseModelInfo:
    """What an adapter export needs to know about its base: architecture, heads, layers, and where it is."""

    spec: ArchSpec
    n_head: int
    n_head_kv: int
    n_layer: int
    tied_output: bool
    hf_dir: Path | None = None
    gguf_path: Path | None = None


def base_info(base: Path) -> BaseModelInfo:
    """Read a base model, given as a Hugging Face folder or a GGUF file."""
    base = Path(base)
    if base.is_file():
        import gguf

        try:
            reader = gguf.GGUFReader(str(base))
            arch = reader.fields["general.architecture"].contents()
            n_head = int(reader.fields[f"{arch}.attention.head_count"].contents())
            kv_field = reader.fields.get(f"{arch}.attention.head_count_kv")
            n_layer = int(reader.fields[f"{arch}.block_count"].contents())
        except (KeyError, ValueError, OSError) as exc:
            raise TaraError(f"{base} is not a readable GGUF model ({exc}); check the base model path") from None
        if arch not in _BY_GGUF_ARCH:
            raise TaraError(f"the base model's architecture {arch!r} is not supported for adapter export")
        n_head_kv = int(kv_field.contents()) if kv_field is not None else n_head
        tied = not any(t.name == "output.weight" for t in reader.tensors)
        return BaseModelInfo(_BY_GGUF_ARCH[arch], n_head, n_head_kv, n_layer, tied, gguf_path=base)
    hp = read_hparams(base)
    spec = arch_for(hp)
    n_head = int(_find(hp, "num_attention_heads", "n_head"))
    tied = bool(hp.get("tie_word_embeddings", spec.gguf_arch == "gpt2"))
    return BaseModelInfo(
        spec, n_head, int(hp.get("num_key_value_heads") or n_head),
        int(_find(hp, "num_hidden_layers", "n_layer")), tied, hf_dir=base,
    )


def read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    path = Path(adapter_dir) / "adapter_config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaraError(f"{adapter_dir} has no adapter_config.json; choose the adapter folder of a finished training job") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TaraError(f"{path} cannot be read ({exc}); train the adapter again") from None
    if not isinstance(cfg, dict) or str(cfg.get("peft_type", "LORA")).upper() != "LORA":
        raise TaraError(f"{path} is not a LoRA adapter; only LoRA adapters can be exported")
    return cfg


def _pattern_value(pattern: dict[str, Any], module: str, default: float) -> float:
    """PEFT's per-module override lookup (rank_pattern / alpha_pattern)."""
    for key, value in (pattern or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return float(value)
    return default


def write_adapter_gguf(
    adapter_dir: Path,
    path: Path,
    base: BaseModelInfo,
    *,
    dtype: FileDtype = "f32",
    name: str | None = None,
    state: JobState | None = None,
    progress: tuple[float, float] = (0.0, 1.0),
) -> ExportInfo:
    """Convert a PEFT LoRA adapter folder into a GGUF LoRA adapter at ``path`` (not atomic).

    llama.cpp applies ``scale * alpha / rank * B(A x)`` with ``lora_a`` of ``ne = [n_in, rank]`` and
    ``lora_b`` of ``ne = [rank, n_out]``, i.e. PEFT's ``lora_A.weight`` (rank, in) and ``lora_B.weight``
    (out, rank) as they are. PEFT's scaling variants (rsLoRA, alpha/rank patterns) are folded into B so
    that llama.cpp's ``alpha / rank`` gives the same result.
    """
    import gguf

    adapter_dir = Path(adapter_dir)
    cfg = read_adapter_config(adapter_dir)
    if cfg.get("use_dora"):
        raise TaraError("DoRA adapters cannot run in llama.cpp; export with --merge to get a full model")
    if cfg.get("modules_to_save") or str(cfg.get("bias", "none")) != "none":
        raise TaraError("this adapter also trains whole layers or biases, which a GGUF adapter cannot hold; export with --merge")
    rank = float(cfg.get("r", 8))
    alpha_cfg = float(cfg.get("lora_alpha", rank))
    rslora = bool(cfg.get("use_rslora"))
    alpha = alpha_cfg * math.sqrt(rank) if rslora else alpha_cfg
    source = _TensorSource.for_folder(adapter_dir, "adapter_model")
    spec = base.spec
    tmap = gguf.get_tensor_name_map(_arch_enum(spec.gguf_arch), base.n_layer)
    pairs: dict[str, dict[str, str]] = {}
    try:
        for key in source.keys():
            module = key.removeprefix("base_model.model.")
            m = re.match(r"(.*)\.lora_([AB])(?:\.[^.]+)?\.weight$", module)
            if m is None:
                if "lora_embedding" in key:
                    raise TaraError("this adapter trains the token embeddings, which TARA cannot export as a GGUF adapter; export with --merge")
                raise TaraError(f"the adapter holds {key}, which is not a LoRA weight; export with --merge")
            pairs.setdefault(m.group(1), {})[m.group(2)] = key
        plan: list[_Planned] = []
        for module, ab in sorted(pairs.items()):
            if set(ab) != {"A", "B"}:
                raise TaraError(f"the adapter has only half of the LoRA pair for {module}; train it again")
            if module.endswith("lm_head") and base.tied_output:
                raise TaraError("the adapter trains lm_head, but the base model ties it to the embeddings; export with --merge")
            gguf_name = tmap.get_name(module + ".weight", try_suffixes=(".weight",))
            if gguf_name is None:
                raise TaraError(f"the adapter targets {module}, which has no GGUF name for {spec.gguf_arch}; export with --merge")
            a_shape, b_shape = source.shape(ab["A"]), source.shape(ab["B"])
            r_i = a_shape[0]
            alpha_i = _pattern_value(cfg.get("alpha_pattern") or {}, module, alpha_cfg)
            scale_i = alpha_i / (math.sqrt(r_i) if rslora else r_i)
            fold = scale_i / (alpha / r_i)
            n_rows = 0
            if spec.permute_qk and module.endswith("q_proj"):
                n_rows = base.n_head
            elif spec.permute_qk and module.endswith("k_proj"):
                n_rows = base.n_head_kv

            def load_b(k: str = ab["B"], heads: int = n_rows, f: float = fold) -> np.ndarray:
                b = source.load(k)
                if heads:
                    b = permute_for_llama_cpp(b, heads)
                return b * np.float32(f) if abs(f - 1.0) > 1e-7 else b

            out_dtype = np.float16 if dtype == "f16" else np.float32
            def load_a(k: str = ab["A"]) -> np.ndarray:
                return source.load(k)

            plan.append(_Planned(gguf_name.removesuffix(".weight") + ".weight.lora_a", a_shape, out_dtype, load_a))
            plan.append(_Planned(gguf_name.removesuffix(".weight") + ".weight.lora_b", b_shape, out_dtype, load_b))
        if not plan:
            raise TaraError(f"{adapter_dir} holds no LoRA weights; train the adapter again")
        writer = gguf.GGUFWriter(path=None, arch=spec.gguf_arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
        _add_general(writer, name or adapter_dir.name, None)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        _stream(writer, Path(path), plan, state, progress)
    finally:
        source.close()
    notes = [f"{len(pairs)} LoRA pairs, rank {int(rank)}, alpha {alpha:g}"]
    return ExportInfo(Path(path), "adapter", spec.gguf_arch, dtype, len(plan), Path(path).stat().st_size, notes)


# ---------------------------------------------------------------------------------------------------------
# merge


def merge_adapter(adapter_dir: Path, base: Path, out_dir: Path, *, state: JobState | None = None) -> Path:
    """Merge a PEFT LoRA adapter into its base (``merge_and_unload``) and save the full model folder."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = Path(base)
    if state is not None:
        state.report(None, "loading the base model")
        state.check()
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    location = str(base)
    if base.is_file():
        location, kwargs["gguf_file"] = str(base.parent), base.name
    try:
        model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(location, **({"gguf_file": base.name} if base.is_file() else {}))
    except (OSError, ValueError) as exc:
        raise TaraError(f"the base model {base} cannot be loaded ({exc}); check --base") from None
    if state is not None:
        state.check()
        state.report(None, "merging the adapter")
    try:
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise TaraError(f"the adapter does not fit the base model ({exc}); choose the base it was trained on") from None
    if state is not None:
        state.check()
    if base.is_file():
        # transformers marks a model loaded from a GGUF as "quantized" and refuses save_pretrained: the merged
        # weights are plain float tensors, so write them and the config directly.
        from safetensors.torch import save_file

        Path(out_dir).mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().clone().contiguous() for k, v in merged.state_dict().items()}
        save_file(tensors, str(Path(out_dir) / "model.safetensors"))
        config = merged.config.to_dict()
        config.pop("quantization_config", None)
        config["architectures"] = [type(merged).__name__]
        (Path(out_dir) / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    else:
        merged.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return Path(out_dir)


# ---------------------------------------------------------------------------------------------------------
# atomic output and validation


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
    partial = _partial_path(out)
    try:
        yield partial
        with open(partial, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(partial, out)
        with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
            dir_fd = os.open(out.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise


def _contract_validate(path: Path) -> None:
    try:
        from tara_desktop.llm import gguf_file
    except ImportError:
        return
    validate = getattr(gguf_file, "validate", None)
    if validate is not None:
        validate(path)


def validate_model(path: Path) -> None:
    """Check a written model GGUF: the structural validator, then a real load and one token in llama.cpp."""
    _contract_validate(path)
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

    _contract_validate(path)
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
