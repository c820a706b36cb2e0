"""GGUF export: converted models and adapters give llama.cpp the same numbers transformers gives.

Real parts only: tiny Hugging Face models built here (random weights, widened so the logits are far from
zero and a wrong permutation or transpose shows), converted with our converter, loaded by llama-cpp-python.
"""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tara_desktop.errors import TaraError
from tara_desktop.jobs import Cancelled, JobState
from tara_desktop.training import export_job as ej
from tara_desktop.training import gguf_export as gx

TEXT = "Drink water, sleep well, and see a doctor when a pain does not go away after a few days."
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _sharpen(model: Any, seed: int) -> None:
    """Re-draw the weights with a larger spread so the logits differ clearly between positions."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * (0.6 / p.shape[-1] ** 0.5 if "wte" not in name and "embed" not in name else 1.0))


def _build(folder: Path, arch: str) -> Path:
    """A tiny HF model folder of ``arch`` with the tiny base's tokenizer and chat template."""
    import torch
    from transformers import AutoModelForCausalLM, Phi3Config, Qwen2Config

    from tests.support.tiny_base import build_tiny_base

    if arch in ("llama", "gpt2"):
        path = build_tiny_base(folder / arch, arch=arch, seed=1)  # type: ignore[arg-type]
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    else:
        llama = folder / "llama"
        if not llama.exists():
            build_tiny_base(llama, arch="llama", seed=1)
        path = folder / f"tiny-{arch[:2]}"  # not "phi3": llama.cpp expects Phi-3's own tokens for a model named so
        path.mkdir()
        for f in llama.iterdir():
            if "token" in f.name or f.name.endswith(".jinja"):
                shutil.copy(f, path / f.name)
        common = {"vocab_size": 400, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                  "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
                  "bos_token_id": 0, "eos_token_id": 3, "pad_token_id": 1, "tie_word_embeddings": False}
        config = Qwen2Config(**common) if arch == "qwen2" else Phi3Config(**common, original_max_position_embeddings=512)
        torch.manual_seed(1)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _sharpen(model, seed=2)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {arch: _build(root, arch) for arch in ("llama", "gpt2", "qwen2", "phi3")}


@pytest.fixture(scope="module")
def ggufs(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("gguf")
    result = {}
    for arch, folder in models.items():
        result[arch] = ej.run_export(ej.ExportRequest(folder, out / f"{arch}.gguf", dtype="f32"), JobState()).path
    return result


def _hf_logits(model: Any, ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def _llama_logits(path: Path, ids: list[int], adapter: Path | None = None) -> np.ndarray:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), logits_all=True, n_ctx=128, n_threads=1, verbose=False)
    lora = None
    try:
        if adapter is not None:
            lora = llama_cpp.llama_adapter_lora_init(llm.model, str(adapter).encode())
            assert lora, "llama.cpp refused the adapter"
            arr = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(lora)
            assert llama_cpp.llama_set_adapters_lora(llm.ctx, arr, 1, (ctypes.c_float * 1)(1.0)) == 0
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)])
    finally:
        if lora:
            llama_cpp.llama_set_adapters_lora(llm.ctx, None, 0, None)
            llama_cpp.llama_adapter_lora_free(lora)
        llm.close()


def _ids(folder: Path) -> list[int]:
    from transformers import AutoTokenizer

    return list(AutoTokenizer.from_pretrained(folder).encode(TEXT, add_special_tokens=False))


def _close(got: np.ndarray, ref: np.ndarray) -> None:
    scale = float(np.abs(ref).max())
    assert scale > 1.0, "the reference logits are too flat to tell a right conversion from a wrong one"
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-3 * scale)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2", "phi3"])
def test_f32_gguf_logits_match_transformers(arch: str, models: dict[str, Path], ggufs: dict[str, Path]) -> None:
    import llama_cpp
    import torch
    from transformers import AutoModelForCausalLM

    ids = _ids(models[arch])
    ref = _hf_logits(AutoModelForCausalLM.from_pretrained(models[arch], dtype=torch.float32).eval(), ids)
    _close(_llama_logits(ggufs[arch], ids), ref)
    # the tokenizer came along: same ids from llama.cpp's tokenizer, chat template and special tokens kept
    llm = llama_cpp.Llama(model_path=str(ggufs[arch]), n_ctx=64, vocab_only=True, verbose=False)
    try:
        assert llm.tokenize(TEXT.encode(), add_bos=False, special=False) == ids
        meta = llm.metadata
        assert meta["general.architecture"] == arch
        assert "<|im_start|>" in meta["tokenizer.chat_template"]
        assert meta["tokenizer.ggml.eos_token_id"] == "3" and meta["tokenizer.ggml.pre"] == "gpt-2"
        assert llm.tokenize(b"<|im_end|>", add_bos=False, special=True) == [3]
    finally:
        llm.close()


