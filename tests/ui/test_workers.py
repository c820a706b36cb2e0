"""The QThread bridge: results, partials, progress, errors and cancels arrive as signals on the GUI thread."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QThread

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.ui.workers import JobHost, describe_error


def test_result_partials_and_progress_arrive_on_the_gui_thread(qtbot: Any) -> None:
    host = JobHost()
    gui = QThread.currentThread()
    seen: list[tuple[str, Any, bool]] = []

    def run(state: JobState, emit: Any) -> int:
        for i in range(3):
            state.report(i / 3, f"step {i}")
            emit(i)
        return 42

    job = host.start(run, "count")
    job.partial.connect(lambda v: seen.append(("partial", v, QThread.currentThread() is gui)))
    job.progress.connect(lambda f, m: seen.append(("progress", m, QThread.currentThread() is gui)))
    with qtbot.waitSignal(job.succeeded, timeout=10_000) as blocker:
        pass
    qtbot.waitUntil(lambda: not host.busy, timeout=10_000)
    assert blocker.args == [42]
    assert [v for kind, v, _ in seen if kind == "partial"] == [0, 1, 2]
    assert [m for kind, m, _ in seen if kind == "progress"] == ["step 0", "step 1", "step 2"]
    assert all(on_gui for _, _, on_gui in seen)


def test_named_slots_and_partials_of_them_run_on_the_gui_thread(qtbot: Any) -> None:
    """The UI connects job signals to a QObject's methods, or functools.partial of one when an argument is
    bound (a request number, a model name): both must run queued on the GUI thread."""
    import functools

    from PySide6.QtCore import QObject

    gui = QThread.currentThread()

    class Page(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[tuple[str, object, bool]] = []

        def _on_value(self, value: object) -> None:
            self.seen.append(("method", value, QThread.currentThread() is gui))

        def _on_tagged(self, tag: str, value: object = None) -> None:
            self.seen.append((tag, value, QThread.currentThread() is gui))

    page = Page()
    host = JobHost()

    def run(state: JobState, emit: Any) -> int:
        emit("token")
        return 7

    job = host.start(run, "named-slots")
    job.partial.connect(page._on_value)
    job.succeeded.connect(functools.partial(page._on_tagged, "bound"))
    job.done.connect(functools.partial(page._on_tagged, "done"))
    with qtbot.waitSignal(job.done, timeout=10_000):
        pass
    qtbot.waitUntil(lambda: not host.busy, timeout=10_000)
    assert page.seen == [("method", "token", True), ("bound", 7, True), ("done", None, True)]


def test_a_user_error_becomes_its_one_sentence(qtbot: Any) -> None:
    host = JobHost()

    def run(state: JobState, emit: Any) -> None:
        raise TaraError("the file is not a model; choose a .gguf file")

    job = host.start(run, "bad")
    with qtbot.waitSignal(job.failed, timeout=10_000) as blocker:
        pass
    assert blocker.args == ["the file is not a model; choose a .gguf file"]
    qtbot.waitUntil(lambda: not host.busy, timeout=10_000)


def test_an_unexpected_error_is_named_without_a_traceback(qtbot: Any) -> None:
    host = JobHost()

    def run(state: JobState, emit: Any) -> None:
        {}["missing"]

    job = host.start(run, "boom")
    with qtbot.waitSignal(job.failed, timeout=10_000) as blocker:
        pass
    message = blocker.args[0]
    assert message.startswith("Something went wrong (KeyError")
    assert "Traceback" not in message
    qtbot.waitUntil(lambda: not host.busy, timeout=10_000)


def test_cancel_stops_the_job_and_shutdown_waits(qtbot: Any) -> None:
    host = JobHost()
    started = threading.Event()

    def run(state: JobState, emit: Any) -> None:
        started.set()
        while True:
            state.check()
            state.report(None, "waiting")
            threading.Event().wait(0.01)

    job = host.start(run, "forever")
    cancelled: list[bool] = []
    job.cancelled.connect(lambda: cancelled.append(True))
    qtbot.waitUntil(started.is_set, timeout=10_000)
    assert host.busy
    assert host.shutdown(10_000)
    assert not job.isRunning()
    qtbot.waitUntil(lambda: cancelled == [True], timeout=10_000)


def test_describe_error() -> None:
    assert describe_error(TaraError("bad input; fix it")) == "bad input; fix it"
    assert describe_error(ValueError("")) == "Something went wrong (ValueError). Please try again."


GUARDED_TEST = '''
import threading
from PySide6.QtCore import QThread

class Stuck(QThread):
    release = threading.Event()
    def run(self):
        self.release.wait(3)

def test_leaves_a_thread(qapp):
    t = Stuck()
    t.setObjectName("stuck-thread")
    t.start()
    globals()["keep"] = t
'''


@pytest.mark.slow
def test_the_guard_fails_a_test_that_leaves_a_qthread_running(tmp_path: Path) -> None:
    """Run a test that leaks a thread under this folder's conftest: the guard must fail it."""
    (tmp_path / "conftest.py").write_text(Path(__file__).with_name("conftest.py").read_text(encoding="utf-8"))
    (tmp_path / "test_leak.py").write_text(GUARDED_TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\nqt_api = pyside6\n")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "pytestqt.plugin",
                           str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 passed, 1 error" in done.stdout
    assert "QThread(s) still running after the test: ['stuck-thread']" in done.stdout


def test_a_job_that_fails_at_once_still_reaches_the_slots_connected_after_start(qtbot: Any) -> None:
    """Signals are connected after start(); the thread only starts once control returns to Qt."""
    host = JobHost()

    def run(state: JobState, emit: Any) -> None:
        raise TaraError("broken at once")

    job = host.start(run, "instant-failure")
    failures: list[str] = []
    done: list[bool] = []
    job.failed.connect(failures.append)
    job.done.connect(lambda: done.append(True))
    qtbot.waitUntil(lambda: done == [True], timeout=10_000)
    assert failures == ["broken at once"]


def test_a_job_cancelled_before_it_ran_never_runs(qtbot: Any) -> None:
    host = JobHost()
    ran: list[bool] = []
    job = host.start(lambda state, emit: ran.append(True), "never")
    cancelled: list[bool] = []
    job.cancelled.connect(lambda: cancelled.append(True))
    assert host.shutdown()
    assert ran == [] and cancelled == [True] and not host.busy
