"""The progress bar of a long job (a download): it follows the job's progress reports."""

from __future__ import annotations

from PySide6.QtWidgets import QProgressBar, QWidget

STEPS = 1000  # the bar's resolution: a fraction 0..1 is shown in thousandths


class JobProgressBar(QProgressBar):
    """Hidden until :meth:`begin`; :meth:`show_progress` is the slot for ``JobThread.progress``."""

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName(name)
        self.setRange(0, STEPS)
        self.hide()

    def begin(self) -> None:
        """A job starts: an empty bar, shown."""
        self.setValue(0)
        self.show()

    def show_progress(self, fraction: float | None, message: str) -> None:
        """A progress report: the fraction done (None when unknown: a busy bar) and what is happening."""
        if fraction is None:
            self.setRange(0, 0)
        else:
            self.setRange(0, STEPS)
            self.setValue(int(fraction * STEPS))
        if message:
            self.setFormat(f"{message}  %p%")
