"""Progress of a long command-line job on stderr: one self-overwriting line, on a terminal only."""

from __future__ import annotations

import sys


class ProgressBar:
    """A one-line progress bar on stderr (a job's ``JobState`` reports to it); ``end()`` finishes the line
    only if something was drawn. Messages are the job's own words, never what the user said."""

    def __init__(self) -> None:
        self.drawn = False

    def __call__(self, fraction: float | None, message: str) -> None:
        if fraction is None:
            sys.stderr.write(f"\r{message[:70]:<70}")
        else:
            filled = int(fraction * 30)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {fraction * 100:5.1f}% {message[:60]:<60}")
        sys.stderr.flush()
        self.drawn = True

    def end(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            self.drawn = False

    def on_terminal(self) -> ProgressBar | None:
        """This bar when stderr is a terminal, else None (a log file gets no carriage-return lines)."""
        return self if sys.stderr.isatty() else None
