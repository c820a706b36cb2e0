"""Real tiny GGUF models for the LLM tests, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight llama GGUF (byte-level BPE tokenizer, ChatML template) llama-cpp-python runs."""
    from tara_desktop.llm.tiny_model import build_tiny_gguf

    return build_tiny_gguf(tmp_path_factory.mktemp("tiny-model") / "tiny.gguf", seed=0)


@pytest.fixture(scope="session")
def tiny_lora(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GGUF LoRA adapter for ``tiny_gguf`` that visibly changes its output."""
    from tara_desktop.llm.tiny_model import build_tiny_lora

    return build_tiny_lora(tiny_gguf, tmp_path_factory.mktemp("tiny-lora") / "tiny-lora.gguf", seed=0)
