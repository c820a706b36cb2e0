"""The validator and repair against llama.cpp itself, on a real tiny model (tests.support.tiny_model):
llama.cpp loads what the validator accepts, refuses what it rejects, and loads every repaired copy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tara_desktop.llm import gguf_file
from tara_desktop.llm.gguf_reader import InvalidGguf
from tara_desktop.llm.gguf_repair import repair

from .gguf_corpus import bad_alignment, bad_files, broken_template, duplicate_key


@pytest.fixture
def tiny(tiny_gguf: Path) -> Path:
    """The session's tiny model (tests/llm/conftest.py); these tests only read it."""
    return tiny_gguf


def _llama(path: Path) -> Any:
    import llama_cpp

    return llama_cpp.Llama(model_path=str(path), n_ctx=128, n_threads=1, seed=0, verbose=False)


def _greedy(path: Path) -> str:
    llm = _llama(path)
    try:
        out = llm("Hello, how are", max_tokens=6, temperature=0.0)
        return str(out["choices"][0]["text"])
    finally:
        llm.close()


def _llama_refuses(path: Path) -> bool:
    try:
        llm = _llama(path)
    except Exception:
        return True
    llm.close()
    return False


def test_the_tiny_model_validates_and_matches_what_llama_cpp_reads(tiny: Path) -> None:
    info = gguf_file.validate(tiny)
    llm = _llama(tiny)
    try:
        assert info.architecture == llm.metadata["general.architecture"]
        assert info.context_length == llm._model.n_ctx_train()
        assert info.n_embd == llm._model.n_embd()
        assert info.vocab_size == llm.n_vocab()
        assert info.chat_template and info.problems == ()
        assert info.parameter_count == llm._model.n_params()
    finally:
        llm.close()


def test_a_lora_adapter_validates_as_an_adapter(tiny: Path, tmp_path: Path) -> None:
    from tests.support.tiny_model import build_tiny_lora

    info = gguf_file.validate(build_tiny_lora(tiny, tmp_path / "lora.gguf"))
    assert info.model_type == "adapter" and info.architecture == "llama"


def test_llama_cpp_refuses_every_file_the_validator_rejects(tiny: Path, tmp_path: Path) -> None:
    corpus = [b for b in bad_files(tiny.read_bytes()) if not b.name.startswith("truncated_data")]
    corpus += [b for b in bad_files(tiny.read_bytes()) if b.name.startswith("truncated_data")][:3]
    for bad in corpus:
        path = tmp_path / f"{bad.name}.gguf"
        path.write_bytes(bad.data)
        with pytest.raises(InvalidGguf):
            gguf_file.validate(path)
        assert _llama_refuses(path), bad.name


@pytest.fixture
def damaged(tiny: Path, tmp_path: Path) -> Iterator[dict[str, Path]]:
    data = tiny.read_bytes()
    out = {}
    for name, body in (
        ("duplicate_key", duplicate_key(data)),
        ("bad_alignment", bad_alignment(data)),
        ("broken_template", broken_template(data)),
    ):
        p = tmp_path / f"{name}.gguf"
        p.write_bytes(body)
        out[name] = p
    yield out


@pytest.mark.slow
def test_repaired_copies_load_and_generate_like_the_original(tiny: Path, damaged: dict[str, Path], tmp_path: Path) -> None:
    reference = _greedy(tiny)
    assert reference
    for name, path in damaged.items():
        with pytest.raises(InvalidGguf, match="tara gguf repair"):
            gguf_file.validate(path)
        assert _llama_refuses(path), name  # llama.cpp cannot use the damaged file either
        fixed = tmp_path / f"fixed_{name}.gguf"
        repair(path, fixed)
        gguf_file.validate(fixed)
        # same weights, same greedy continuation
        assert _greedy(fixed) == reference, name
    # the template-less copy still chats: the engine falls back to a default template
    llm = _llama(tmp_path / "fixed_broken_template.gguf")
    try:
        reply = llm.create_chat_completion([{"role": "user", "content": "hi"}], max_tokens=3, temperature=0.0)
        assert reply["choices"][0]["message"]["content"] is not None
    finally:
        llm.close()


_LOAD_IN_CHILD = """
import sys, llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=64, verbose=False)
print("LOADED")
"""


def test_settings_that_make_llama_cpp_abort_are_rejected(tiny: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from .gguf_corpus import abort_files

    cases = abort_files(tiny.read_bytes())
    assert set(cases) == {
        "block_count_0", "block_count_513", "experts_overused", "nan_epsilon", "rope_scaling_bogus",
        "duplicate_token", "token_with_nul",
    }
    for name, (data, phrase) in cases.items():
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(data)
        with pytest.raises(InvalidGguf) as err:
            gguf_file.validate(path)
        assert phrase in str(err.value) and "abort" in str(err.value), name
    # what the validator prevents: llama.cpp takes its whole process down on such a file (run in a child)
    for name in ("block_count_0", "token_with_nul"):
        proc = subprocess.run(
            [sys.executable, "-c", _LOAD_IN_CHILD, str(tmp_path / f"{name}.gguf")],
            capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "GGML_NO_BACKTRACE": "1"},  # no gdb backtrace of the abort
        )
        assert proc.returncode != 0 and "LOADED" not in proc.stdout, name
