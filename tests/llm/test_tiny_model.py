"""The tiny model builder writes real GGUF files that llama-cpp-python loads and runs."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from tests.support.tiny_model import CHATML_TEMPLATE, build_tiny_gguf, build_tiny_lora, build_tokenizer


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path: Path, tiny_gguf: Path) -> None:
    again = build_tiny_gguf(tmp_path / "again.gguf", seed=0)
    other = build_tiny_gguf(tmp_path / "other.gguf", seed=1)
    assert again.read_bytes() == tiny_gguf.read_bytes()
    assert other.read_bytes() != tiny_gguf.read_bytes()
    assert not list(tmp_path.glob(".*.tmp")), "temp files are moved into place"


def test_metadata_tokenizer_and_template(tiny_gguf: Path) -> None:
    r = gguf.GGUFReader(str(tiny_gguf))
    assert r.get_field("general.architecture").contents() == "llama"  # type: ignore[union-attr]
    assert r.get_field("tokenizer.ggml.model").contents() == "gpt2"  # type: ignore[union-attr]
    assert r.get_field("tokenizer.chat_template").contents() == CHATML_TEMPLATE  # type: ignore[union-attr]
    assert r.get_field("llama.context_length").contents() >= 2048  # type: ignore[union-attr,operator]
    tok = build_tokenizer()
    assert len(r.get_field("tokenizer.ggml.tokens").contents()) == tok.n_vocab  # type: ignore[union-attr,arg-type]
    assert tok.tokens[tok.eos_id] == "<|im_end|>"
    assert len(tok.merges) > 50


def test_llama_cpp_tokenizes_and_round_trips(tiny_gguf: Path) -> None:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(tiny_gguf), n_ctx=256, vocab_only=True, verbose=False)
    try:
        text = "Hello, how are you today? Ünïcödé ✓ 42\n"
        ids = llm.tokenize(text.encode(), add_bos=False, special=False)
        assert len(ids) < len(text.encode()), "merges make some tokens longer than a byte"
        assert llm.detokenize(ids).decode() == text
        specials = llm.tokenize(b"<|im_start|>user", add_bos=False, special=True)
        tok = build_tokenizer()
        assert specials[0] == tok.im_start_id
        assert llm.token_eos() == tok.eos_id
    finally:
        llm.close()


def test_lora_layout_matches_llama_cpp(tiny_gguf: Path, tiny_lora: Path) -> None:
    r = gguf.GGUFReader(str(tiny_lora))
    assert r.get_field("general.type").contents() == "adapter"  # type: ignore[union-attr]
    assert r.get_field("adapter.type").contents() == "lora"  # type: ignore[union-attr]
    assert r.get_field("general.architecture").contents() == "llama"  # type: ignore[union-attr]
    base = {t.name: [int(x) for x in t.shape] for t in gguf.GGUFReader(str(tiny_gguf)).tensors}
    names = {t.name: [int(x) for x in t.shape] for t in r.tensors}
    assert names, "adapter has tensors"
    for name, a_shape in names.items():
        if not name.endswith(".lora_a"):
            continue
        w = name[: -len(".lora_a")]
        b_shape = names[w + ".lora_b"]
        # ggml order: base [in, out]; A [in, rank]; B [rank, out]
        assert a_shape[0] == base[w][0] and b_shape[1] == base[w][1] and a_shape[1] == b_shape[0] == 4


def test_lora_needs_a_model_base(tmp_path: Path, tiny_lora: Path) -> None:
    from tara_desktop.errors import TaraError

    with pytest.raises(TaraError, match="no attention/FFN weights"):
        build_tiny_lora(tiny_lora, tmp_path / "x.gguf")


def test_a_real_sized_vocabulary_loads_and_round_trips(tmp_path: Path) -> None:
    import llama_cpp

    path = build_tiny_gguf(tmp_path / "big-vocab.gguf", vocab_size=8000)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, vocab_only=True, verbose=False)
    try:
        assert llm.n_vocab() == 8000
        text = "Hello, how are you today? Tell me about the budget."
        ids = llm.tokenize(text.encode(), add_bos=False, special=False)
        assert llm.detokenize(ids).decode() == text
        assert max(ids) > 300, "the added merges are used"
    finally:
        llm.close()
