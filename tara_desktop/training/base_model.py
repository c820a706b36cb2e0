"""Loading the base model a LoRA adapter is trained on (a Hugging Face folder or a GGUF file, in float32)
and attaching the LoRA layers to it. transformers, torch and peft are imported only when called."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tara_desktop.errors import TaraError
from tara_desktop.training.spec import TrainingSpec

TARGET_MODULES = {
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
    "phi3": ["qkv_proj"],
    "gpt2": ["c_attn"],
    "gpt_neox": ["query_key_value"],
}



def resolve_base(base: str) -> tuple[str, str | None]:
    """(folder, GGUF file name or None) for a base given as a Hugging Face folder or a .gguf file."""
    p = Path(base)
    if p.is_file() and p.suffix.lower() == ".gguf":
        return str(p.parent), p.name
    if p.is_dir() and (p / "config.json").is_file():
        return str(p), None
    if not p.exists():
        raise TaraError(f"base model {base} not found; give a Hugging Face model folder or a .gguf file")
    raise TaraError(
        f"{base} is not a base model; give a Hugging Face model folder (with config.json) or a .gguf file"
    )


def load_base(base: str) -> tuple[Any, Any]:
    """(tokenizer, model) in float32 from a Hugging Face folder or a GGUF file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf_file = resolve_base(base)
    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
    except Exception as exc:
        raise TaraError(
            f"cannot load base model {base} ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
            "check that it is a complete causal language model"
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def attach_lora(model: Any, spec: TrainingSpec) -> Any:
    from peft import LoraConfig, get_peft_model

    model_type = str(getattr(model.config, "model_type", ""))
    targets = spec.target_modules or TARGET_MODULES.get(model_type)
    config = LoraConfig(
        r=spec.lora_rank,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=targets,
        fan_in_fan_out=model_type == "gpt2",
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise TaraError(
            f"cannot attach LoRA to this {model_type or 'unknown'} model ({str(exc).splitlines()[0][:160]}); "
            "set the target modules for it"
        ) from None
