"""Quantization through llama.cpp, the size/perplexity table, and ``tara export`` end to end (exit codes,
registration in the profile, and an export killed with SIGKILL leaving nothing at OUT)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tara_desktop import cli
from tara_desktop.jobs import JobState
from tara_desktop.training import export_job as ej
from tara_desktop.training import gguf_export as gx
from tara_desktop.training import quantize as qz

ROOT = Path(__file__).resolve().parents[2]
TEXT = (
    "Drink water, sleep well, and see a doctor when a pain does not go away after a few days. "
    "A small business needs a plan, a budget and customers who come back. Write down income and costs every week."
)


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 256-wide tiny llama folder (K-quant friendly rows) and its f16 GGUF."""
    from tests.support.tiny_base import build_tiny_base

    root = tmp_path_factory.mktemp("wide")
    folder = build_tiny_base(root / "wide", arch="llama", hidden_size=256, layers=2, seed=0)
    f16 = root / "wide.f16.gguf"
    gx.write_model_gguf(folder, f16, dtype="f16")
    return folder, f16


@pytest.fixture(scope="module")
def narrow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64-wide tiny llama folder: rows too short for K-quants."""
    from tests.support.tiny_base import build_tiny_base

    return build_tiny_base(tmp_path_factory.mktemp("narrow") / "narrow", arch="llama", seed=0)


@pytest.mark.slow
def test_every_quantization_loads_generates_and_reports_perplexity(wide: tuple[Path, Path], tmp_path: Path) -> None:
    import llama_cpp

    _folder, f16 = wide
    keep = {q: tmp_path / f"{q}.gguf" for q in qz.QUANTS}
    rows, reports = qz.compare_quantizations(f16, list(qz.QUANTS), TEXT, tmp_path, keep=keep, max_tokens=256)
    assert [r.label for r in rows] == ["F16", *qz.QUANTS]
    for row in rows:
        assert 1.0 < row.perplexity < 10 * 400, row  # finite, and no worse than far beyond a uniform guess
    sizes = {r.label: r.size_bytes for r in rows}
    assert sizes["Q2_K"] < sizes["Q4_K_M"] < sizes["Q5_K_M"] < sizes["Q8_0"] < sizes["F16"]
    table = qz.format_table(rows)
    for q in qz.QUANTS:
        assert q in table
        assert reports[q].fallbacks == [], f"{q}: 256-wide rows need no fallback, got {reports[q].fallbacks}"
        assert any(t.startswith(q.split("_")[0]) for t in reports[q].type_counts), reports[q].type_counts
        llm = llama_cpp.Llama(model_path=str(keep[q]), n_ctx=64, n_threads=1, seed=0, verbose=False)
        try:
            out = llm.create_completion("Hello", max_tokens=4, temperature=0.0)
            assert out["usage"]["completion_tokens"] >= 1  # type: ignore[index]
        finally:
            llm.close()


@pytest.mark.slow
def test_k_quant_on_short_rows_reports_the_fallback(narrow: Path, tmp_path: Path) -> None:
    f32 = tmp_path / "narrow.gguf"
    gx.write_model_gguf(narrow, f32, dtype="f32")
    report = qz.quantize(f32, tmp_path / "q4.gguf", "q4_k_m")
    assert report.fallbacks, "64-wide rows cannot be Q4_K: llama.cpp falls back and we must say so"
    assert all(kind not in qz.QUANTS["Q4_K_M"][1] for _, kind in report.fallbacks)
    assert "fell back from Q4_K_M" in report.fallback_summary()
    assert qz.quantize(f32, tmp_path / "q8.gguf", "Q8_0").fallbacks == []  # 64 is a multiple of Q8_0's 32


def test_unknown_quantization_is_refused() -> None:
    with pytest.raises(Exception, match="choose one of"):
        qz.check_quant("Q3_K_S")


@pytest.mark.slow
def test_export_with_quant_writes_the_chosen_type_and_a_table(wide: tuple[Path, Path], tmp_path: Path) -> None:
    folder, _ = wide
    out = tmp_path / "model.gguf"
    result = ej.run_export(ej.ExportRequest(folder, out, quant="Q8_0", eval_text=TEXT), JobState())
    assert result.quant is not None and result.quant.quant == "Q8_0"
    assert [r.label for r in result.table] == ["F16", "Q8_0"]
    assert {k for k in result.quant.type_counts} == {"Q8_0", "F32"}
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]  # no work files left


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_exit_codes(narrow: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, "export", str(tmp_path / "missing"), "--gguf", str(tmp_path / "a.gguf"))
    assert code == 2 and err.startswith("error:") and "does not exist" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        cli.main(["export", str(narrow), "--gguf", str(tmp_path / "a.gguf"), "--quant", "Q3"])
    assert exc.value.code == 2 and "unknown quantization" in capsys.readouterr().err
    code, _, err = _cli(capsys, "export", str(narrow), "--gguf", str(tmp_path / "a.gguf"), "--domain", "astrology")
    assert code == 2 and "unknown domain" in err
    existing = tmp_path / "b.gguf"
    existing.write_bytes(b"keep me")
    code, _, err = _cli(capsys, "export", str(narrow), "--gguf", str(existing))
    assert code == 2 and "--force" in err and existing.read_bytes() == b"keep me"
    code, out, _ = _cli(capsys, "export", str(narrow), "--gguf", str(existing), "--force", "--no-register")
    assert code == 0 and "wrote" in out and existing.read_bytes()[:4] == b"GGUF"


@pytest.mark.slow
def test_cli_registers_the_export_for_its_domain(narrow: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tara_desktop.config import load_configs
    from tara_desktop.model_mapping import merge_mapping, stored_choices
    from tara_desktop.profile import Profile

    out = tmp_path / "health.gguf"
    code, stdout, err = _cli(capsys, "export", str(narrow), "--gguf", str(out), "--domain", "healthcare")
    assert code == 0, err
    assert "registered for domain healthcare" in stdout
    with Profile.open() as profile:
        overrides = stored_choices(profile.store)
        assert overrides["healthcare"]["model"] == str(out.resolve()) and overrides["healthcare"]["adapter"] is None
        assert profile.audit.verify()
    mapping = merge_mapping(load_configs().mapping, overrides)
    assert mapping.for_domain("healthcare").model == str(out.resolve())
    assert mapping.for_domain("business").model == load_configs().mapping.for_domain("business").model


@pytest.mark.slow
def test_killed_export_leaves_nothing_at_the_final_path(wide: tuple[Path, Path], tmp_path: Path) -> None:
    folder, _ = wide
    out = tmp_path / "killed.gguf"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-m", "tara_desktop.cli", "export", str(folder), "--gguf", str(out), "--quant", "Q4_K_M",
         "--compare", "--no-register"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    partial_seen = False
    try:
        while time.monotonic() < deadline and child.poll() is None:
            if list(tmp_path.glob(f".{out.name}.*{gx.PARTIAL_SUFFIX}")):
                partial_seen = True
                break
            time.sleep(0.005)
        assert partial_seen, "the export never started writing (or finished before it could be killed)"
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    assert not out.exists(), "a killed export must leave nothing at the final path"
    # the next export to the same place clears the dead export's partial file and succeeds
    ej.run_export(ej.ExportRequest(folder, out, eval_text=TEXT), JobState())
    assert [p.name for p in tmp_path.iterdir()] == ["killed.gguf"]
