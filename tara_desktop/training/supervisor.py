"""Runs a training job in a child process and watches it.

:class:`TrainingSupervisor` starts ``python -m tara_desktop.training.worker``, hands it the dataset through
its stdin (never a plain file), reads its JSON events from stdout, forwards cancel requests, and notices
when the child dies (exit code, signal) — then it records the crash in ``job.json`` so the job shows up in
:func:`~tara_desktop.training.recovery.find_interrupted_jobs`. It is plain Python: the GUI wraps
:func:`run_supervised` in a QThread, ``tara train`` drives it with a progress bar.

:func:`train_all` is the "Train all domains" queue: one job after another, skipping finished ones and
resuming interrupted ones, so running it again after a crash picks up where it stopped.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tara_desktop.errors import TaraError
from tara_desktop.files import FileLock, describe_os_error, make_private_dir
from tara_desktop.jobs import Cancelled, JobState
from tara_desktop.training import datasets as ds
from tara_desktop.training import recovery
from tara_desktop.training.checkpoints import list_checkpoint_dirs
from tara_desktop.training.spec import TrainingSpec
from tara_desktop.training.worker import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_DONE

if TYPE_CHECKING:
    from tara_desktop.profile import Profile

log = logging.getLogger(__name__)

EventSink = Callable[[dict[str, Any]], None]

# How long a resume waits for a job that is just dying (killed, not yet reaped; its supervisor still
# recording the crash) before it says the job is running.
DYING_WAIT_S = 5.0


def lock_job(job_dir: Path, wait: float | None = None) -> FileLock:
    """The job folder's OS lock, held while a job runs there (by the app and, inherited, by its worker: a
    worker whose app died keeps it). Waits up to ``wait`` seconds for one that is ending, then refuses."""
    if not job_dir.is_dir():
        if job_dir.exists():
            raise TaraError(f"{job_dir} is a file; choose a folder for the job")
        job_dir.parent.mkdir(parents=True, exist_ok=True)
        make_private_dir(job_dir, exist_ok=True)
    lock = FileLock(recovery.lock_path(job_dir))
    deadline = time.monotonic() + (DYING_WAIT_S if wait is None else wait)
    while not lock.acquire():
        if time.monotonic() >= deadline:
            raise TaraError(
                f"the job in {job_dir} is being trained by another TARA process right now; wait for it to finish "
                "(or stop it) before starting or resuming it again"
            )
        time.sleep(0.05)
    return lock


@dataclass
class JobOutcome:
    """How a supervised job ended: ``done``, ``cancelled``, ``failed`` (bad input or an error) or
    ``crashed`` (the process died: killed, out of memory, ...)."""

    status: str
    message: str = ""
    returncode: int | None = None
    result: dict[str, Any] | None = None
    samples: list[dict[str, str]] = field(default_factory=list)
    last_step: int = 0


def load_data(spec: TrainingSpec, profile: Profile | None = None) -> bytes:
    """The dataset bytes for ``spec``: from its file, or decrypted from the profile."""
    if spec.data_path is not None:
        return ds.read_dataset_file(spec.data_path)
    if spec.data_blob_id is not None:
        if profile is None:
            from tara_desktop.profile import Profile

            profile = Profile.open()
        return ds.load_dataset_blob(profile, spec.data_blob_id)
    raise TaraError("the job names no dataset; pick a dataset and start again")


def prepare_job(spec: TrainingSpec, *, resume: bool) -> TrainingSpec:
    """Create ``job.json`` for a new job, or load the stored spec of a job to resume.

    A folder that already holds a job (or checkpoints) is never overwritten without ``resume``."""
    job_dir = spec.job_dir
    has_job = (job_dir / recovery.JOB_FILE).is_file()
    if resume:
        if not has_job:
            raise TaraError(f"{job_dir} holds no training job to resume; start one without --resume")
        record = recovery.read_job(job_dir)
        if record.status == "running" and not recovery.wait_until_dead(record, DYING_WAIT_S):
            raise TaraError(
                f"the job in {job_dir} is already running (process {record.pid}); wait for it to finish or stop it "
                "before resuming"
            )
        return record.spec
    if has_job or list_checkpoint_dirs(spec.checkpoints_dir) or spec.adapter_dir.exists():
        raise TaraError(f"{job_dir} already holds a training job; use --resume to continue it or choose another folder")
    if job_dir.exists() and not job_dir.is_dir():
        raise TaraError(f"{job_dir} is a file; choose a folder for the job")
    spec.validate()
    recovery.write_job(recovery.JobRecord(spec=spec))
    return spec


class TrainingSupervisor:
    """One child process running one job. Use :meth:`start`, then :meth:`wait` (or :func:`run_supervised`)."""

    def __init__(
        self,
        spec: TrainingSpec,
        data: bytes,
        *,
        resume: bool = False,
        on_event: EventSink | None = None,
        python: str | None = None,
        lock: FileLock | None = None,
    ) -> None:
        self.spec = spec
        self.lock = lock
        self._data = data
        self.resume = resume
        self.on_event = on_event
        self.python = python or sys.executable
        self.process: subprocess.Popen[bytes] | None = None
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=30)
        self._cancel_sent = False
        self._stdin_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        if getattr(sys, "frozen", False) and self.python == sys.executable:
            # A bundled app has no `-m`: its entry point hands `--training-worker ...` to worker.main().
            cmd = [self.python, "--training-worker", str(self.spec.job_dir)]
        else:
            cmd = [self.python, "-m", "tara_desktop.training.worker", str(self.spec.job_dir)]
        if self.resume:
            cmd.append("--resume")
        env = dict(os.environ)
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        env["PYTHONUNBUFFERED"] = "1"
        # The project root must be importable even when TARA runs from a source checkout.
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        inherit = (self.lock.fileno(),) if self.lock is not None and self.lock.held and os.name == "posix" else ()
        self.process = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            pass_fds=inherit,  # the worker shares the job folder's lock: it outlives a killed app
            # No console window flashing up on Windows when the GUI starts a job.
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
        )
        assert self.process.stdin and self.process.stdout and self.process.stderr
        self._threads = [
            threading.Thread(target=self._feed, name="training-feed", daemon=True),
            threading.Thread(target=self._read_events, args=(self.process.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(self.process.stderr,), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _feed(self) -> None:
        assert self.process and self.process.stdin
        try:
            with self._stdin_lock:
                self.process.stdin.write(len(self._data).to_bytes(8, "big"))
                self.process.stdin.write(self._data)
                self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass
        self._data = b""

    def _read_events(self, stream: IO[bytes]) -> None:
        for raw in stream:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict):
                self._events.put(event)
        self._events.put(None)

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self._stderr_tail.append(raw.decode("utf-8", "replace").rstrip())

    def cancel(self) -> None:
        """Ask the child to stop after the current step (it saves a checkpoint)."""
        if self._cancel_sent or self.process is None:
            return
        self._cancel_sent = True
        try:
            with self._stdin_lock:
                assert self.process.stdin
                self.process.stdin.write(b"cancel\n")
                self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def kill(self) -> None:
        """Kill the child outright (no checkpoint): what a crash looks like."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()

    def wait(self, state: JobState | None = None) -> JobOutcome:
        """Forward events until the child exits; cancel it when ``state`` is cancelled."""
        assert self.process is not None, "start() first"
        outcome = JobOutcome(status="crashed")
        total = 0
        while True:
            if state is not None and state.cancelled:
                self.cancel()
            try:
                event = self._events.get(timeout=0.1)
            except queue.Empty:
                continue
            if event is None:
                break
            kind = event.get("type")
            if kind == "started":
                total = int(event.get("total_steps", 0))
            elif kind == "metrics":
                outcome.last_step = int(event.get("step", 0))
                if state is not None and total:
                    state.report(outcome.last_step / total, f"step {outcome.last_step}/{total}")
            elif kind == "log" and state is not None:
                state.report(state.fraction, str(event.get("message", "")))
            elif kind == "samples":
                outcome.samples = list(event.get("samples", []))
            elif kind == "done":
                outcome.status, outcome.result = "done", dict(event.get("result", {}))
            elif kind == "cancelled":
                outcome.status = "cancelled"
                outcome.last_step = int(event.get("step", outcome.last_step))
            elif kind == "error":
                outcome.status, outcome.message = "failed", str(event.get("message", ""))
            if self.on_event is not None:
                self.on_event(event)
        rc = self.process.wait()
        outcome.returncode = rc
        for t in self._threads:
            t.join(timeout=5)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        if rc == EXIT_DONE and outcome.status == "done":
            return outcome
        if rc == EXIT_CANCELLED:
            outcome.status = "cancelled"
            outcome.message = outcome.message or f"stopped at step {outcome.last_step}"
            return outcome
        if rc == EXIT_BAD_INPUT and outcome.status == "failed":
            return outcome
        # The child died without saying why it stopped, or failed unexpectedly.
        if rc < 0:
            try:
                how = f"was killed by {signal.Signals(-rc).name}"
            except ValueError:
                how = f"was killed by signal {-rc}"
        else:
            how = f"exited with code {rc}"
        tail = next((line for line in reversed(self._stderr_tail) if line.strip()), "") if rc > 0 else ""
        detail = _environment_failure(outcome.message or tail) or outcome.message or tail[:200]
        outcome.status = "crashed" if not outcome.message else "failed"
        outcome.message = f"the training process {how}" + (f" ({detail})" if detail else "") + (
            "; resume it to continue from its last checkpoint"
        )
        try:
            recovery.update_job(self.spec.job_dir, status="crashed", message=outcome.message, pid=None)
        except TaraError:
            pass
        log.warning("training job %s: %s", self.spec.job_dir.name, outcome.message)
        return outcome


