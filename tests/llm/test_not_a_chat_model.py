"""A GGUF that parses but is no chat model (only metadata, an encoder without a chat template, an adapter)
is one clear error naming the file and what to do, in the engine, the pool and `tara chat --model`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tara_desktop.llm import gguf_file
from tara_desktop.llm.engine import Engine
from tara_desktop.llm.model_check import ModelLoadError, validate_gguf
from tests.llm.gguf_corpus import GOOD_TEMPLATE, N_EMBD, VOCAB, write_valid_gguf


def _gguf(path: Path, arch: str, *, tensors: bool, chat_template: str | None = None) -> Path:
    """A structurally valid GGUF of ``arch`` (the corpus's metadata), with or without any tensor."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch=arch)
    w.add_name("not a chat model")
    w.add_context_length(256)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(1)
    w.add_head_count(4)
    w.add_tokenizer_model("llama")
    w.add_token_list(VOCAB)
    w.add_token_types([1] * len(VOCAB))
    if chat_template is not None:
        w.add_chat_template(chat_template)
    if tensors:
        w.add_tensor("token_embd.weight", np.ones((len(VOCAB), N_EMBD), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_metadata_only_gguf_is_no_model(tmp_path: Path) -> None:
    path = _gguf(tmp_path / "header-only.gguf", "llama", tensors=False, chat_template=GOOD_TEMPLATE)
    assert gguf_file.validate(path).tensor_count == 0  # a well-formed file: the chat-model check catches it
    for _ in range(2):  # the second time from the validation cache
        with pytest.raises(ModelLoadError) as err:
            validate_gguf(path)
        assert "header-only.gguf" in str(err.value) and "no weights" in str(err.value)
        assert "download the complete model file again" in str(err.value)
    with pytest.raises(ModelLoadError, match=r"header-only\.gguf holds only metadata"):
        Engine.load(path, n_ctx=256, n_threads=1)


def test_no_template_and_no_known_chat_architecture(tmp_path: Path) -> None:
    encoder = _gguf(tmp_path / "encoder.gguf", "bert", tensors=True)
    with pytest.raises(ModelLoadError) as err:
        validate_gguf(encoder)
    message = str(err.value)
    assert message.startswith("encoder.gguf is not a chat model") and "(bert)" in message
    assert "choose an instruction-tuned chat GGUF" in message
    # the same architecture with a chat template of its own is a chat model; so is a known architecture
    # without one (TARA formats it with ChatML)
    validate_gguf(_gguf(tmp_path / "encoder-chat.gguf", "bert", tensors=True, chat_template=GOOD_TEMPLATE))
    validate_gguf(write_valid_gguf(tmp_path / "plain-llama.gguf", chat_template=None))


def test_an_adapter_is_not_a_model(tiny_lora: Path) -> None:
    with pytest.raises(ModelLoadError, match="is a LoRA adapter, not a model"):
        validate_gguf(tiny_lora)
    validate_gguf(tiny_lora, chat_model=False)  # as an adapter it is fine
    with pytest.raises(ModelLoadError, match="is a LoRA adapter, not a model"):
        validate_gguf(tiny_lora)


def test_tara_chat_model_says_it_is_no_chat_model(tmp_path: Path, capsys: Any) -> None:
    from tara_desktop.cli import main

    path = _gguf(tmp_path / "header-only.gguf", "llama", tensors=False, chat_template=GOOD_TEMPLATE)
    try:
        code = main(["chat", "--model", str(path), "hello"])
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
    assert "header-only.gguf holds only metadata and no weights" in lines[0]
