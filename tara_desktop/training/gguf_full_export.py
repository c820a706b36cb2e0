"""A full Hugging Face model folder → a GGUF model llama.cpp runs (f32 or f16), and merging a LoRA adapter
into its base first (``--merge``).

Supported families (llama.cpp's ``convert_hf_to_gguf.py`` is the reference): Llama/Mistral (Q and K rows
permuted from Hugging Face's rotary layout to llama.cpp's), Qwen2 and Phi-3 (no permutation), GPT-2 /
DialoGPT (``Conv1D`` weights transposed back into ``(out, in)``). 1-D tensors and norms stay f32;
quantization is :mod:`tara_desktop.training.quantize`'s job. The writer is not atomic: the caller writes
to :func:`tara_desktop.training.gguf_export.atomic_output`'s partial path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.training.gguf_tensors import (
    ArchSpec,
    ExportInfo,
    FileDtype,
    PlannedTensor,
    TensorSource,
    arch_for,
    hparam,
    new_writer,
    permute_for_llama_cpp,
    read_hparams,
    rope_settings,
    tensor_names,
    write_export,
)

if TYPE_CHECKING:
    from gguf import GGUFWriter

_SKIP_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")
_CONV1D_SUFFIXES = (".c_attn.weight", ".c_proj.weight", ".c_fc.weight")


def _add_hparams(writer: GGUFWriter, spec: ArchSpec, hp: dict[str, Any], n_layer: int, ftype: int) -> None:
    import gguf

    writer.add_block_count(n_layer)
    writer.add_file_type(ftype)
    if spec.gguf_arch == "gpt2":
        n_embd = hparam(hp, "n_embd", "hidden_size")
        writer.add_context_length(hparam(hp, "n_positions", "n_ctx", "max_position_embeddings"))
        writer.add_embedding_length(n_embd)
        writer.add_feed_forward_length(hparam(hp, "n_inner", default=4 * n_embd))
        writer.add_head_count(hparam(hp, "n_head", "num_attention_heads"))
        writer.add_layer_norm_eps(hparam(hp, "layer_norm_epsilon", default=1e-5))
        return
    n_embd = hparam(hp, "hidden_size")
    n_head = hparam(hp, "num_attention_heads")
    head_dim = hp.get("head_dim") or n_embd // n_head
    rope = rope_settings(hp)
    writer.add_vocab_size(hparam(hp, "vocab_size"))
    writer.add_context_length(hparam(hp, "max_position_embeddings", default=2048))
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(hparam(hp, "intermediate_size"))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(hparam(hp, "num_key_value_heads", default=n_head))
    writer.add_layer_norm_rms_eps(hparam(hp, "rms_norm_eps", default=1e-6))
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
    rope = rope_settings(hp)
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
    n_layer = int(hparam(hp, "num_hidden_layers", "n_layer", "num_layers"))
    tmap = tensor_names(spec, n_layer)
    source = TensorSource.for_folder(model_dir, "model")
    notes: list[str] = []
    try:
        n_head = int(hparam(hp, "num_attention_heads", "n_head"))
        n_head_kv = int(hp.get("num_key_value_heads") or n_head)
        plan: list[PlannedTensor] = []
        for key, value in _extra_tensors(spec, hp).items():

            def constant(v: np.ndarray = value) -> np.ndarray:
                return v

            plan.append(PlannedTensor(key, value.shape, np.float32, constant))
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

            plan.append(PlannedTensor(out_name, shape, _out_dtype(out_name, len(shape), dtype), load))
        if not any(p.name == "output.weight" for p in plan):
            notes.append("output shares the token embeddings (tied weights)")
        ftype = gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16
        writer = new_writer(spec, "model", name or model_dir.name, description)
        _add_hparams(writer, spec, hp, n_layer, int(ftype))
        if tokenizer_from is not None:
            _copy_tokenizer(writer, tokenizer_from)
        else:
            from tara_desktop.training.gguf_vocab import add_tokenizer

            tok = add_tokenizer(writer, model_dir, int(hparam(hp, "vocab_size")))
            notes.append(f"tokenizer {tok['model']}/{tok['pre']}, {tok['n_tokens']} tokens")
            if not tok["chat_template"]:
                notes.append("no chat template: the app uses a default one")
        return write_export(writer, "model", path, plan, dtype=dtype, notes=notes, state=state, progress=progress)
    finally:
        source.close()


def _copy_tokenizer(writer: GGUFWriter, gguf_path: Path) -> None:
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
