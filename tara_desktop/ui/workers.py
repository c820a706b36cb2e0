"""QThread bridges: run a plain ``run(..., state: JobState)`` function off the GUI thread.

A :class:`JobThread` owns one :class:`~tara_desktop.jobs.JobState`. The function it runs reports progress
to that state and may hand partial results (streamed tokens, loss points) to ``emit_partial``; both
cross into the GUI thread only as queued signals. The function's return value, a user error, an
unexpected error or a cancellation each end in exactly one signal, followed by ``done``.

A :class:`JobHost` keeps the jobs of one window so that closing the window cancels them and waits.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, QThread, QTimer, Signal

from tara_desktop.errors import TaraError
from tara_desktop.jobs import Cancelled, JobState

log = logging.getLogger(__name__)

Emit = Callable[[object], None]  # hands a partial result (a token, a metrics row) to the GUI thread
JobFunction = Callable[[JobState, Emit], object]  # its return value is what ``succeeded`` carries


def describe_error(exc: BaseException) -> str:
    """One line for the user: a TaraError as it is, anything else named plainly."""
    if isinstance(exc, TaraError):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    return f"Something went wrong ({name}{': ' + text if text else ''}). Please try again."


class JobThread(QThread):
    """Runs ``fn(state, emit_partial)`` on its own thread.

    Signals:
        progress(object, str): fraction in 0..1 (or None when unknown) and a message.
        partial(object): something the function handed to ``emit_partial`` (a token, a metrics row).
        succeeded(object): the function's return value.
        failed(str): one sentence for the user.
        cancelled(): the function stopped because :meth:`cancel` was called.
        done(): always last, after one of the three above.
    """

    progress = Signal(object, str)
    partial = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    done = Signal()

    def __init__(self, fn: JobFunction, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self._fn = fn
        self.state = JobState(on_progress=self._on_progress)
        self.result: object = None
        self.error: str | None = None
        self.exception: BaseException | None = None

    def _on_progress(self, fraction: float | None, message: str) -> None:
        self.progress.emit(fraction, message)

    def cancel(self) -> None:
        self.state.cancel()

    def run(self) -> None:  # QThread override, runs on the worker thread
        try:
            self.result = self._fn(self.state, self.partial.emit)
        except Cancelled:
            self.cancelled.emit()
        except TaraError as exc:
            self.exception = exc
            self.error = str(exc)
            self.failed.emit(self.error)
        except Exception as exc:  # every error becomes a message, never a crash
            log.error("job %s failed: %s", self.objectName(), type(exc).__name__, exc_info=True)
            self.exception = exc
            self.error = describe_error(exc)
            self.failed.emit(self.error)
        else:
            self.succeeded.emit(self.result)
        finally:
            self.done.emit()


class JobHost(QObject):
    """The running jobs of one window: start them, cancel them all, wait for them on close.

    Signals:
        busy_changed(bool): True while at least one job runs.
        created(object): a job was created and is about to start (connect to it here to miss nothing).
    """

    busy_changed = Signal(bool)
    created = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: list[JobThread] = []

    def start(self, fn: JobFunction, name: str) -> JobThread:
        """Create and register a job; its thread starts when control returns to the event loop, so the
        caller's ``connect`` calls right after this are in place before any signal can be emitted."""
        job = JobThread(fn, name, self)
        was_busy = self.busy
        self._jobs.append(job)
        job.finished.connect(self._on_job_finished)  # queued: the host lives on the GUI thread
        self.created.emit(job)
        QTimer.singleShot(0, self, functools.partial(self._launch, job))
        if not was_busy:
            self.busy_changed.emit(True)
        return job

    def _launch(self, job: JobThread) -> None:
        if job not in self._jobs:
            return
        if job.state.cancelled:  # cancelled (e.g. the window closed) before it ever ran
            self._jobs.remove(job)
            job.cancelled.emit()
            job.done.emit()
            job.deleteLater()
            if not self._jobs:
                self.busy_changed.emit(False)
            return
        job.start()

    def _on_job_finished(self) -> None:
        for job in [j for j in self._jobs if j.isFinished() or j is self.sender()]:
            job.wait()  # the thread is past run(); this returns at once
            self._jobs.remove(job)
            job.deleteLater()
        if not self._jobs:
            self.busy_changed.emit(False)

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    def running(self) -> list[JobThread]:
        return [j for j in self._jobs if not j.isFinished()]

    def shutdown(self, timeout_ms: int | None = None) -> bool:
        """Cancel every job and wait for it (without a limit by default: a QThread must never be
        destroyed while it runs); True when all stopped in time."""
        jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        for job in [j for j in jobs if not j.isRunning() and not j.isFinished()]:
            self._launch(job)  # never started: dropped now, with its cancelled + done signals
        ok = True
        for job in [j for j in jobs if j.isRunning()]:
            finished = job.wait() if timeout_ms is None else job.wait(timeout_ms)
            if not finished:
                log.warning("job %s did not stop within %d ms", job.objectName(), timeout_ms)
                ok = False
        return ok
