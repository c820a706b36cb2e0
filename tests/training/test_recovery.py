"""Recovery state and checkpoint files, without training: job.json, interrupted-job discovery,
atomic checkpoint folders and their verification."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


# -- resume races: dying workers, and one job per folder at a time ------------------------------------

HOLD_LOCK = (
    "import fcntl, sys, time\n"
    "f = open(sys.argv[1], 'a+b')\n"
    "fcntl.flock(f.fileno(), fcntl.LOCK_EX)\n"
    "print('locked', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
)


def _zombie() -> subprocess.Popen[bytes]:
    """A child that has exited but is not reaped yet (what a SIGKILLed worker is until its parent waits)."""
    import psutil

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    proc = psutil.Process(child.pid)
    while proc.status() != psutil.STATUS_ZOMBIE:
        import time

        time.sleep(0.01)
    return child


def test_a_killed_worker_not_yet_reaped_counts_as_dead(tmp_path: Path) -> None:
    import psutil
    import pytest

    if sys.platform == "win32":
        pytest.skip("zombies are POSIX")
    child = _zombie()
    try:
        record = recovery.JobRecord(spec=_spec(tmp_path / "job"), status="running", pid=child.pid,
                                    pid_started_at=psutil.Process(child.pid).create_time())
        assert not recovery.is_alive(record)
        recovery.write_job(record)
        [found] = recovery.find_interrupted_jobs(tmp_path)
        assert found.record.pid == child.pid
        from tara_desktop.training.supervisor import prepare_job

        assert prepare_job(_spec(tmp_path / "job"), resume=True).job_dir == tmp_path / "job"
    finally:
        child.wait()


def test_a_second_job_in_the_same_folder_is_refused_while_one_runs(tmp_path: Path, monkeypatch: Any) -> None:
    import pytest

    from tara_desktop.errors import TaraError
    from tara_desktop.training import supervisor

    if sys.platform == "win32":
        pytest.skip("the helper holds an fcntl lock")
    job_dir = tmp_path / "job"
    recovery.write_job(recovery.JobRecord(spec=_spec(job_dir), status="crashed"))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(recovery.lock_path(job_dir)), "30"],
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        assert recovery.is_locked(job_dir)
        assert recovery.find_interrupted_jobs(tmp_path) == []  # running elsewhere: not offered for resume
        with pytest.raises(TaraError, match="being trained by another TARA process right now"):
            supervisor.lock_job(job_dir, wait=0.2)
        monkeypatch.setattr(supervisor, "DYING_WAIT_S", 0.2)
        with pytest.raises(TaraError, match="being trained by another TARA process right now"):
            supervisor.run_supervised(_spec(job_dir), supervisor.JobState(), b"{}", resume=True)
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    lock = supervisor.lock_job(job_dir, wait=5.0)  # free once its holder is gone
    assert lock.held
    lock.release()


def test_a_lock_released_by_a_dying_job_is_waited_for(tmp_path: Path) -> None:
    import pytest

    from tara_desktop.training import supervisor

    if sys.platform == "win32":
        pytest.skip("the helper holds an fcntl lock")
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(recovery.lock_path(job_dir)), "0.5"],
                              stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
    lock = supervisor.lock_job(job_dir, wait=20.0)  # the holder ends within the wait: no refusal
    assert lock.held
    lock.release()
    holder.wait()
    holder.stdout.close()


def test_the_worker_inherits_the_job_lock(tmp_path: Path) -> None:
    """The lock outlives the app that took it while its worker runs, and goes with the worker."""
    import pytest

    from tara_desktop.training import supervisor

    if sys.platform == "win32":
        pytest.skip("descriptor inheritance of flock is POSIX")
    job_dir = tmp_path / "job"
    spec = _spec(job_dir)
    recovery.write_job(recovery.JobRecord(spec=spec))
    fake_worker = tmp_path / "worker"
    fake_worker.write_text(f"#!{sys.executable}\nimport sys, time\nsys.stdin.buffer.read(8)\ntime.sleep(60)\n")
    fake_worker.chmod(0o755)
    lock = supervisor.lock_job(job_dir)
    sup = supervisor.TrainingSupervisor(spec, b"", python=str(fake_worker), lock=lock)
    sup.start()
    lock.release()  # the app is gone ...
    try:
        assert recovery.is_locked(job_dir)  # ... the worker still holds the folder
    finally:
        sup.kill()
        outcome = sup.wait()  # reaps it and closes its pipes
    assert outcome.status == "crashed"
    assert not recovery.is_locked(job_dir)


def test_a_full_disk_in_the_worker_is_said_as_such(tmp_path: Path) -> None:
    import pytest

    from tara_desktop.training import supervisor

    if sys.platform == "win32":
        pytest.skip("a shebang script stands in for the worker")
    spec = _spec(tmp_path / "job")
    recovery.write_job(recovery.JobRecord(spec=spec))
    fake_worker = tmp_path / "worker"
    event = {"type": "error", "message": "training failed: OSError: [Errno 28] No space left on device: '/j/ck'"}
    fake_worker.write_text(f"#!{sys.executable}\nimport sys\nprint({json.dumps(json.dumps(event))}, flush=True)\n"
                           "sys.exit(1)\n")
    fake_worker.chmod(0o755)
    sup = supervisor.TrainingSupervisor(spec, b"", python=str(fake_worker))
    sup.start()
    outcome = sup.wait()
    assert outcome.status == "failed"
    assert "the disk is full (/j/ck); free some space" in outcome.message and "resume it" in outcome.message
