"""Regression guard for a PySide6 reference-count bug (issue #12, item 1).

PySide6-Essentials 6.12.0 on Python 3.11 decremented the reference count of ``None`` on every Qt call
that returns nothing (``QLabel.setText`` ...) and that of ``True`` on every signal ``emit()``; after
enough calls (about 120 streamed chat turns) Python aborted with ``Fatal Python error: none_dealloc``.
These tests fail on any such drift, whichever PySide6 version is installed. (On Python ≥ 3.12 ``None``
and ``True`` are immortal and the counts never move; the tests then pass trivially.)
"""

from __future__ import annotations

import sys
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel

# Few enough calls that a leaking build fails the assertion instead of aborting the whole test run
# (None's and True's counts are only a few thousand); a leak of one reference per call moves the count
# by CALLS, while other threads and the test machinery take or drop a handful meanwhile.
CALLS = 400
TOLERANCE = 100


class _Emitter(QObject):
    token = Signal(str)
    flag = Signal(bool)


def test_void_qt_calls_leave_the_refcount_of_none_alone(qapp: Any) -> None:
    label = QLabel()
    before = sys.getrefcount(None)
    for i in range(CALLS):
        label.setText("x" if i % 2 else "y")
        label.setVisible(False)
    drift = sys.getrefcount(None) - before
    assert abs(drift) < TOLERANCE, f"refcount of None moved by {drift} over {CALLS} void Qt calls"


def test_signal_emits_leave_the_refcounts_of_true_and_none_alone(qapp: Any) -> None:
    emitter = _Emitter()
    received: list[int] = []
    emitter.token.connect(lambda _t: received.append(1))
    emitter.flag.connect(lambda _f: None)
    before_true, before_none = sys.getrefcount(True), sys.getrefcount(None)
    for _ in range(CALLS):
        emitter.token.emit("piece")
        emitter.flag.emit(True)
    drift_true = sys.getrefcount(True) - before_true
    drift_none = sys.getrefcount(None) - before_none
    assert len(received) == CALLS  # the signal really was delivered every time
    assert abs(drift_true) < TOLERANCE, f"refcount of True moved by {drift_true} over {CALLS} emits"
    assert abs(drift_none) < TOLERANCE, f"refcount of None moved by {drift_none} over {CALLS} emits"
