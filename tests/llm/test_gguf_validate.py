"""The GGUF validator on a real file written with gguf's GGUFWriter and on a corpus of damaged files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tara_desktop.cli import main as tara
from tara_desktop.errors import TaraError
from tara_desktop.llm import gguf_file
from tara_desktop.llm.gguf_reader import InvalidGguf

from .gguf_corpus import (
    N_EMBD,
    N_HEAD,
    N_HEAD_KV,
    N_LAYERS,
    VOCAB,
    bad_files,
    repairable_files,
    tokenizer_damage_files,
    write_valid_gguf,
)


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_valid_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_inspect_reads_the_metadata_and_tensors(valid: Path) -> None:
    info = gguf_file.inspect(valid)
    assert info.version == 3
    assert info.architecture == "llama"
    assert info.name == "tiny test model"
    assert info.model_type == "model"
    assert info.context_length == 256
    assert info.chat_template is True
    assert info.tokenizer_model == "llama"
    assert info.vocab_size == len(VOCAB)
    assert (info.n_layers, info.n_embd, info.n_head, info.n_head_kv) == (N_LAYERS, N_EMBD, N_HEAD, N_HEAD_KV)
    assert info.file_type == "Q8_0" and info.quantization == "Q8_0"
    assert info.size_bytes == valid.stat().st_size
    assert info.tensor_count == 10
    assert info.tensor_types == {"F32": 4, "Q8_0": 4, "F16": 2}
    embd = info.tensors[0]
    assert embd.name == "token_embd.weight" and embd.shape == (N_EMBD, len(VOCAB))
    assert embd.n_bytes == N_EMBD * len(VOCAB) * 4
    q = next(t for t in info.tensors if t.name == "blk.0.attn_q.weight")
    assert q.type_name == "Q8_0" and q.n_bytes == N_EMBD * N_EMBD // 32 * 34
    # the parameter count is the sum of the tensors' elements
    assert info.parameter_count == sum(t.n_elements for t in info.tensors)
    assert info.parameter_count == len(VOCAB) * N_EMBD + N_LAYERS * (8 + 3 * N_EMBD * N_EMBD - N_EMBD * N_EMBD // 2) + N_EMBD
    # every tensor's data is where gguf's own reader finds it
    import gguf

    reader = gguf.GGUFReader(str(valid))
    for ours, theirs in zip(info.tensors, reader.tensors, strict=True):
        assert ours.name == theirs.name
        assert ours.offset == theirs.data_offset
        assert ours.n_bytes == theirs.n_bytes
    assert info.problems == ()


def test_kv_cache_estimate_uses_layers_heads_and_head_dim(valid: Path) -> None:
    info = gguf_file.inspect(valid)
    head_dim = N_EMBD // N_HEAD
    assert info.kv_cache_bytes(1000) == N_LAYERS * 1000 * N_HEAD_KV * 2 * head_dim * 2


def test_validate_checks_the_sha256(valid: Path) -> None:
    digest = hashlib.sha256(valid.read_bytes()).hexdigest()
    info = gguf_file.validate(valid, expected_sha256=digest.upper())
    assert info.sha256 == digest
    with pytest.raises(InvalidGguf, match=r"sha256 is .* but 0+ was expected: .*download it again"):
        gguf_file.validate(valid, expected_sha256="0" * 64)


def test_invalid_gguf_is_a_tara_error() -> None:
    assert issubclass(InvalidGguf, TaraError)


def test_missing_file_and_folder_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidGguf, match=r"does not exist"):
        gguf_file.validate(tmp_path / "nope.gguf")
    with pytest.raises(InvalidGguf, match=r"is a folder"):
        gguf_file.validate(tmp_path)
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe.gguf"
        os.mkfifo(fifo)
        with pytest.raises(InvalidGguf, match="not a regular file"):
            gguf_file.validate(fifo)  # must not block waiting for a writer


def _corpus(valid: Path) -> list:
    return bad_files(valid.read_bytes()) + tokenizer_damage_files(valid.parent)


def test_every_bad_file_is_rejected_with_its_reason(valid: Path, tmp_path: Path) -> None:
    corpus = _corpus(valid)
    assert len(corpus) > 40
    for bad in corpus:
        path = tmp_path / f"{bad.name}.gguf"
        path.write_bytes(bad.data)
        with pytest.raises(InvalidGguf) as err:
            gguf_file.validate(path)
        message = str(err.value)
        assert bad.expect in message, (bad.name, message)
        assert "\n" not in message
        # every message says what to do
        assert any(w in message for w in ("download", "re-export", "choose", "convert")), (bad.name, message)


def test_truncation_message_names_the_tensor_and_the_sizes(valid: Path, tmp_path: Path) -> None:
    data = valid.read_bytes()
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[:-100])
    with pytest.raises(InvalidGguf) as err:
        gguf_file.validate(path)
    assert str(err.value) == (
        f"tensor output_norm.weight ends at byte {len(data)} but the file has {len(data) - 100} bytes: "
        "the file is truncated, download it again"
    )


def test_cli_rejects_every_bad_file_with_exit_2_and_one_error_line(
    valid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for bad in _corpus(valid):
        path = tmp_path / f"{bad.name}.gguf"
        path.write_bytes(bad.data)
        assert tara(["gguf", "validate", str(path)]) == 2, bad.name
        out, err = capsys.readouterr()
        assert out == ""
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (bad.name, err)


def test_metadata_damage_is_rejected_and_points_to_repair(tmp_path: Path) -> None:
    for name, path, phrase in repairable_files(tmp_path):
        with pytest.raises(InvalidGguf) as err:
            gguf_file.validate(path)
        assert phrase in str(err.value), name
        assert "tara gguf repair" in str(err.value)
        # inspect still describes the file and lists the problem
        info = gguf_file.inspect(path)
        assert info.problems and info.tensor_count == 10


def test_cli_validate_and_info_on_a_good_file(valid: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tara(["gguf", "validate", str(valid)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ok: ") and err == ""
    digest = hashlib.sha256(valid.read_bytes()).hexdigest()
    assert tara(["gguf", "validate", "--sha256", digest, str(valid)]) == 0
    capsys.readouterr()
    assert tara(["gguf", "validate", "--sha256", "ab" * 32, str(valid)]) == 2
    assert capsys.readouterr().err.startswith("error: the file's sha256 is")
    assert tara(["gguf", "info", str(valid)]) == 0
    out = capsys.readouterr().out
    fields = {line[:16].strip(): line[16:].strip() for line in out.splitlines()}
    assert fields["architecture"] == "llama"
    assert fields["quantization"] == "Q8_0"
    assert fields["chat template"] == "yes"
    assert fields["parameters"] == "21.07K"
    assert tara(["gguf", "info", "--json", "--tensors", str(valid)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["architecture"] == "llama" and data["context_length"] == 256
    assert len(data["tensors"]) == 10


def test_the_installed_command_runs_as_a_process(valid: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(valid.read_bytes()[:5000])
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-m", "tara_desktop.cli", "gguf", "validate", str(bad)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr


def test_a_large_vocabulary_is_walked_with_bounds(tmp_path: Path) -> None:
    import struct

    import gguf
    import numpy as np

    path = tmp_path / "vocab.gguf"
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_token_list([f"token{i}" for i in range(1000)])
    w.add_tensor("x", np.zeros(8, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    data = path.read_bytes()
    assert gguf_file.validate(path).vocab_size == 1000
    at = data.index(b"token500") - 8
    bad = bytearray(data)
    struct.pack_into("<Q", bad, at, 1 << 50)
    path.write_bytes(bytes(bad))
    with pytest.raises(InvalidGguf, match=r"^item 500 of tokenizer\.ggml\.tokens claims to be 1125899906842624 bytes"):
        gguf_file.validate(path)
    path.write_bytes(data[: at + 4])
    with pytest.raises(InvalidGguf, match="truncated"):
        gguf_file.validate(path)


def test_kept_metadata_is_bounded_however_much_the_file_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tara_desktop.llm import gguf_reader

    monkeypatch.setattr(gguf_reader, "KEEP_TOTAL_BYTES", 1 << 20)
    strings = {f"tara.blob{i}": chr(ord("a") + i) * 400_000 for i in range(4)}
    path = write_valid_gguf(tmp_path / "blobs.gguf", extra_strings=strings)
    info = gguf_file.validate(path)
    kept = [info.metadata[k] is not None for k in strings]
    assert kept == [True, True, False, False]  # 1 MiB holds two of them; the rest are checked, not kept
    assert info.architecture == "llama" and info.tensor_count == 10
