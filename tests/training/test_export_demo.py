"""The shipped demo model and its adapters: what the mapping points at loads, says it is a demo, and each
domain's adapter really changes the model's output. Plus the demo training format matches its chat template."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import ctypes
import json
from pathlib import Path

import numpy as np
import pytest

from tara_desktop.training import demo_model as dm

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


def test_corpus_has_every_domain_and_a_held_out_part() -> None:
    corpus = dm.load_corpus(ROOT / "resources" / "demo_corpus")
    assert set(corpus) == set(dm.DOMAINS)
    for domain, (train, held) in corpus.items():
        assert len(train) >= 30 and 3 <= len(held) <= len(train) // 5, domain
        for chat in train + held:
            assert [m["role"] for m in chat] == ["user", "assistant"] and all(m["content"].strip() for m in chat)


def test_training_text_is_exactly_what_the_chat_template_renders() -> None:
    import jinja2

    chat = [{"role": "user", "content": "How do I sleep better?"}, {"role": "assistant", "content": "Keep a routine."}]
    template = jinja2.Environment().from_string(dm.CHAT_TEMPLATE)
    for system in (None, "You are TARA."):
        messages = ([{"role": "system", "content": system}] if system else []) + chat
        prompt, reply = dm.render(chat, system)
        assert prompt == template.render(messages=messages[:-1], add_generation_prompt=True)
        assert prompt + reply + "\n" == template.render(messages=messages, add_generation_prompt=False)


def test_mapping_points_at_the_shipped_demo_model_and_adapters() -> None:
    import llama_cpp

    mapping = json.loads((ROOT / "configs" / "model_mapping.json").read_text(encoding="utf-8"))
    model = MODELS / mapping["default"]["model"]
    llm = llama_cpp.Llama(model_path=str(model), n_ctx=128, logits_all=True, n_threads=1, verbose=False)
    try:
        assert "TARA demo model" in llm.metadata["general.name"]
        assert "demo" in llm.metadata["general.description"]
        prompt = llm.tokenize(b"<|im_start|>user\nHow can I sleep better?<|im_end|>\n<|im_start|>assistant\n", add_bos=False, special=True)
        llm.eval(prompt)
        plain = np.array(llm.scores[len(prompt) - 1])
        sizes = model.stat().st_size
        for domain, choice in mapping["domains"].items():
            assert choice["model"] == mapping["default"]["model"]
            adapter = MODELS / choice["adapter"]
            sizes += adapter.stat().st_size
            lora = llama_cpp.llama_adapter_lora_init(llm.model, str(adapter).encode())
            assert lora, f"{domain}: llama.cpp refuses {adapter.name}"
            arr = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(lora)
            llama_cpp.llama_set_adapters_lora(llm.ctx, arr, 1, (ctypes.c_float * 1)(1.0))
            llm.reset()
            llm.eval(prompt)
            adapted = np.array(llm.scores[len(prompt) - 1])
            llama_cpp.llama_set_adapters_lora(llm.ctx, None, 0, None)
            llama_cpp.llama_adapter_lora_free(lora)
            assert np.abs(adapted - plain).max() > 0.05, f"the {domain} adapter does not change the output"
        assert sizes < 8_000_000, "the shipped demo must stay a few MB"
    finally:
        llm.close()


@pytest.mark.slow
def test_demo_model_answers_in_a_chat(tmp_path: Path) -> None:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(MODELS / "tara-demo.gguf"), n_ctx=256, n_threads=1, seed=0, verbose=False)
    try:
        out = llm.create_chat_completion(
            messages=[{"role": "user", "content": "Hello!"}], max_tokens=24, temperature=0.0,
        )
        text = out["choices"][0]["message"]["content"]  # type: ignore[index]
        assert text and text.strip() and "<|im_" not in text
    finally:
        llm.close()
