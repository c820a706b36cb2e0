"""A PEFT LoRA adapter folder → a GGUF LoRA adapter llama.cpp applies to its base model
(llama.cpp's ``convert_lora_to_gguf.py`` is the reference). The writer is not atomic: the caller writes to
:func:`tara_desktop.training.gguf_export.atomic_output`'s partial path.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.training import gguf_tensors as gt


@dataclass(frozen=True)
class BaseModelInfo:
    """What an adapter export needs to know about its base: architecture, heads, layers, and where it is."""

    spec: gt.ArchSpec
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
        if arch not in gt.BY_GGUF_ARCH:
            raise TaraError(f"the base model's architecture {arch!r} is not supported for adapter export")
        n_head_kv = int(kv_field.contents()) if kv_field is not None else n_head
        tied = not any(t.name == "output.weight" for t in reader.tensors)
        return BaseModelInfo(gt.BY_GGUF_ARCH[arch], n_head, n_head_kv, n_layer, tied, gguf_path=base)
    hp = gt.read_hparams(base)
    spec = gt.arch_for(hp)
    n_head = int(gt.hparam(hp, "num_attention_heads", "n_head"))
    tied = bool(hp.get("tie_word_embeddings", spec.gguf_arch == "gpt2"))
    return BaseModelInfo(
        spec, n_head, int(hp.get("num_key_value_heads") or n_head),
        int(gt.hparam(hp, "num_hidden_layers", "n_layer")), tied, hf_dir=base,
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
    dtype: gt.FileDtype = "f32",
    name: str | None = None,
    state: JobState | None = None,
    progress: tuple[float, float] = (0.0, 1.0),
) -> gt.ExportInfo:
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
    source = gt.TensorSource.for_folder(adapter_dir, "adapter_model")
    spec = base.spec
    tmap = gt.tensor_names(spec, base.n_layer)
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
        plan: list[gt.PlannedTensor] = []
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
                    b = gt.permute_for_llama_cpp(b, heads)
                return b * np.float32(f) if abs(f - 1.0) > 1e-7 else b

            out_dtype = np.float16 if dtype == "f16" else np.float32
            def load_a(k: str = ab["A"]) -> np.ndarray:
                return source.load(k)

            plan.append(gt.PlannedTensor(gguf_name.removesuffix(".weight") + ".weight.lora_a", a_shape, out_dtype, load_a))
            plan.append(gt.PlannedTensor(gguf_name.removesuffix(".weight") + ".weight.lora_b", b_shape, out_dtype, load_b))
        if not plan:
            raise TaraError(f"{adapter_dir} holds no LoRA weights; train the adapter again")
        writer = gt.new_writer(spec, "adapter", name or adapter_dir.name)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
        notes = [f"{len(pairs)} LoRA pairs, rank {int(rank)}, alpha {alpha:g}"]
        return gt.write_export(writer, "adapter", path, plan, dtype=dtype, notes=notes, state=state, progress=progress)
    finally:
        source.close()
