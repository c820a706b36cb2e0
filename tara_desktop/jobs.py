"""The small state object every long job reports to and polls for cancellation.

A long job (a model load, a transcription, a download, a training run, an export) is a plain function
``run(inputs..., state: JobState)``. It calls ``state.report(fraction, message)`` as it goes and
``state.check()`` often; ``check`` raises :class:`Cancelled` once someone called ``state.cancel()``.
The UI runs the function off the GUI thread and turns reports into queued signals; the CLI prints them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

ProgressCallback = Callable[[float | None, str], None]


class Cancelled(Exception):
    """The user asked the job to stop; the job stopped cleanly."""


class JobState:
    """Thread-safe progress sink and cancellation flag for one job."""

    def __init__(self, on_progress: ProgressCallback | None = None) -> None:
        self._cancel = threading.Event()
        self._on_progress = on_progress
        self._last: tuple[int | None, str] | None = None
        self.fraction: float | None = None
        self.message: str = ""

    def report(self, fraction: float | None, message: str = "") -> None:
        """Record progress (``fraction`` in 0..1 or None when unknown); forwarded only when the rounded
        percentage or the message changes, so a tight loop does not flood the UI."""
        if fraction is not None:
            fraction = min(1.0, max(0.0, fraction))
        key = (None if fraction is None else round(fraction * 100), message)
        self.fraction, self.message = fraction, message
        if key != self._last:
            self._last = key
            if self._on_progress is not None:
                self._on_progress(fraction, message)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self._cancel.is_set():
            raise Cancelled()
