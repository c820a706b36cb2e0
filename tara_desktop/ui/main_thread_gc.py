"""Python's cyclic garbage collector, run on the GUI thread only, while a window is open.

CPython runs a cycle collection on whichever thread happens to allocate when a generation fills up. In
TARA that is often a job thread (a reply streaming, a voice turn transcribing). When the cycle it frees
holds a Python-owned Qt object (pyqtgraph's plot menus, a dialog, a widget a test made), the C++ object
is then destroyed on that job thread: Qt warns ("QBasicTimer::start: Timers cannot be started from
another thread") or crashes in Shiboken. So while a :class:`~tara_desktop.ui.main_window.MainWindow`
exists, automatic collection is off and a timer on the GUI thread collects instead, generation by
generation, with Python's own thresholds. Plain reference counting (nearly all memory) is unaffected.
"""

from __future__ import annotations

import gc
import time

from PySide6.QtCore import QCoreApplication, QObject, QTimer

INTERVAL_MS = 200
FULL_EVERY_S = 60.0

_guard: MainThreadGc | None = None
_holders = 0


class MainThreadGc(QObject):
    """Collects on the GUI thread when Python would have, checked every ``INTERVAL_MS``."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.was_enabled = gc.isenabled()
        self.collections = 0
        self._next_full = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(INTERVAL_MS)
        self._timer.timeout.connect(self._on_tick)

    def start(self) -> None:
        gc.disable()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        gc.collect()  # what is garbage now goes here, on the GUI thread
        if self.was_enabled:
            gc.enable()

    def _on_tick(self) -> None:
        t0, t1, t2 = gc.get_threshold()
        c0, c1, c2 = gc.get_count()
        if t0 <= 0:  # someone turned collection off on purpose (gc.set_threshold(0))
            return
        now = time.monotonic()
        if c2 > t2 and now >= self._next_full:
            # A full collection walks every object (0.1-0.2 s with torch loaded); CPython spaces them out
            # by how much the old generation grew, here by time: at least a minute apart, and never more
            # than 0.5% of the time.
            gc.collect(2)
            spent = time.monotonic() - now
            self._next_full = now + max(FULL_EVERY_S, 200 * spent)
        elif c1 > t1 or c2 > t2:
            gc.collect(1)
        elif c0 > t0:
            gc.collect(0)
        else:
            return
        self.collections += 1


def hold() -> MainThreadGc:
    """A window opens: collect on the GUI thread from now on (nested calls share one guard)."""
    global _guard, _holders
    if _guard is None:
        _guard = MainThreadGc(QCoreApplication.instance())
        _guard.start()
    _holders += 1
    return _guard


def release() -> None:
    """A window closed: when it was the last, collect once here and give collection back to Python."""
    global _guard, _holders
    if _holders == 0:
        return
    _holders -= 1
    if _holders == 0 and _guard is not None:
        guard, _guard = _guard, None
        guard.stop()
        guard.deleteLater()
