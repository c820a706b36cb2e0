"""The app around the pages: --smoke, the welcome, the error dialog, push-to-talk without a microphone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QWizard

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_smoke_opens_the_window_and_answers_once(tmp_path: Path, test_configs: Path) -> None:
    """`tara-desktop --smoke` in a fresh process answers with the bundled chat model (from models/ of the
    install, or, as in this checkout, the registry package that ships it)."""
    install = tmp_path / "install"
    shutil.copytree(test_configs, install / "configs")
    (install / "models").mkdir()
    shutil.copy(PROJECT_ROOT / "models" / "catalog.yaml", install / "models" / "catalog.yaml")
    env = {**os.environ, "TARA_INSTALL_DIR": str(install), "QT_QPA_PLATFORM": "offscreen"}
    env.pop("TARA_HOME", None)
    done = subprocess.run([sys.executable, "-m", "tara_desktop.ui.app", "--smoke"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "you:  Hello TARA! What can you help me with?"
    assert lines[1].startswith("tara: ")
    reply = done.stdout.split("tara: ", 1)[1].split("\n      [", 1)[0]
    assert len(reply.split()) >= 4, f"no real answer: {reply!r}"
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in done.stdout
    assert "Traceback" not in done.stderr


def test_first_run_welcome_sets_consent_and_is_not_shown_again(qtbot: Any, tiny_gguf: Path,
                                                                test_configs: Path) -> None:
    from tara_desktop.ui.main_window import MainWindow
    from tara_desktop.ui.welcome import WelcomeWizard

    win = MainWindow(Path(os.environ["TARA_HOME"]), show_welcome=True)
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.assistant_ready, timeout=120_000):
        win.open_session()
    wizard = win.findChild(WelcomeWizard)
    assert wizard is not None and wizard.isVisible()
    wizard.consent_boxes["record_voice"].setChecked(True)
    wizard.consent_boxes["train_on_my_data"].setChecked(False)
    while wizard.currentId() != wizard.pageIds()[-1]:
        wizard.next()
    assert wizard.model_demo.isChecked()
    wizard.button(QWizard.WizardButton.FinishButton).click()
    profile = win.session.assistant.profile
    assert profile.consent.get("record_voice") is True
    assert profile.consent.get("train_on_my_data") is False
    assert win.session.welcome_done()
    win.close()


def test_push_to_talk_without_a_microphone_says_so(qtbot: Any, window: Any) -> None:
    chat = window.chat
    # (the microphone needs no consent; "record_voice" only decides whether recordings are kept)
    qtbot.mousePress(chat.ptt_button, Qt.MouseButton.LeftButton)
    qtbot.mouseRelease(chat.ptt_button, Qt.MouseButton.LeftButton)
    assert chat.banner.kind == "error"
    assert chat.banner.text.startswith("No microphone")  # this machine has no input device
    assert chat.voice_state.state == "idle"
    assert not chat.busy


def test_an_unexpected_error_shows_a_dialog_not_a_traceback(qtbot: Any, window: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from tara_desktop.ui import error_hook

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after the test
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    error_hook.install(lambda: window)
    hook = sys.excepthook
    shown_before = len(error_hook.shown)

    class Broken(QObject):
        def boom(self) -> None:
            raise RuntimeError("a bug in a slot")

    broken = Broken()
    try:  # call the hook as Qt would for an exception escaping a slot
        broken.boom()
    except RuntimeError as exc:
        hook(type(exc), exc, exc.__traceback__)
    qtbot.waitUntil(lambda: len(error_hook.shown) > shown_before, timeout=5_000)
    assert error_hook.shown[-1] == "Something went wrong (RuntimeError: a bug in a slot). Please try again."


def test_a_passphrase_profile_asks_to_unlock_and_retries(qtbot: Any, test_configs: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from tara_desktop.profile import Profile
    from tara_desktop.ui.main_window import MainWindow
    from tara_desktop.ui.unlock_dialog import UnlockDialog

    home = Path(os.environ["TARA_HOME"])
    Profile.open(home).close()  # made with TARA_PASSPHRASE, as a passphrase profile
    monkeypatch.delenv("TARA_PASSPHRASE")
    answers = ["not the passphrase", "test passphrase"]
    seen_errors: list[str] = []

    def type_into_the_dialog() -> None:
        dialog = QApplication.activeModalWidget()
        if isinstance(dialog, UnlockDialog) and answers:
            seen_errors.append(dialog.error.text())
            dialog.field.setText(answers.pop(0))
            dialog.accept()

    typist = QTimer()
    typist.setInterval(20)
    typist.timeout.connect(type_into_the_dialog)
    typist.start()
    win = MainWindow(home, show_welcome=False)
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.assistant_ready, timeout=120_000):
        win.open_session()
    typist.stop()
    assert answers == []
    assert seen_errors[0] == ""  # first prompt: no error yet
    assert "passphrase" in seen_errors[1].lower()  # second: says the first one was wrong
    assert win.session.assistant.profile.key_source == "passphrase"
    win.close()
