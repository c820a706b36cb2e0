"""The job in a real child process: crash (SIGKILL) detection, recovery and exact resume."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tara_desktop.errors import TaraError
from tara_desktop.jobs import Cancelled, JobState
from tara_desktop.training import job, recovery, supervisor

from .helpers import small_spec

pytestmark = pytest.mark.slow


def _same_adapter(a: Path, b: Path) -> None:
    import torch
    from safetensors.torch import load_file

    ta = load_file(str(a / "adapter_model.safetensors"))
    tb = load_file(str(b / "adapter_model.safetensors"))
    assert ta.keys() == tb.keys() and ta
    for k in ta:
        assert torch.allclose(ta[k], tb[k], rtol=0, atol=1e-6), k


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkilled_job_is_found_and_resumes_to_the_same_result(
    tiny_base: Path, dataset_bytes: bytes, tmp_path: Path
) -> None:
    root = tmp_path / "jobs"
    # 60 steps, checkpoints every 10: killed right after step 23, so it must resume from step 20.
    spec = small_spec(tiny_base, root / "general", max_steps=60, save_every=10, sample_count=0)
    sup_box: list[supervisor.TrainingSupervisor] = []
    seen: list[int] = []

    def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "metrics":
            seen.append(event["step"])
            if event["step"] == 23:
                os.kill(sup_box[0].pid or 0, signal.SIGKILL)

    outcome = supervisor.run_supervised(spec, JobState(), dataset_bytes, on_event=on_event, on_start=sup_box.append)
    assert outcome.status == "crashed"
    assert outcome.returncode == -signal.SIGKILL
    assert "killed by SIGKILL" in outcome.message and "resume" in outcome.message
    assert not (root / "general" / "adapter").exists()
    assert seen[-1] < 60

    [found] = recovery.find_interrupted_jobs(root)
    assert found.record.status == "crashed" and found.resume_step == 20

    # A new job in the same folder is refused; resuming works.
    with pytest.raises(TaraError, match="already holds a training job; use --resume"):
        supervisor.prepare_job(small_spec(tiny_base, root / "general"), resume=False)
    events: list[dict[str, Any]] = []
    resumed = supervisor.run_supervised(found.record.spec, JobState(), dataset_bytes, resume=True, on_event=events.append)
    assert resumed.status == "done", resumed.message
    assert resumed.result is not None and resumed.result["resumed_from"] == 20
    assert next(e for e in events if e["type"] == "started")["resumed_from"] == 20
    assert recovery.find_interrupted_jobs(root) == []

    # The same job, never interrupted, run in this process: the same adapter and final metrics.
    ref = job.run(small_spec(tiny_base, tmp_path / "ref", max_steps=60, save_every=10, sample_count=0),
                  JobState(), dataset_bytes)
    _same_adapter(root / "general" / "adapter", tmp_path / "ref" / "adapter")
    assert resumed.result["val_loss_after"] == pytest.approx(ref.val_loss_after, abs=1e-6)
    # The dataset reached the child through a pipe: no file in the job folder holds its text.
    files = [p for p in (root / "general").rglob("*") if p.is_file()]
    assert len(files) > 10
    assert not [p for p in files if b"colour" in p.read_bytes()]


def test_cancel_through_the_supervisor_then_train_all_resumes_the_queue(
    tiny_base: Path, dataset_bytes: bytes, tmp_path: Path
) -> None:
    specs = [
        small_spec(tiny_base, tmp_path / "general", max_steps=30, save_every=10, sample_count=0),
        small_spec(tiny_base, tmp_path / "technical", domain="technical", max_steps=6, save_every=3,
                   sample_count=0),
    ]
    state = JobState()

    def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "metrics" and event["step"] == 5:
            state.cancel()

    with pytest.raises(Cancelled):
        supervisor.train_all(specs, state, data_for=lambda _s: dataset_bytes, on_event=on_event)
    first = recovery.read_job(tmp_path / "general")
    assert first.status == "cancelled" and 5 <= first.step < 30
    assert not (tmp_path / "technical").exists()

    jobs_started: list[int] = []
    outcomes = supervisor.train_all(specs, JobState(), data_for=lambda _s: dataset_bytes,
                                    on_job=lambda i, _s: jobs_started.append(i))
    assert [o.status for o in outcomes] == ["done", "done"]
    assert jobs_started == [0, 1]
    assert (tmp_path / "general" / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "technical" / "adapter" / "adapter_config.json").is_file()
    # Running the queue again skips what is finished.
    again = supervisor.train_all(specs, JobState(), data_for=lambda _s: dataset_bytes)
    assert [o.message for o in again] == ["already trained", "already trained"]


def test_the_job_stops_with_a_checkpoint_when_its_parent_goes_away(
    tiny_base: Path, dataset_bytes: bytes, tmp_path: Path
) -> None:
    """If the app dies, the worker sees its stdin close and stops cleanly (resumable), not orphaned."""
    spec = supervisor.prepare_job(small_spec(tiny_base, tmp_path / "job", max_steps=400, save_every=100,
                                             sample_count=0), resume=False)
    sup = supervisor.TrainingSupervisor(spec, dataset_bytes)

    def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "metrics" and event["step"] == 3 and sup.process and sup.process.stdin:
            with sup._stdin_lock:
                sup.process.stdin.close()  # what the OS does to the pipe when the parent process dies

    sup.on_event = on_event
    sup.start()
    outcome = sup.wait()
    assert outcome.status == "cancelled" and outcome.returncode == 3
    record = recovery.read_job(tmp_path / "job")
    assert record.status == "cancelled" and 3 <= record.step < 400
    assert (tmp_path / "job" / "checkpoints" / f"step-{record.step:06d}" / "manifest.json").is_file()
