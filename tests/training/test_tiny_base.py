"""The tiny base model: a real Hugging Face folder that transformers loads and PEFT trains on."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.support.tiny_base import build_tiny_base


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_llama_base_loads_with_a_chat_template(tiny_base: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(_digest(tiny_base))
    tok = AutoTokenizer.from_pretrained(tiny_base)
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    assert model.config.model_type == "llama"
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert model.config.num_key_value_heads == 2 and model.config.max_position_embeddings == 2048
    assert 300 <= len(tok) <= 500 and model.config.vocab_size == len(tok)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|endoftext|>", "<|im_end|>", "<|pad|>")
    assert model.config.eos_token_id == tok.eos_token_id and model.config.pad_token_id == tok.pad_token_id
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Hello!"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
    ids = tok("The assistant answers questions.")["input_ids"]
    assert tok.decode(ids) == "The assistant answers questions."
    assert len(ids) < len("The assistant answers questions.") / 2  # the BPE merges are real
    with torch.no_grad():
        out = model(torch.tensor([ids]))
    assert out.logits.shape == (1, len(ids), len(tok))


def test_building_is_deterministic_and_seeded(tmp_path: Path, tiny_base: Path) -> None:
    again = build_tiny_base(tmp_path / "again", seed=0)
    assert _digest(again) == _digest(tiny_base)
    other = _digest(build_tiny_base(tmp_path / "other", seed=1))
    assert other["model.safetensors"] != _digest(tiny_base)["model.safetensors"]
    assert other["tokenizer.json"] == _digest(tiny_base)["tokenizer.json"]


def test_gpt2_base_trains_with_peft(tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = build_tiny_base(tmp_path / "gpt2", arch="gpt2", seed=0)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.config.model_type == "gpt2" and model.config.n_embd == 64
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True))
    ids = torch.tensor([tok("Write the first draft quickly.")["input_ids"]])
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        build_tiny_base("unused", hidden_size=60)
