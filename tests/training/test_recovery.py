"""Recovery state and checkpoint files, without training: job.json, interrupted-job discovery,
atomic checkpoint folders and their verification."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tara_desktop.training import checkpoints as ck
from tara_desktop.training import recovery
from tara_desktop.training.spec import TrainingSpec


def _spec(out: Path) -> TrainingSpec:
    return TrainingSpec(domain="general", base="/models/base", out_dir=str(out), data_path="d.jsonl", threads=1)


def _state_file(tmp: Path) -> None:
    (tmp / ck.STATE_FILE).write_bytes(b"optimizer state")
    (tmp / "adapter_model.safetensors").write_bytes(b"weights" * 100)


def test_jobs_whose_process_is_gone_are_interrupted(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    crashed = recovery.JobRecord(spec=_spec(tmp_path / "machine-died"), status="running", pid=dead.pid,
                                 pid_started_at=1.0)
    recovery.write_job(crashed)
    ck.write_checkpoint(crashed.spec.checkpoints_dir, 40, _state_file, {})
    mine = recovery.JobRecord(spec=_spec(tmp_path / "running-here"))
    recovery.claim(mine)  # owned by this live process
    recovery.write_job(recovery.JobRecord(spec=_spec(tmp_path / "finished"), status="done"))
    recovery.write_job(recovery.JobRecord(spec=_spec(tmp_path / "stopped"), status="cancelled"))
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "job.json").write_text("{not json")

    found = {j.record.job_dir.name: j for j in recovery.find_interrupted_jobs(tmp_path)}
    assert set(found) == {"machine-died", "stopped"}
    assert found["machine-died"].resume_step == 40
    assert found["machine-died"].reason == "the app or the machine stopped while it was training"
    assert found["stopped"].resume_step == 0 and found["stopped"].reason == "it was stopped"


def test_a_moved_job_folder_is_still_found_where_it_is(tmp_path: Path) -> None:
    recovery.write_job(recovery.JobRecord(spec=_spec(tmp_path / "old-place"), status="cancelled"))
    os.replace(tmp_path / "old-place", tmp_path / "new-place")
    [job] = recovery.find_interrupted_jobs(tmp_path)
    assert job.record.spec.out_dir == str(tmp_path / "new-place")


def test_checkpoint_is_atomic_and_verified(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    for step in (10, 20, 30):
        ck.write_checkpoint(root, step, _state_file, {"epoch": step / 10})
    assert [p.name for p in ck.list_checkpoint_dirs(root)] == ["step-000030", "step-000020", "step-000010"]
    manifest = json.loads((root / "step-000030" / ck.MANIFEST).read_text())
    assert manifest["step"] == 30 and manifest["epoch"] == 3.0
    assert set(manifest["files"]) == {ck.STATE_FILE, "adapter_model.safetensors"}

    # Truncate a file of the newest: it is skipped, with the reason, and the next one is used.
    (root / "step-000030" / ck.STATE_FILE).write_bytes(b"optim")
    skipped: list[str] = []
    best = ck.newest_complete(root, on_skip=skipped.append)
    assert best is not None and best.step == 20
    assert skipped == ["checkpoint step-000030: training_state.pt is corrupt (checksum mismatch), skipped"]
    # A damaged manifest, a missing file.
    (root / "step-000020" / ck.MANIFEST).write_text('{"files": ')
    (root / "step-000010" / "adapter_model.safetensors").unlink()
    skipped.clear()
    assert ck.newest_complete(root, on_skip=skipped.append) is None
    assert skipped[1] == "checkpoint step-000020: unreadable manifest (JSONDecodeError), skipped"
    assert skipped[2] == "checkpoint step-000010: adapter_model.safetensors is missing, skipped"

    # Saving the same step again replaces it; pruning keeps the newest intact ones.
    ck.write_checkpoint(root, 40, _state_file, {})
    ck.write_checkpoint(root, 40, _state_file, {"again": True})
    assert json.loads((root / "step-000040" / ck.MANIFEST).read_text())["again"] is True
    ck.write_checkpoint(root, 50, _state_file, {})
    ck.prune(root, keep=2)
    assert [p.name for p in ck.list_checkpoint_dirs(root)] == ["step-000050", "step-000040"]
    assert not [p for p in root.iterdir() if p.name.endswith((".tmp", ".old"))]


def test_read_job_errors_are_one_sentence(tmp_path: Path) -> None:
    import pytest

    from tara_desktop.errors import TaraError

    with pytest.raises(TaraError, match="holds no training job"):
        recovery.read_job(tmp_path)
    (tmp_path / "job.json").write_text("[]")
    with pytest.raises(TaraError, match="is unreadable"):
        recovery.read_job(tmp_path)