def _environment_failure(text: str) -> str | None:
    """The worker's OSError (a full disk, a read-only folder...) as the sentence a user can act on."""
    import re

    match = re.search(r"\[Errno (\d+)\] ([^:'\"]+)(?:: '([^']*)')?", text)
    if match is None:
        return None
    return describe_os_error(OSError(int(match.group(1)), match.group(2).strip(), match.group(3)))


def run_supervised(
    spec: TrainingSpec,
    state: JobState,
    data: bytes,
    *,
    resume: bool = False,
    on_event: EventSink | None = None,
    on_start: Callable[[TrainingSupervisor], None] | None = None,
) -> JobOutcome:
    """Prepare the job folder, run the job in a child process and wait for it (a plain long-job function)."""
    lock = lock_job(spec.job_dir)
    try:
        spec = prepare_job(spec, resume=resume)
        ds.parse_dataset(data, name=spec.data_name or spec.data_path or "", fmt=spec.data_format)  # type: ignore[arg-type]
        supervisor = TrainingSupervisor(spec, data, resume=resume, on_event=on_event, lock=lock)
        supervisor.start()
        if on_start is not None:
            on_start(supervisor)
        return supervisor.wait(state)
    finally:
        lock.release()


def train_all(
    specs: Sequence[TrainingSpec],
    state: JobState,
    *,
    data_for: Callable[[TrainingSpec], bytes] = load_data,
    on_event: EventSink | None = None,
    on_job: Callable[[int, TrainingSpec], None] | None = None,
) -> list[JobOutcome]:
    """Train each spec in turn ("Train all domains"). Finished jobs are skipped and interrupted ones
    resumed, so calling it again with the same specs continues the queue. Stops at a cancel."""
    outcomes: list[JobOutcome] = []
    for i, spec in enumerate(specs):
        state.check()
        job_file = spec.job_dir / recovery.JOB_FILE
        resume = job_file.is_file()
        if resume and recovery.read_job(spec.job_dir).status == "done":
            outcomes.append(JobOutcome(status="done", message="already trained"))
            continue
        if on_job is not None:
            on_job(i, spec)
        outcome = run_supervised(spec, state, data_for(spec), resume=resume, on_event=on_event)
        outcomes.append(outcome)
        if outcome.status == "cancelled" or state.cancelled:
            raise Cancelled()
    return outcomes
