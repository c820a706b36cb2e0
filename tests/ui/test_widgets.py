"""Widgets on their own: the message box keys, Send/Stop, markdown, reply details, push-to-talk, fit labels."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtCore import Qt

from tara_desktop.ui.composer import Composer
from tara_desktop.ui.markdown_render import to_html
from tara_desktop.ui.message_view import MessageView, format_meta
from tara_desktop.ui.models_page import human_size
from tara_desktop.ui.push_to_talk import LevelMeter, PushToTalkButton, VoiceStateIndicator
from tara_desktop.ui.voice_controller import level_from_dbfs


def test_enter_sends_and_shift_enter_adds_a_line(qtbot: Any) -> None:
    composer = Composer()
    qtbot.addWidget(composer)
    sent: list[str] = []
    composer.send_requested.connect(sent.append)
    qtbot.keyClicks(composer.edit, "first line")
    qtbot.keyClick(composer.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(composer.edit, "second line")
    assert sent == []
    qtbot.keyClick(composer.edit, Qt.Key.Key_Return)
    assert sent == ["first line\nsecond line"]
    assert composer.edit.toPlainText() == ""


def test_blank_messages_are_not_sent_and_busy_turns_send_into_stop(qtbot: Any) -> None:
    composer = Composer()
    qtbot.addWidget(composer)
    sent: list[str] = []
    stops: list[bool] = []
    composer.send_requested.connect(sent.append)
    composer.stop_requested.connect(lambda: stops.append(True))
    qtbot.keyClicks(composer.edit, "   ")
    qtbot.keyClick(composer.edit, Qt.Key.Key_Return)
    assert sent == []
    composer.set_busy(True)
    assert composer.send_button.text() == "Stop"
    qtbot.keyClicks(composer.edit, "hello")
    qtbot.keyClick(composer.edit, Qt.Key.Key_Return)  # Enter does not send while a reply streams
    assert sent == []
    qtbot.mouseClick(composer.send_button, Qt.MouseButton.LeftButton)
    assert stops == [True]
    composer.set_busy(False)
    qtbot.mouseClick(composer.send_button, Qt.MouseButton.LeftButton)
    assert sent == ["hello"]


def test_markdown_renders_code_blocks_and_never_raw_html() -> None:
    html = to_html("Here:\n\n```python\nprint('<b>hi</b>')\n```\n\nand <script>alert(1)</script> **bold**")
    assert "<pre>" in html and "<code" in html
    assert "&lt;b&gt;hi&lt;/b&gt;" in html  # code is shown as text
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<strong>bold</strong>" in html


def test_reply_details_line() -> None:
    line = format_meta({"domain": "technical", "model": "/x/models/tara-demo.gguf", "emotion": "calm",
                        "ttft_s": 0.214, "tokens_per_s": 18.26})
    assert line == "technical · tara-demo.gguf · feeling: calm · first token 0.21 s · 18.3 tok/s"
    assert format_meta({"domain": "general", "cancelled": True}) == "general · stopped"
    assert format_meta(None) == ""


def test_reply_details_say_what_heard_the_feeling() -> None:
    felt = {"domain": "general", "emotion": "calm"}
    assert format_meta({**felt, "emotion_engine": "speechbrain"}) == "general · feeling: calm (SpeechBrain)"
    assert format_meta({**felt, "emotion_engine": "text"}) == "general · feeling: calm (from text)"
    assert format_meta({**felt, "emotion_engine": "prosody"}) == "general · feeling: calm (tone of voice)"
    assert format_meta({**felt, "emotion_engine": "none"}) == "general · feeling: calm"  # nothing heard it
    assert format_meta({"domain": "general", "emotion_engine": "speechbrain"}) == "general"  # no feeling, no engine


def test_a_reply_knows_what_detected_its_emotion() -> None:
    from tara_desktop.turn import TurnResult
    from tara_desktop.ui.chat_model import emotion_engine_of, result_meta

    result = TurnResult(conversation_id=1, message_id=2, reply="hi", domain="general", confidence=0.9, reason="",
                        model="m.gguf", adapter=None, emotion="calm", emotion_confidence=0.8, ttft_s=0.1,
                        tokens_per_s=10.0, total_s=1.0, cancelled=False)
    assert result_meta(result, "speechbrain")["emotion_engine"] == "speechbrain"
    assert result_meta(result)["emotion_engine"] is None
    # a stored turn: the engine its user message recorded, else the words for a typed message
    assert emotion_engine_of({"source": "voice", "emotion_engine": "prosody"}) == "prosody"
    assert emotion_engine_of({"source": "typed"}) == "text"
    assert emotion_engine_of({"source": "voice"}) is None


def test_message_view_streams_into_a_bubble_and_clears(qtbot: Any) -> None:
    view = MessageView()
    qtbot.addWidget(view)
    view.resize(600, 400)
    view.show()
    view.add_message("user", "Hello", message_id=1)
    reply = view.add_message("assistant", "", message_id=None)
    for token in ("Hi", " there", "!"):
        reply.append_text(token)
    assert reply.content == "Hi there!"
    assert "Hi there!" in reply.body.toPlainText()
    assert reply.body.height() > 10
    view.set_actions_enabled(True)
    assert reply.regenerate_button is not None and not reply.regenerate_button.isEnabled()  # no id yet
    view.clear()
    assert view.bubbles == []


def test_push_to_talk_button_reports_hold_and_release(qtbot: Any) -> None:
    button = PushToTalkButton()
    qtbot.addWidget(button)
    events: list[str] = []
    button.press_started.connect(lambda: events.append("down"))
    button.press_ended.connect(lambda: events.append("up"))
    qtbot.mousePress(button, Qt.MouseButton.LeftButton)
    qtbot.mouseRelease(button, Qt.MouseButton.LeftButton)
    assert events == ["down", "up"]
    assert button.accessibleName() == "Push to talk"


def test_voice_state_and_level(qtbot: Any) -> None:
    indicator = VoiceStateIndicator()
    meter = LevelMeter()
    qtbot.addWidget(indicator)
    qtbot.addWidget(meter)
    for state in ("listening", "transcribing", "thinking", "speaking", "idle"):
        indicator.set_state(state)
        assert indicator.state == state
    indicator.set_state("nonsense")
    assert indicator.state == "idle"
    meter.set_level(level_from_dbfs(-30.0))
    assert meter.level == 0.5
    assert level_from_dbfs(float("-inf")) == 0.0


def test_sizes() -> None:
    assert human_size(None) == "–"
    assert human_size(1536) == "1.5 KB"
    assert human_size(3 * 1024**3) == "3.0 GB"


def test_holding_the_hotkey_presses_push_to_talk(qtbot: Any) -> None:
    from PySide6.QtWidgets import QApplication, QWidget

    from tara_desktop.ui.push_to_talk import PushToTalkHotkey

    window = QWidget()
    qtbot.addWidget(window)
    button = PushToTalkButton(parent=window)
    hotkey = PushToTalkHotkey(button, "Ctrl+Space")
    QApplication.instance().installEventFilter(hotkey)
    window.show()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5_000)
    events: list[str] = []
    button.press_started.connect(lambda: events.append("down"))
    button.press_ended.connect(lambda: events.append("up"))
    qtbot.keyPress(window, Qt.Key.Key_Space, Qt.KeyboardModifier.ControlModifier)
    assert events == ["down"] and button.held
    qtbot.keyRelease(window, Qt.Key.Key_Space, Qt.KeyboardModifier.ControlModifier)
    assert events == ["down", "up"]


def test_the_passphrase_prompt_follows_the_error_type_not_its_wording() -> None:
    from tara_desktop.errors import TaraError
    from tara_desktop.profile.errors import PassphraseChanged, ProfileLocked, WrongPassphrase
    from tara_desktop.ui.session import needs_passphrase

    assert needs_passphrase(ProfileLocked("locked"))
    assert needs_passphrase(WrongPassphrase("no"))
    assert needs_passphrase(PassphraseChanged("changed elsewhere"))
    # a message that merely mentions a wrong passphrase is not a reason to ask for one
    assert not needs_passphrase(TaraError("the wrong passphrase file name was given"))
    assert not needs_passphrase(None)


def test_a_weak_passphrase_for_a_new_profile_is_refused_and_asked_again(
        qtbot: Any, test_configs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """No keyring, no TARA_PASSPHRASE: the window asks for a passphrase for the new profile; one too easy to
    guess is refused with the reason, the person is asked again, and a good one creates the profile."""
    import os
    from pathlib import Path

    from tara_desktop.ui import unlock_dialog
    from tara_desktop.ui.main_window import MainWindow

    monkeypatch.delenv("TARA_PASSPHRASE")
    monkeypatch.setenv("TARA_KEY_SOURCE", "passphrase")
    asked: list[str | None] = []
    choosing: list[bool] = []
    answers = iter(["sunshine", "a quiet lighthouse at dawn"])

    def ask(_parent: object, error: str | None = None, *, new_profile: bool = False) -> str | None:
        asked.append(error)
        choosing.append(new_profile)
        return next(answers)

    monkeypatch.setattr(unlock_dialog, "ask_passphrase", ask)
    win = MainWindow(Path(os.environ["TARA_HOME"]), show_welcome=False)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.assistant_ready, timeout=120_000):
        win.open_session()
    assert len(asked) == 2 and asked[0] is None  # first: a plain prompt
    assert asked[1] is not None and "choose" in asked[1] and "sunshine" not in asked[1]  # why, not the phrase
    assert choosing == [True, True]  # a passphrase being chosen is typed twice
    assert win.session.assistant is not None
    win.close()


def test_a_new_passphrase_is_accepted_only_when_typed_twice_the_same(qtbot: Any) -> None:
    from tara_desktop.ui.unlock_dialog import UnlockDialog

    dialog = UnlockDialog(None, new_profile=True)
    qtbot.addWidget(dialog)
    ok = dialog._ok
    assert dialog.repeat.isVisibleTo(dialog) and ok.text() == "Create profile"
    dialog.field.setText("a quiet lighthouse at dawn")
    assert not ok.isEnabled()
    dialog.repeat.setText("a quiet lighthouse at dusk")  # a typo would lock the person out
    assert not ok.isEnabled() and dialog.mismatch.isVisibleTo(dialog)
    dialog.repeat.setText("a quiet lighthouse at dawn")
    assert ok.isEnabled() and not dialog.mismatch.isVisibleTo(dialog)
    unlock = UnlockDialog(None)
    qtbot.addWidget(unlock)
    assert not unlock.repeat.isVisibleTo(unlock) and unlock._ok.text() == "Unlock"
    unlock.field.setText("x")
    assert unlock._ok.isEnabled()
