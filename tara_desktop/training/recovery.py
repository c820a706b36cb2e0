"""Recovery state on disk: ``DIR/job.json`` says what a job is and how far it got.

``job.json`` holds the spec (never the data), the status and the process that owns the job. A job whose
status is not ``done`` and whose process is gone — the app crashed, the machine lost power, the worker
was killed, or the user stopped it — is *interrupted*: :func:`find_interrupted_jobs` lists those so the
app can offer to resume them from their newest complete checkpoint.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tara_desktop import paths
from tara_desktop.errors import TaraError
from tara_desktop.files import FileLock, make_private_dir, process_alive
from tara_desktop.training.checkpoints import newest_complete, write_json_atomic
from tara_desktop.training.spec import TrainingSpec

JOB_FILE = "job.json"
# queued: written, not started; running: a worker owns it; done: adapter written;
# cancelled: stopped by the user (resumable); crashed: the worker died; failed: an error (see message).
STATUSES = ("queued", "running", "done", "cancelled", "crashed", "failed")


def default_jobs_root() -> Path:
    """Where the app keeps training jobs: ``<profile>/training/``."""
    return paths.profile_dir() / "training"


@dataclass
class JobRecord:
    spec: TrainingSpec
    status: str = "queued"
    message: str = ""
    pid: int | None = None
    pid_started_at: float | None = None
    step: int = 0
    total_steps: int = 0
    updated_at: float = 0.0

    @property
    def job_dir(self) -> Path:
        return self.spec.job_dir

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "status": self.status,
            "message": self.message,
            "pid": self.pid,
            "pid_started_at": self.pid_started_at,
            "step": self.step,
            "total_steps": self.total_steps,
            "updated_at": self.updated_at,
        }


def read_job(job_dir: str | os.PathLike[str]) -> JobRecord:
    path = Path(job_dir) / JOB_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        spec = TrainingSpec.from_dict(raw["spec"])
    except FileNotFoundError:
        raise TaraError(f"{Path(job_dir)} holds no training job (no {JOB_FILE}); check the folder") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TaraError(
            f"{path} is unreadable ({exc.__class__.__name__}); start a new job in another folder"
        ) from None
    # The folder may have been moved since: trust where job.json actually is.
    spec.out_dir = str(Path(job_dir))
    return JobRecord(
        spec=spec,
        status=str(raw.get("status", "queued")),
        message=str(raw.get("message", "")),
        pid=raw.get("pid"),
        pid_started_at=raw.get("pid_started_at"),
        step=int(raw.get("step", 0)),
        total_steps=int(raw.get("total_steps", 0)),
        updated_at=float(raw.get("updated_at", 0.0)),
    )


def write_job(record: JobRecord) -> None:
    record.updated_at = time.time()
    # Owner-only: checkpoints and samples are derived from the user's data.
    if not record.job_dir.is_dir():
        record.job_dir.parent.mkdir(parents=True, exist_ok=True)
    make_private_dir(record.job_dir, exist_ok=True)
    write_json_atomic(record.job_dir / JOB_FILE, record.to_dict())


def update_job(job_dir: Path, **changes: Any) -> JobRecord:
    record = read_job(job_dir)
    for key, value in changes.items():
        setattr(record, key, value)
    write_job(record)
    return record


def _process_start_time(pid: int) -> float | None:
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:
        return None


def claim(record: JobRecord) -> None:
    """Mark the job as running in this process."""
    record.status = "running"
    record.message = ""
    record.pid = os.getpid()
    record.pid_started_at = _process_start_time(os.getpid())
    write_job(record)


def is_alive(record: JobRecord) -> bool:
    """True when the process named in job.json is still the one that claimed the job. A killed process
    its parent has not reaped yet (a zombie) is dead: it trains no more."""
    if record.pid is None or not process_alive(record.pid):
        return False
    started = _process_start_time(record.pid)
    if started is None:
        return False
    return record.pid_started_at is None or abs(started - record.pid_started_at) < 1.0


def wait_until_dead(record: JobRecord, timeout: float) -> bool:
    """Give a dying process (killed, stopping) up to ``timeout`` seconds; True when it is gone."""
    deadline = time.monotonic() + timeout
    while is_alive(record):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


LOCK_FILE = ".tara-job.lock"


def lock_path(job_dir: Path) -> Path:
    return Path(job_dir) / LOCK_FILE


def is_locked(job_dir: Path) -> bool:
    """True while some process (a worker, or the app supervising it) holds the job folder's lock."""
    if not lock_path(job_dir).exists():
        return False
    probe = FileLock(lock_path(job_dir))
    try:
        if probe.acquire():
            probe.release()
            return False
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class InterruptedJob:
    record: JobRecord
    resume_step: int  # newest complete checkpoint (0: starts again from the beginning)
    reason: str


def find_interrupted_jobs(root: str | os.PathLike[str] | None = None) -> list[InterruptedJob]:
    """Jobs under ``root`` (and ``root`` itself) that did not finish and are not running, newest first."""
    base = Path(root) if root is not None else default_jobs_root()
    candidates = [base, *sorted(p for p in base.iterdir() if p.is_dir())] if base.is_dir() else []
    found: list[InterruptedJob] = []
    for job_dir in candidates:
        if not (job_dir / JOB_FILE).is_file():
            continue
        try:
            record = read_job(job_dir)
        except TaraError:
            continue
        if record.status == "done" or (record.status == "running" and is_alive(record)) or is_locked(job_dir):
            continue
        reason = {
            "running": "the app or the machine stopped while it was training",
            "queued": "it was queued but never started",
            "cancelled": "it was stopped",
            "crashed": record.message or "the training process died",
            "failed": record.message or "it failed",
        }.get(record.status, record.status)
        ckpt = newest_complete(record.spec.checkpoints_dir)
        found.append(InterruptedJob(record, ckpt.step if ckpt else 0, reason))
    found.sort(key=lambda j: j.record.updated_at, reverse=True)
    return found
