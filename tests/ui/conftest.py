"""GUI test setup: offscreen Qt, a real tiny GGUF model, the real main window — and a guard that fails any
test which leaves a QThread running (the napari habit)."""

from __future__ import annotations

import os
import shutil
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QThread


@pytest.fixture(autouse=True)
def no_qthread_left_running(qapp: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Record every QThread started during the test; fail the test if one still runs at its end."""
    started: list[weakref.ref[QThread]] = []
    original = QThread.start

    def recording_start(self: QThread, *args: Any) -> None:
        started.append(weakref.ref(self))
        original(self, *args)

    monkeypatch.setattr(QThread, "start", recording_start)
    yield
    monkeypatch.setattr(QThread, "start", original)
    running = []
    for ref in started:
        thread = ref()
        try:
            if thread is not None and thread.isRunning():
                running.append(thread.objectName() or type(thread).__name__)
        except RuntimeError:  # the C++ object is gone: it is not running
            continue
    for ref in started:  # do not let a leaked thread poison the next test
        thread = ref()
        try:
            if thread is not None and thread.isRunning():
                cancel = getattr(thread, "cancel", None)
                if cancel is not None:
                    cancel()
                thread.wait(30_000)
        except RuntimeError:
            continue
    assert not running, f"QThread(s) still running after the test: {running}"


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny, random-weight) llama GGUF that llama-cpp-python loads."""
    from tests.support.tiny_model import build_tiny_gguf

    return Path(build_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf"))


# The GUI tests drive the window, not the router: they route by keywords (the router's own mode when no
# embedding model is available), so they do not pay for loading torch + the embedding model, and they
# keep replies short. tests/routing covers the embedding router.
TEST_SETTINGS = {"routing": {"embedding_model": "keyword-routing-only"}, "llm": {"max_tokens": 40, "threads": 1}}


@pytest.fixture
def test_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped configs/ with TEST_SETTINGS laid over config.yaml (also for a profile made afresh)."""
    import yaml

    from tara_desktop import paths

    folder = tmp_path / "configs"
    shutil.copytree(paths.configs_dir(), folder)
    app = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    for section, values in TEST_SETTINGS.items():
        app[section].update(values)
    (folder / "config.yaml").write_text(yaml.safe_dump(app), encoding="utf-8")
    monkeypatch.setattr(paths, "configs_dir", lambda: folder)
    return folder


@pytest.fixture
def window(qtbot: Any, tiny_gguf: Path, test_configs: Path) -> Iterator[Any]:
    """The real main window with the profile open and the tiny model used for every reply."""
    from tara_desktop.ui.main_window import MainWindow

    home = Path(os.environ["TARA_HOME"])
    win = MainWindow(home, show_welcome=False)
    qtbot.addWidget(win)
    win.chat.model_override = tiny_gguf
    win.show()
    with qtbot.waitSignal(win.assistant_ready, timeout=120_000):
        win.open_session()
    yield win
    win.close()


TIMEOUT = 120_000


def _send(qtbot: Any, window: Any, text: str) -> Any:
    """Type ``text`` and press Enter; return the TurnResult once the reply has streamed
    (with ``.streamed``: the tokens as they arrived)."""
    from PySide6.QtCore import Qt

    chat = window.chat
    tokens: list[str] = []
    chat.reply_token.connect(tokens.append)
    with qtbot.waitSignal(chat.turn_finished, timeout=TIMEOUT) as blocker:
        qtbot.keyClicks(chat.composer.edit, text)
        qtbot.keyClick(chat.composer.edit, Qt.Key.Key_Return)
        assert chat.busy and chat.composer.send_button.text() == "Stop"
    qtbot.waitUntil(lambda: not chat.busy, timeout=TIMEOUT)
    chat.reply_token.disconnect(tokens.append)
    result = blocker.args[0]
    result.streamed = tokens
    return result


@pytest.fixture
def send(qtbot: Any, window: Any) -> Any:
    """``send(text) -> TurnResult``: one typed turn in the window."""
    return lambda text: _send(qtbot, window, text)
