"""While a window is open, reference cycles are freed on the GUI thread, never on a job thread.

CI once failed on "QBasicTimer::start: Timers cannot be started from another thread" during a voice turn:
a Python-owned Qt object of an earlier page (pyqtgraph's plot menu is one) sat in a reference cycle, and
Python's collector freed it on the voice turn's thread, which allocates a lot.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

from tara_desktop.jobs import JobState
from tara_desktop.ui import main_thread_gc
from tara_desktop.ui.workers import JobHost


class _Cycle:
    """Records the thread that frees it; refers to itself, so only the cycle collector frees it."""

    def __init__(self, freed_on: list[str]) -> None:
        self.me = self
        self.freed_on = freed_on

    def __del__(self) -> None:
        self.freed_on.append(threading.current_thread().name)


def _free_a_cycle_while_a_job_allocates(qtbot: Any) -> list[str]:
    freed_on: list[str] = []
    gc.collect()
    _Cycle(freed_on)  # garbage now, in the youngest generation
    host = JobHost()

    def allocate(state: JobState, _emit: Any) -> None:
        junk = [[i] for i in range(10_000)]  # many generation-0 collections' worth of live containers
        deadline = time.monotonic() + 20
        while not freed_on and time.monotonic() < deadline:  # hold them until someone collects
            time.sleep(0.01)
        del junk

    job = host.start(allocate, "allocate")
    job.setObjectName("allocate")
    with qtbot.waitSignal(job.done, timeout=30_000):
        pass
    qtbot.waitUntil(lambda: bool(freed_on), timeout=10_000)  # the GUI thread's collector runs here
    qtbot.waitUntil(lambda: not host.busy, timeout=10_000)
    return freed_on


def test_a_cycle_is_freed_on_the_gui_thread_while_a_window_holds_the_collector(qtbot: Any) -> None:
    main_thread_gc.hold()
    try:
        freed_on = _free_a_cycle_while_a_job_allocates(qtbot)
    finally:
        main_thread_gc.release()
    assert freed_on == [threading.main_thread().name]
    assert gc.isenabled()  # given back to Python when the last window closed


def test_hold_and_release_nest_and_a_stray_release_is_harmless() -> None:
    main_thread_gc.release()  # nothing held: no effect
    assert gc.isenabled()
    first = main_thread_gc.hold()
    second = main_thread_gc.hold()
    assert first is second and not gc.isenabled()
    main_thread_gc.release()
    assert not gc.isenabled()  # one window still open
    main_thread_gc.release()
    assert gc.isenabled()


def test_the_main_window_holds_the_collector_until_it_closes(window: Any) -> None:
    assert not gc.isenabled()
    window.close()
    assert gc.isenabled()


def test_full_collections_are_spaced_out(monkeypatch: Any) -> None:
    """A full collection walks every object: when the old generation keeps filling (a long reply), the
    guard does one, then only younger ones for at least FULL_EVERY_S."""
    guard = main_thread_gc.MainThreadGc()
    done: list[int] = []
    t2 = gc.get_threshold()[2]
    monkeypatch.setattr(gc, "get_count", lambda: (0, 0, t2 + 1))
    monkeypatch.setattr(gc, "collect", lambda generation=2: done.append(generation) or 0)
    for _ in range(3):
        guard._on_tick()
    assert done == [2, 1, 1]
    guard.deleteLater()