def _trained_adapter(base: Path, out: Path, arch: str, *, use_rslora: bool = False) -> tuple[Any, Path]:
    """A PEFT LoRA adapter with random (non-zero) A and B on every linear layer; returns (peft model, folder)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    targets = {"llama": LLAMA_TARGETS, "gpt2": ["c_attn", "c_proj", "c_fc"], "qwen2": LLAMA_TARGETS,
               "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]}[arch]
    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False, use_rslora=use_rslora,
                        fan_in_fan_out=arch == "gpt2", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(out)
    return peft_model, out


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2", "phi3"])
def test_gguf_lora_adapter_matches_merged_model(arch: str, models: dict[str, Path], ggufs: dict[str, Path], tmp_path: Path) -> None:
    peft_model, folder = _trained_adapter(models[arch], tmp_path / "adapter", arch, use_rslora=arch == "qwen2")
    result = ej.run_export(ej.ExportRequest(folder, tmp_path / "lora.gguf", dtype="f32", base=ggufs[arch]), JobState())
    assert result.kind == "adapter" and result.base_gguf == ggufs[arch]
    assert [r.label for r in result.table] == ["base", "base+adapter"]
    ids = _ids(models[arch])
    with peft_model.disable_adapter():
        base_ref = _hf_logits(peft_model.eval(), ids)
    merged_ref = _hf_logits(peft_model.merge_and_unload().eval(), ids)
    assert np.abs(merged_ref - base_ref).max() > 0.5, "the adapter must change the output for this test to mean anything"
    _close(_llama_logits(ggufs[arch], ids, adapter=result.path), merged_ref)


@pytest.mark.slow
def test_merge_writes_a_full_model_that_matches(models: dict[str, Path], tmp_path: Path) -> None:
    peft_model, folder = _trained_adapter(models["llama"], tmp_path / "adapter", "llama")
    out = tmp_path / "merged.gguf"
    result = ej.run_export(ej.ExportRequest(folder, out, merge=True, dtype="f32", base=models["llama"]), JobState())
    assert result.kind == "model" and out.is_file()
    ids = _ids(models["llama"])
    _close(_llama_logits(out, ids), _hf_logits(peft_model.merge_and_unload().eval(), ids))


def test_cancel_leaves_nothing_behind(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out" / "model.gguf"
    out.parent.mkdir()
    seen: list[str] = []

    def progress(_fraction: float | None, message: str) -> None:
        seen.append(message)
        if message.startswith("writing blk.1"):
            state.cancel()

    state = JobState(progress)
    with pytest.raises(Cancelled):
        ej.run_export(ej.ExportRequest(models["llama"], out), state)
    assert any(m.startswith("writing") for m in seen)
    assert list(out.parent.iterdir()) == [], "a cancelled export must leave no file, partial or final"


def test_existing_output_is_refused_or_replaced_atomically(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "model.gguf"
    out.write_bytes(b"the user's old file")
    with pytest.raises(TaraError, match="already exists"):
        ej.run_export(ej.ExportRequest(models["gpt2"], out), JobState())
    assert out.read_bytes() == b"the user's old file"
    ej.run_export(ej.ExportRequest(models["gpt2"], out, overwrite=True), JobState())
    assert out.read_bytes()[:4] == b"GGUF"
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]


def test_bad_sources_are_clear_errors(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(TaraError, match="does not exist"):
        ej.resolve_source(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TaraError, match="neither a trained adapter"):
        ej.resolve_source(tmp_path / "empty")
    odd = tmp_path / "odd"
    shutil.copytree(models["gpt2"], odd)
    cfg = (odd / "config.json").read_text().replace("GPT2LMHeadModel", "MambaForCausalLM")
    (odd / "config.json").write_text(cfg)
    with pytest.raises(TaraError, match="not supported"):
        ej.run_export(ej.ExportRequest(odd, tmp_path / "x.gguf"), JobState())
    with pytest.raises(TaraError, match=r"end in \.gguf"):
        ej.run_export(ej.ExportRequest(models["gpt2"], tmp_path / "x.bin"), JobState())
    assert not (tmp_path / "x.gguf").exists()


def test_permutation_round_trips_rows_per_head() -> None:
    w = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    p = gx.permute_for_llama_cpp(w, n_head=2)
    # per head of 4 rows: HF halves [0,1 | 2,3] become interleaved pairs [0,2,1,3]
    assert p[:4, 0].tolist() == [0.0, 6.0, 3.0, 9.0]
    assert sorted(p.ravel().tolist()) == sorted(w.ravel().tolist())


@pytest.mark.slow
def test_merge_on_a_gguf_base_matches_base_plus_adapter(models: dict[str, Path], ggufs: dict[str, Path], tmp_path: Path) -> None:
    """A job trained on a GGUF base (transformers loads it) merges into a full GGUF with the base's tokenizer."""
    _, folder = _trained_adapter(models["llama"], tmp_path / "adapter", "llama")
    adapter = ej.run_export(ej.ExportRequest(folder, tmp_path / "lora.gguf", dtype="f32", base=ggufs["llama"]), JobState())
    merged = ej.run_export(ej.ExportRequest(folder, tmp_path / "merged.gguf", merge=True, dtype="f32", base=ggufs["llama"]), JobState())
    ids = _ids(models["llama"])
    _close(_llama_logits(merged.path, ids), _llama_logits(ggufs["llama"], ids, adapter=adapter.path))


def test_stale_leftovers_go_but_live_scratch_stays(tmp_path: Path) -> None:
    dead = 2**22 + 12345  # above Linux's default pid_max: no such process
    stale_partial = tmp_path / f".m.gguf.{dead}{gx.PARTIAL_SUFFIX}"
    stale_partial.write_bytes(b"half a file")
    stale_dir = tmp_path / f"{gx.WORKDIR_PREFIX}{dead}-abc"
    stale_dir.mkdir()
    live = gx.make_workdir(tmp_path)  # this process's scratch folder, still in use
    (live / "model.f16.gguf").write_bytes(b"needed later")
    with gx.atomic_output(tmp_path / "m.gguf") as partial:
        partial.write_bytes(b"GGUF")
    assert not stale_partial.exists() and not stale_dir.exists()
    assert (live / "model.f16.gguf").exists()
    assert (tmp_path / "m.gguf").read_bytes() == b"GGUF"
