"""``tara gguf repair``: metadata-only damage gives a valid copy with the same tensor data; anything else
is refused with a clear line and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tara_desktop.cli import main as tara
from tara_desktop.errors import TaraError
from tara_desktop.jobs import Cancelled, JobState
from tara_desktop.llm import gguf_file
from tara_desktop.llm.gguf_reader import InvalidGguf
from tara_desktop.llm.gguf_repair import repair

from .gguf_corpus import GOOD_TEMPLATE, repairable_files, write_valid_gguf


def _tensor_bytes(path: Path) -> dict[str, bytes]:
    info = gguf_file.inspect(path)
    data = path.read_bytes()
    return {t.name: data[t.offset : t.offset + t.n_bytes] for t in info.tensors}


def test_every_metadata_only_damage_is_repaired(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cases = repairable_files(tmp_path)
    assert {name for name, _p, _w in cases} >= {"broken_template", "bad_utf8_value", "duplicate_key", "alignment_not_pow2"}
    for name, damaged, _phrase in cases:
        out = out_dir / f"{name}.gguf"
        report = repair(damaged, out)
        assert report.out == out and report.fixes, name
        fixed = gguf_file.validate(out)  # raises if the copy is not valid
        assert fixed.problems == ()
        # the tensor data is carried over byte for byte
        assert _tensor_bytes(out) == _tensor_bytes(damaged), name
        assert fixed.architecture == "llama" and fixed.tensor_count == 10
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(f"{n}.gguf" for n, _p, _w in cases)


def test_what_each_repair_does(tmp_path: Path) -> None:
    cases = {name: path for name, path, _w in repairable_files(tmp_path)}

    out = tmp_path / "t.gguf"
    report = repair(cases["broken_template"], out)
    assert "removed the chat template" in report.fixes[0]
    info = gguf_file.validate(out)
    assert not info.chat_template and "tokenizer.chat_template" not in info.metadata

    out = tmp_path / "u.gguf"
    repair(cases["bad_utf8_value"], out)
    assert gguf_file.validate(out).metadata["general.description"] == "pl\ufffdin words here"

    out = tmp_path / "d.gguf"
    report = repair(cases["duplicate_key"], out)
    assert report.fixes == ["dropped the second copy of metadata key general.name"]
    assert gguf_file.validate(out).name == "tiny test model"

    out = tmp_path / "a.gguf"
    report = repair(cases["alignment_not_pow2"], out)
    assert report.fixes == ["set general.alignment to 64, the alignment the tensor data is laid out with"]
    assert gguf_file.validate(out).alignment == 64

    out = tmp_path / "w.gguf"
    repair(cases["alignment_wrong"], out)
    fixed = gguf_file.validate(out)
    assert fixed.alignment == 32 and fixed.metadata["general.alignment"] == 32


def test_a_good_chat_template_survives_repair(tmp_path: Path) -> None:
    cases = {name: path for name, path, _w in repairable_files(tmp_path)}
    out = tmp_path / "d.gguf"
    repair(cases["duplicate_key"], out)
    assert gguf_file.validate(out).metadata["tokenizer.chat_template"] == GOOD_TEMPLATE


def test_structural_damage_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    good = write_valid_gguf(tmp_path / "good.gguf")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good.read_bytes()[:-500])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(InvalidGguf) as err:
        repair(cut, out_dir / "fixed.gguf")
    message = str(err.value)
    assert message.startswith("the damage is not in metadata only, so it cannot be repaired: ")
    assert "truncated, download it again" in message
    assert list(out_dir.iterdir()) == []


def test_a_valid_file_needs_no_repair_and_out_must_differ(tmp_path: Path) -> None:
    good = write_valid_gguf(tmp_path / "good.gguf")
    with pytest.raises(TaraError, match="nothing to repair"):
        repair(good, tmp_path / "x.gguf")
    damaged = dict((n, p) for n, p, _w in repairable_files(tmp_path))["duplicate_key"]
    before = damaged.read_bytes()
    with pytest.raises(TaraError, match="new file"):
        repair(damaged, damaged)
    assert damaged.read_bytes() == before


def test_cancel_leaves_nothing_behind(tmp_path: Path) -> None:
    damaged = dict((n, p) for n, p, _w in repairable_files(tmp_path))["broken_template"]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    state = JobState()
    state.cancel()
    with pytest.raises(Cancelled):
        repair(damaged, out_dir / "fixed.gguf", state=state)
    assert list(out_dir.iterdir()) == []


def test_cli_repair_both_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    damaged = dict((n, p) for n, p, _w in repairable_files(tmp_path))["broken_template"]
    out = tmp_path / "fixed.gguf"
    assert tara(["gguf", "repair", str(damaged), str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "fixed: removed the chat template" in stdout and f"ok: wrote {out}" in stdout
    assert tara(["gguf", "validate", str(out)]) == 0
    capsys.readouterr()

    good = write_valid_gguf(tmp_path / "good.gguf")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good.read_bytes()[:3000])
    assert tara(["gguf", "repair", str(cut), str(tmp_path / "never.gguf")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: the damage is not in metadata only, so it cannot be repaired")
    assert captured.err.count("\n") == 1
    assert not (tmp_path / "never.gguf").exists()
