"""Shared test setup: every test gets its own profile directory and no network surprises."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point TARA_HOME at a fresh folder so no test touches the real profile."""
    monkeypatch.setenv("TARA_HOME", str(tmp_path / "tara-home"))
    monkeypatch.setenv("TARA_PASSPHRASE", "test passphrase")
    # New passphrase keys use scrypt N=2^17 (~0.5-2 s each); tests make hundreds of profiles, so they
    # use the old cost (tests/profile checks the real one), and keep rollback anchors in their own folder.
    monkeypatch.setenv("TARA_SCRYPT_N", "16384")
    monkeypatch.setenv("TARA_ANCHOR_DIR", str(tmp_path / "anchors"))
    yield


@pytest.fixture(autouse=True)
def _drop_speechbrain_redirects() -> None:
    """SpeechBrain puts ``DeprecatedModuleRedirect`` shims (speechbrain.pretrained, k2_integration...) in
    sys.modules; Hypothesis reads ``__file__`` of every module, which imports k2 through the shim and fails.
    Nothing here uses the deprecated names, so drop the shims before each test."""
    for name, module in list(sys.modules.items()):
        if type(module).__name__ == "DeprecatedModuleRedirect":
            del sys.modules[name]


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight llama GGUF (byte-level BPE tokenizer, ChatML template) llama-cpp-python runs."""
    from tests.support.tiny_model import build_tiny_gguf

    return build_tiny_gguf(tmp_path_factory.mktemp("tiny-model") / "tiny.gguf", seed=0)


@pytest.fixture(scope="session")
def tiny_lora(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GGUF LoRA adapter for ``tiny_gguf`` that visibly changes its output."""
    from tests.support.tiny_model import build_tiny_lora

    return build_tiny_lora(tiny_gguf, tmp_path_factory.mktemp("tiny-lora") / "tiny-lora.gguf", seed=0)
