"""`tara train`: exit codes and one-line errors for bad input; a real run; Ctrl-C and --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tara_desktop.cli import main

from .helpers import make_pairs, write_jsonl


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", make_pairs(40))


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["train", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    return lines[0]


def test_bad_input_exits_2_with_one_error_line(
    capsys: pytest.CaptureFixture[str], tiny_base: Path, data_file: Path, tmp_path: Path
) -> None:
    out = str(tmp_path / "job")
    base = str(tiny_base)
    code, _, err = _run(capsys, "astrology", "--base", base, "--data", str(data_file), "--out", out)
    assert code == 2 and "unknown domain 'astrology'; choose one of" in _one_error(err)

    code, _, err = _run(capsys, "general", "--base", base, "--data", str(tmp_path / "nope.jsonl"), "--out", out)
    assert code == 2 and "nope.jsonl not found" in _one_error(err)

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c", "response": "d"}\n{"text": "x"}\n')
    code, _, err = _run(capsys, "general", "--base", base, "--data", str(bad), "--out", out)
    assert code == 2 and "line 3: expected a JSON object with 'messages' or 'prompt'/'response'" in _one_error(err)

    code, _, err = _run(capsys, "general", "--base", str(tmp_path / "nobase"), "--data", str(data_file), "--out", out)
    assert code == 2 and "not found; give a Hugging Face model folder or a .gguf file" in _one_error(err)

    code, _, err = _run(capsys, "general", "--base", str(data_file), "--data", str(data_file), "--out", out)
    assert code == 2 and "is not a base model" in _one_error(err)

    code, _, err = _run(capsys, "general", "--base", base, "--data", str(data_file), "--out", out, "--epochs", "0")
    assert code == 2 and "--epochs must be at least 1" in _one_error(err)

    code, _, err = _run(capsys, "general", "--out", out, "--resume")
    assert code == 2 and "holds no training job to resume" in _one_error(err)

    occupied = tmp_path / "occupied"
    (occupied / "checkpoints" / "step-000010").mkdir(parents=True)
    code, _, err = _run(capsys, "general", "--base", base, "--data", str(data_file), "--out", str(occupied))
    assert code == 2 and "already holds a training job; use --resume" in _one_error(err)
    assert not (tmp_path / "job").exists()  # nothing was started


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT to a process group (POSIX)")
def test_train_then_ctrl_c_then_resume(tiny_base: Path, data_file: Path, tmp_path: Path) -> None:
    """A real `tara train` process: Ctrl-C stops it with a checkpoint (exit 130); --resume finishes it."""
    out = tmp_path / "job"
    cmd = [sys.executable, "-m", "tara_desktop.cli", "train", "general", "--base", str(tiny_base),
           "--data", str(data_file), "--out", str(out), "--max-steps", "400", "--save-every", "100",
           "--threads", "1", "--lr", "0.005"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    job = json.loads((out / "job.json").read_text())
    assert job["status"] == "cancelled"
    stopped_at = job["step"]
    assert 3 <= stopped_at < 400
    assert (out / "checkpoints" / f"step-{stopped_at:06d}" / "manifest.json").is_file()

    done = subprocess.run(
        [sys.executable, "-m", "tara_desktop.cli", "train", "general", "--out", str(out), "--resume"],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"resumed at step {stopped_at}" in done.stderr
    assert "validation loss" in done.stdout and "adapter:" in done.stdout
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert json.loads((out / "job.json").read_text())["status"] == "done"


@pytest.mark.parametrize("case", [
    ("--threads", "100000", "--threads 100000 is more than this machine's"),
    ("--max-steps", "0", "--max-steps must be at least 1; got 0 (leave it out to train for --epochs)"),
    ("--max-steps", "-3", "--max-steps must be at least 1"),
    ("--threads", "0", "--threads must be at least 1"),
    ("--dropout", "1.5", "--dropout must be from 0 up to"),
    ("--lr", "0", "--lr must be more than 0"),
])
def test_out_of_range_options_are_refused_up_front(
    capsys: pytest.CaptureFixture[str], data_file: Path, tmp_path: Path, case: tuple[str, str, str]
) -> None:
    flag, value, message = case
    out = tmp_path / "job"
    code, _, err = _run(capsys, "general", "--base", str(tmp_path / "any"), "--data", str(data_file),
                        "--out", str(out), flag, value)
    assert code == 2 and message in _one_error(err)
    assert not out.exists()  # refused before anything was made
