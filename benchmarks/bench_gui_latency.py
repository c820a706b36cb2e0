"""bench_gui_latency: does the window stay responsive while it searches a profile of 10,000 messages?

A real encrypted profile with 10,000 messages (200 conversations of 50) is searched through the chat
model (``ChatModel.search``: the search decrypts every message, on a job thread of the window's job
host). Meanwhile a precise 10 ms timer on the GUI thread measures how late the event loop runs it
(event-loop latency). Baseline, measured in the same run: the same timer on an idle loop. For
reference, the same search run on the GUI thread (what the conversation list did before) is timed: that
is how long the window froze per search.

Target: p99 event-loop latency <= 50 ms while searching.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_P99_MS = 50.0
CONVERSATIONS = int(os.environ.get("BENCH_GUI_CONVERSATIONS", "200"))
PER_CONVERSATION = 50
SEARCHES = int(os.environ.get("BENCH_GUI_SEARCHES", "6"))
TICK_MS = 10
WORDS = ("budget", "invoice", "sleep", "river", "python", "garden", "lesson", "poem", "team", "fever")


def _fill(profile: Any) -> int:
    store = profile.store
    n = 0
    for c in range(CONVERSATIONS):
        cid = store.create_conversation(f"Conversation {c} about {WORDS[c % len(WORDS)]}")
        for m in range(PER_CONVERSATION):
            role = "user" if m % 2 == 0 else "assistant"
            word = WORDS[(c + m) % len(WORDS)]
            store.append_message(cid, role, f"message {m} of {c}: a few words about {word} and more text "
                                 f"so that it looks like a real chat line number {n}", {"domain": "general"})
            n += 1
    return n


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


class Probe:
    """A precise timer on the GUI thread; records how late each tick fires (ms)."""

    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.lateness: list[float] = []
        self._last = time.perf_counter()
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.lateness.append(max(0.0, (now - self._last) * 1000 - TICK_MS))
        self._last = now

    def start(self) -> None:
        self.lateness = []
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> list[float]:
        self.timer.stop()
        return self.lateness


def _spin(app: Any, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.001)


def main() -> int:
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from tara_desktop.conversation import Conversations
    from tara_desktop.profile import Profile
    from tara_desktop.ui.chat_model import ChatModel
    from tara_desktop.ui.workers import JobHost

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory(prefix="tara-bench-gui-") as home:
        t0 = time.perf_counter()
        profile = Profile.open(Path(home) / "profile", passphrase="bench")
        n = _fill(profile)
        print(f"profile: {n} messages in {CONVERSATIONS} conversations (filled in {time.perf_counter() - t0:.1f} s)")
        services = SimpleNamespace(profile=profile, conversations=Conversations(profile))
        jobs = JobHost()
        model = ChatModel(jobs)
        model.set_assistant(services)
        probe = Probe()

        # baseline: the idle loop
        probe.start()
        loop = QEventLoop()
        QTimer.singleShot(2000, loop.quit)
        loop.exec()
        idle = probe.stop()

        # the search through the chat model (off the GUI thread), one after another
        done: list[float] = []
        found: list[int] = []

        def on_list(conversations: Any) -> None:
            found.append(len(conversations))
            done.append(time.perf_counter())

        model.list_changed.connect(on_list)
        probe.start()
        started = time.perf_counter()
        for i in range(SEARCHES):
            before = len(done)
            model.search(f"number {i * 997 % n}")  # one message matches each
            while len(done) == before:
                app.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents, 50)
        busy = probe.stop()
        per_search = (time.perf_counter() - started) / SEARCHES
        model.list_changed.disconnect(on_list)
        jobs.shutdown()

        # reference: the same search on the GUI thread (the old conversation list)
        frozen = []
        for i in range(2):
            t = time.perf_counter()
            services.conversations.search(f"number {i * 997 % n}")
            frozen.append((time.perf_counter() - t) * 1000)
        profile.close()

    idle_p99, busy_p99 = _percentile(idle, 99), _percentile(busy, 99)
    print(f"idle loop:        p50 {statistics.median(idle):6.2f} ms  p99 {idle_p99:6.2f} ms  ({len(idle)} ticks)")
    print(f"while searching:  p50 {statistics.median(busy):6.2f} ms  p99 {busy_p99:6.2f} ms  "
          f"max {max(busy):6.1f} ms  ({len(busy)} ticks, {SEARCHES} searches, {per_search:.2f} s each, "
          f"matches per search {sorted(set(found))})")
    ratio = busy_p99 / idle_p99 if idle_p99 > 0 else float("inf")
    print(f"ratio p99 searching / idle: {ratio:.1f}x")
    print(f"reference, the same search on the GUI thread: the window froze {statistics.mean(frozen):.0f} ms per search")
    if busy_p99 <= TARGET_P99_MS:
        print(f"PASS: p99 event-loop latency {busy_p99:.1f} ms <= {TARGET_P99_MS:.0f} ms while searching {n} messages")
        return 0
    print(f"MISSED: p99 event-loop latency {busy_p99:.1f} ms > {TARGET_P99_MS:.0f} ms while searching {n} messages")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
