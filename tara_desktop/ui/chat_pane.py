"""The chat pane: shows the open conversation of the :class:`~tara_desktop.ui.chat_model.ChatModel`,
the composer, the domain pin and push-to-talk.

The pane holds no conversation state of its own: it draws what the model says (signals) and hands
what the person does (send, stop, edit, regenerate, pin) to the model's public methods. Turns and
conversation loads run off the GUI thread inside the model.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QApplication, QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from tara_desktop.ui.banner import Banner
from tara_desktop.ui.chat_model import ChatModel, ShownMessage, result_meta
from tara_desktop.ui.composer import Composer
from tara_desktop.ui.message_view import MessageBubble, MessageView
from tara_desktop.ui.push_to_talk import LevelMeter, PushToTalkButton, PushToTalkHotkey, VoiceStateIndicator
from tara_desktop.ui.workers import JobHost

if TYPE_CHECKING:
    from pathlib import Path

    from tara_desktop.assistant import Assistant
    from tara_desktop.profile.store import ProfileStore

log = logging.getLogger(__name__)

AUTO = "Auto (TARA picks the domain)"
EDITING = "Editing your message: send it to replace it and the replies after it, or press Esc to keep them."

__all__ = ["AUTO", "ChatPane", "result_meta"]


class ChatPane(QWidget):
    """One conversation at a time, as the chat model has it.

    Signals:
        turn_finished(object): the ``TurnResult`` of a completed (or stopped) turn.
        turn_failed(str): why a turn failed, in one sentence.
        conversation_created(int): a first message created this conversation in the store.
        busy_changed(bool): a reply is being generated.
        reply_token(str): a piece of the reply being streamed.
    """

    turn_finished = Signal(object)
    turn_failed = Signal(str)
    conversation_created = Signal(int)
    busy_changed = Signal(bool)
    reply_token = Signal(str)

    def __init__(self, jobs: JobHost, hotkey: str = "Ctrl+Space", parent: QWidget | None = None,
                 model: ChatModel | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.model = model if model is not None else ChatModel(jobs, self)
        self.assistant: Assistant | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        top = QHBoxLayout()
        top.setContentsMargins(16, 8, 16, 8)
        self.title = QLabel("New chat", self)
        self.title.setObjectName("PageTitle")
        top.addWidget(self.title, 1)
        top.addWidget(QLabel("Domain:", self))
        self.domain_box = QComboBox(self)
        self.domain_box.setAccessibleName("Pin domain")
        self.domain_box.setToolTip("Pin this conversation to one domain, or let TARA pick")
        self.domain_box.addItem(AUTO, None)
        top.addWidget(self.domain_box)
        layout.addLayout(top)
        self.banner = Banner(self)
        layout.addWidget(self.banner)
        self.view = MessageView(self)
        layout.addWidget(self.view, 1)
        bottom = QVBoxLayout()
        bottom.setContentsMargins(16, 8, 16, 6)
        self.composer = Composer(self)
        bottom.addWidget(self.composer)
        self.status = QLabel("", self)
        self.status.setObjectName("Muted")
        self.status.setAccessibleName("Model status")
        layout.addLayout(bottom)
        # push-to-talk row, under the text box
        self.ptt_button = PushToTalkButton(hotkey, self)
        self.level_meter = LevelMeter(self)
        self.voice_state = VoiceStateIndicator(self)
        self.hotkey = PushToTalkHotkey(self.ptt_button, hotkey)
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self.hotkey)  # hold Ctrl+Space anywhere in the window
        extra = self.composer.extra_row
        extra.addWidget(self.ptt_button)
        extra.addWidget(self.level_meter)
        extra.addWidget(self.voice_state)
        extra.addStretch(1)
        extra.addWidget(self.status)
        self.composer.send_requested.connect(self.send)
        self.composer.stop_requested.connect(self.stop)
        self.view.regenerate_requested.connect(self.regenerate)
        self.view.edit_requested.connect(self.edit_and_resend)
        self.domain_box.activated.connect(self._on_domain_chosen)
        stop = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        stop.activated.connect(self._on_escape)
        m = self.model
        m.conversation_shown.connect(self._on_conversation_shown)
        m.message_added.connect(self._on_message_added)
        m.reply_token.connect(self._on_token)
        m.reply_finished.connect(self._on_reply_finished)
        m.ids_assigned.connect(self._on_ids_assigned)
        m.title_changed.connect(self.title.setText)
        m.pin_changed.connect(self._show_pin)
        m.editing_changed.connect(self._on_editing_changed)
        m.draft_ready.connect(self.composer.set_text)
        m.busy_changed.connect(self._on_busy_changed)
        m.turn_finished.connect(self.turn_finished.emit)
        m.turn_failed.connect(self._on_turn_failed)
        m.conversation_created.connect(self.conversation_created.emit)
        m.error.connect(self.banner.show_error)
        from tara_desktop.ui.voice_controller import VoiceController

        self.voice = VoiceController(self, self.model)
        self.set_assistant(None)

    # ---- wiring ---------------------------------------------------------------------------------------
    @property
    def store(self) -> ProfileStore | None:
        return None if self.assistant is None else self.assistant.profile.store

    @property
    def conversation_id(self) -> int | None:
        return self.model.conversation_id

    @property
    def model_override(self) -> Path | None:
        return self.model.model_override

    @model_override.setter
    def model_override(self, path: Path | None) -> None:
        self.model.model_override = path

    def set_assistant(self, assistant: Assistant | None) -> None:
        self.assistant = assistant
        if self.model.assistant is not assistant:
            self.model.set_assistant(assistant)
        self.composer.send_button.setEnabled(assistant is not None)
        self.domain_box.setEnabled(assistant is not None)
        if assistant is not None:
            current = self.domain_box.currentData()
            self.domain_box.clear()
            self.domain_box.addItem(AUTO, None)
            for name in sorted(assistant.configs.domains):
                self.domain_box.addItem(name.capitalize(), name)
            self._show_pin(current)
            self.hotkey.set_hotkey(assistant.configs.app.voice.push_to_talk)
            self.ptt_button.setToolTip(f"Hold to talk ({assistant.configs.app.voice.push_to_talk}); release to send")
            self.composer.edit.setFocus()

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    @property
    def busy(self) -> bool:
        return self.model.busy

    # ---- showing what the model has ----------------------------------------------------------------
    def show_conversation(self, conversation_id: int | None) -> None:
        """Open a conversation (None: a new chat); the messages appear when they have been read."""
        self.model.open(conversation_id)

    def _on_conversation_shown(self, _model: object) -> None:
        self.view.clear()
        self.banner.hide()
        for m in self.model.messages:
            self.view.add_message(m.role, m.content, m.meta, m.id)
        self.view.set_actions_enabled(not self.model.busy)

    def _on_message_added(self, message: object) -> None:
        assert isinstance(message, ShownMessage)
        self.banner.hide()
        self.view.add_message(message.role, message.content, message.meta, message.id)
        self.view.set_actions_enabled(False)

    def _last_bubble(self) -> MessageBubble | None:
        return self.view.bubbles[-1] if self.view.bubbles else None

    def _on_token(self, token: str) -> None:
        bubble = self._last_bubble()
        if bubble is not None and bubble.role == "assistant":
            bubble.append_text(token)
        self.reply_token.emit(token)

    def _on_reply_finished(self, message: object) -> None:
        bubble = self._last_bubble()
        if bubble is not None and bubble.role == "assistant" and isinstance(message, ShownMessage):
            bubble.set_content(message.content)
            bubble.set_meta(message.meta)
            bubble.message_id = message.id

    def _on_ids_assigned(self) -> None:
        shown = [m for m in self.model.messages]
        if len(shown) == len(self.view.bubbles):
            for bubble, m in zip(self.view.bubbles, shown, strict=True):
                bubble.message_id = m.id

    def _show_pin(self, domain: object) -> None:
        index = self.domain_box.findData(domain) if domain else 0
        self.domain_box.setCurrentIndex(max(0, index))

    def _on_domain_chosen(self, _index: int) -> None:
        self.model.pin(self.domain_box.currentData())

    def _on_editing_changed(self, mid: object) -> None:
        from PySide6.QtWidgets import QGraphicsOpacityEffect

        if mid is None:
            if self.banner.text == EDITING:
                self.banner.hide()
        else:
            self.banner.show_info(EDITING)
        ids = [b.message_id for b in self.view.bubbles]
        start = ids.index(mid) if mid is not None and mid in ids else len(ids)
        for i, bubble in enumerate(self.view.bubbles):  # what sending the edit would replace is dimmed
            if i >= start:
                effect = QGraphicsOpacityEffect(bubble)
                effect.setOpacity(0.45)
                bubble.setGraphicsEffect(effect)
            elif bubble.graphicsEffect() is not None:
                bubble.setGraphicsEffect(None)  # type: ignore[arg-type]

    def _on_busy_changed(self, busy: bool) -> None:
        self.composer.set_busy(busy)
        self.view.set_actions_enabled(not busy)
        self.busy_changed.emit(busy)

    def _on_turn_failed(self, message: str) -> None:
        self.banner.show_error(message)
        self.turn_failed.emit(message)

    def _on_escape(self) -> None:
        if self.model.busy:
            self.model.stop()
        elif self.model.editing is not None:
            self.model.cancel_edit()
            self.composer.set_text("")

    # ---- what the person does ------------------------------------------------------------------------
    def send(self, text: str, *, emotion: str | None = None, emotion_confidence: float | None = None,
             source: Literal["typed", "voice"] = "typed", model_path: Path | None = None) -> None:
        """Show ``text`` as the user's message and stream TARA's reply below it."""
        text = text.strip()
        if not text or self.busy:
            return
        if self.assistant is None:
            self.banner.show_info("TARA is still starting; your message is back in the box — send it in a moment.")
            self.composer.set_text(text)
            return
        self.model.send(text, emotion=emotion, emotion_confidence=emotion_confidence, source=source,
                        model_path=model_path)

    def stop(self) -> None:
        self.model.stop()

    def regenerate(self, reply_message_id: int) -> None:
        """Write the reply ``reply_message_id`` again from the user message before it."""
        self.model.regenerate(reply_message_id)

    def edit_and_resend(self, user_message_id: int) -> None:
        """Put a user message back in the box; it and the messages after it are replaced only when it
        is sent (Esc keeps everything)."""
        self.model.begin_edit(user_message_id)
