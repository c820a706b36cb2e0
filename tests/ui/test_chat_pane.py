"""The real window with a real tiny GGUF: send and stream, stop, regenerate, edit, switch, search, errors."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt

TIMEOUT = 120_000


def _reads_running(window: Any) -> bool:
    """A job (a conversation load, list refresh or search) has not yet delivered its result."""
    return bool(window.jobs.busy)


def test_send_a_message_and_see_the_streamed_reply(qtbot: Any, window: Any, send: Any) -> None:
    result = send("How do I write a business plan?")
    chat = window.chat
    assert not result.cancelled and result.reply
    assert len(result.streamed) > 1  # it arrived token by token
    user, reply = chat.view.bubbles
    assert user.content == "How do I write a business plan?"
    assert reply.content == result.reply
    assert result.domain in reply.meta_label.text()
    assert "tok/s" in reply.meta_label.text()
    assert f"feeling: {result.emotion} (from text)" in reply.meta_label.text()  # typed: read from the words
    assert chat.composer.send_button.text() == "Send"
    stored = chat.store.messages(result.conversation_id)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[1].content == result.reply
    assert window.conversations.list.count() == 1
    assert window.conversations.current_id() == result.conversation_id


def test_stop_mid_stream(qtbot: Any, window: Any, send: Any) -> None:
    chat = window.chat
    first_token = threading.Event()
    stop_clicked = threading.Event()

    def hold_after_first_token(event: object) -> None:  # runs on the worker thread
        if getattr(event, "kind", None) == "token" and not first_token.is_set():
            first_token.set()
            stop_clicked.wait(30)

    def on_created(job: Any) -> None:
        job.partial.connect(hold_after_first_token, Qt.ConnectionType.DirectConnection)

    window.jobs.created.connect(on_created)
    qtbot.keyClicks(chat.composer.edit, "Tell me a long story about the sea.")
    qtbot.keyClick(chat.composer.edit, Qt.Key.Key_Return)
    window.jobs.created.disconnect(on_created)
    with qtbot.waitSignal(chat.turn_finished, timeout=TIMEOUT) as blocker:
        qtbot.waitUntil(first_token.is_set, timeout=60_000)
        qtbot.mouseClick(chat.composer.send_button, Qt.MouseButton.LeftButton)  # "Stop"
        stop_clicked.set()
    qtbot.waitUntil(lambda: not chat.busy, timeout=TIMEOUT)
    result = blocker.args[0]
    assert result.cancelled
    reply = chat.view.bubbles[-1]
    assert "stopped" in reply.meta_label.text()
    assert chat.composer.send_button.text() == "Send"


def test_regenerate_replaces_the_last_reply(qtbot: Any, window: Any, send: Any) -> None:
    first = send("What is a balance sheet?")
    chat = window.chat
    reply = chat.view.bubbles[-1]
    assert reply.regenerate_button is not None and reply.regenerate_button.isEnabled()
    with qtbot.waitSignal(chat.turn_finished, timeout=TIMEOUT) as blocker:
        qtbot.mouseClick(reply.regenerate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not chat.busy, timeout=TIMEOUT)
    second = blocker.args[0]
    assert second.conversation_id == first.conversation_id
    stored = chat.store.messages(first.conversation_id)
    assert [m.role for m in stored] == ["user", "assistant"]  # replaced, not appended
    assert stored[0].content == "What is a balance sheet?"
    assert stored[1].id == second.message_id != first.message_id
    assert [b.role for b in chat.view.bubbles] == ["user", "assistant"]


def test_edit_and_resend(qtbot: Any, window: Any, send: Any) -> None:
    first = send("Explain photosyntesis")
    chat = window.chat
    user = chat.view.bubbles[0]
    assert user.edit_button is not None
    qtbot.mouseClick(user.edit_button, Qt.MouseButton.LeftButton)
    assert chat.composer.edit.toPlainText() == "Explain photosyntesis"
    stored = chat.store.messages(first.conversation_id)
    assert [m.role for m in stored] == ["user", "assistant"]  # nothing is deleted until the edit is sent
    assert "Editing" in chat.banner.text
    chat.composer.edit.clear()
    second = send("Explain photosynthesis")
    assert second.conversation_id == first.conversation_id
    stored = chat.store.messages(first.conversation_id)
    assert [m.content for m in stored if m.role == "user"] == ["Explain photosynthesis"]
    assert [m.id for m in stored] == [second.user_message_id, second.message_id]
    assert chat.view.bubbles[0].content == "Explain photosynthesis" and len(chat.view.bubbles) == 2


def test_edit_then_cancel_loses_nothing(qtbot: Any, window: Any, send: Any) -> None:
    first = send("What is a balance sheet?")
    second = send("And a cash flow statement?")
    chat = window.chat
    before = [(m.id, m.content) for m in chat.store.messages(first.conversation_id)]
    assert len(before) == 4
    qtbot.mouseClick(chat.view.bubbles[0].edit_button, Qt.MouseButton.LeftButton)  # Edit the first message
    assert chat.composer.edit.toPlainText() == "What is a balance sheet?"
    assert [b.graphicsEffect() is not None for b in chat.view.bubbles] == [True] * 4  # what would be replaced
    qtbot.keyClick(chat.composer.edit, Qt.Key.Key_Escape)  # ...and change my mind
    assert all(b.graphicsEffect() is None for b in chat.view.bubbles)
    assert chat.composer.edit.toPlainText() == "" and "Editing" not in chat.banner.text
    assert [(m.id, m.content) for m in chat.store.messages(first.conversation_id)] == before
    third = send("And an income statement?")  # a new message is added, nothing replaced
    after = chat.store.messages(first.conversation_id)
    assert [(m.id, m.content) for m in after][:4] == before and after[-1].id == third.message_id
    assert second.conversation_id == third.conversation_id == first.conversation_id
    assert len(chat.view.bubbles) == 6


def test_switch_conversations_and_search(qtbot: Any, window: Any, send: Any) -> None:
    a = send("How much sleep does an adult need?")
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)  # File → New chat
    assert window.chat.view.bubbles == []
    b = send("How should I price my SaaS product?")
    assert a.conversation_id != b.conversation_id
    convs = window.conversations
    assert convs.list.count() == 2
    for i in range(convs.list.count()):
        if convs.list.item(i).data(Qt.ItemDataRole.UserRole) == a.conversation_id:
            convs.list.setCurrentRow(i)
    assert window.chat.conversation_id == a.conversation_id
    # the messages are read off the GUI thread and shown when they arrive
    qtbot.waitUntil(lambda: len(window.chat.view.bubbles) == 2, timeout=30_000)
    assert window.chat.view.bubbles[0].content == "How much sleep does an adult need?"
    assert window.chat.view.bubbles[0].message_id == a.user_message_id
    assert f"feeling: {a.emotion} (from text)" in window.chat.view.bubbles[1].meta_label.text()  # also read back
    with qtbot.waitSignal(window.chat_model.list_changed, timeout=30_000):
        convs.search.setText("SaaS")  # the search runs off the GUI thread
    assert convs.list.count() == 1
    assert convs.list.item(0).data(Qt.ItemDataRole.UserRole) == b.conversation_id
    assert "mention" in convs.hint.text()


def test_a_late_result_for_an_older_request_is_dropped(qtbot: Any, window: Any, send: Any) -> None:
    a = send("How much sleep does an adult need?")
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    b = send("How should I price my SaaS product?")
    model = window.chat_model
    model.open(a.conversation_id)
    model.open(b.conversation_id)  # asked for before a's messages arrived: a's load result is dropped
    qtbot.waitUntil(lambda: not model.loading and not _reads_running(window), timeout=30_000)
    assert model.conversation_id == b.conversation_id
    assert model.messages[0].content == "How should I price my SaaS product?"
    model.search("sleep")
    with qtbot.waitSignal(model.list_changed, timeout=30_000):
        model.search("SaaS")  # the newer search wins, whichever finishes first
    qtbot.waitUntil(lambda: not _reads_running(window), timeout=30_000)
    assert [c.id for c in model.conversations] == [b.conversation_id]


def test_rename_and_delete_a_conversation(qtbot: Any, window: Any, send: Any, monkeypatch: Any,
                                         tmp_path: Path) -> None:
    from PySide6.QtWidgets import QInputDialog, QMessageBox

    result = send("What foods are high in iron?")
    convs = window.conversations
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("Iron", True))
    qtbot.mouseClick(convs.rename_button, Qt.MouseButton.LeftButton)
    assert convs.list.item(0).text() == "Iron"
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    qtbot.mouseClick(convs.delete_button, Qt.MouseButton.LeftButton)
    assert convs.list.count() == 0
    assert all(c.id != result.conversation_id for c in window.chat.store.list_conversations())
    assert window.chat.view.bubbles == []
    profile = window.session.assistant.profile  # nothing of it is left: not in the folder, not in an export
    export = tmp_path / "export"
    profile.export(export)
    said = b"foods are high in iron"
    leaks = [p for folder in (profile.dir, export) for p in Path(folder).rglob("*")
             if p.is_file() and said in p.read_bytes()]
    assert leaks == []


def test_a_model_that_cannot_load_shows_an_error_not_a_crash(qtbot: Any, window: Any, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 40)
    chat = window.chat
    chat.model_override = broken
    with qtbot.waitSignal(chat.turn_failed, timeout=TIMEOUT) as blocker:
        qtbot.keyClicks(chat.composer.edit, "hello")
        qtbot.keyClick(chat.composer.edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not chat.busy, timeout=TIMEOUT)
    assert blocker.args[0]
    assert chat.banner.text == blocker.args[0]
    assert chat.banner.kind == "error"
    assert "Traceback" not in chat.banner.text


def test_closing_the_window_mid_reply_stops_it_and_waits(qtbot: Any, window: Any) -> None:
    chat = window.chat
    first_token = threading.Event()
    release = threading.Event()
    finished: list[Any] = []

    def hold_after_first_token(event: object) -> None:  # worker thread: the reply is mid-stream
        if getattr(event, "kind", None) == "token" and not first_token.is_set():
            first_token.set()
            release.wait(30)

    def on_created(job: Any) -> None:
        job.partial.connect(hold_after_first_token, Qt.ConnectionType.DirectConnection)
        job.succeeded.connect(finished.append, Qt.ConnectionType.DirectConnection)

    window.jobs.created.connect(on_created)
    qtbot.keyClicks(chat.composer.edit, "Write me a long poem about rivers.")
    qtbot.keyClick(chat.composer.edit, Qt.Key.Key_Return)
    qtbot.waitUntil(first_token.is_set, timeout=60_000)
    threading.Timer(0.3, release.set).start()  # lets the worker go on while close() is waiting
    window.close()  # cancels the reply and waits for it
    assert not window.isVisible()
    assert not window.jobs.busy or all(not j.isRunning() for j in window.jobs.running())
    assert finished and finished[0].cancelled
    from tara_desktop.profile import Profile

    with Profile.open(Path(os.environ["TARA_HOME"])) as profile:  # what was said so far was kept
        stored = profile.store.messages(finished[0].conversation_id)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[-1].meta["cancelled"] is True
