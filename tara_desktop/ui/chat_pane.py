"""The chat pane: the messages of one conversation, the composer, the domain pin and push-to-talk.

The pane talks to the assistant (``tara_desktop.assistant.Assistant``) only through ``run_turn`` and the
profile store; every turn runs on a :class:`~tara_desktop.ui.workers.JobThread`, and streamed tokens
arrive as queued signals.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QApplication, QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.ui.banner import Banner
from tara_desktop.ui.composer import Composer
from tara_desktop.ui.message_view import MessageBubble, MessageView
from tara_desktop.ui.push_to_talk import LevelMeter, PushToTalkButton, PushToTalkHotkey, VoiceStateIndicator
from tara_desktop.ui.workers import JobHost, JobThread

log = logging.getLogger(__name__)

AUTO = "Auto (TARA picks the domain)"


def result_meta(result: Any) -> dict[str, Any]:
    """The meta line of a reply from a ``TurnResult``."""
    keys = ("domain", "confidence", "model", "adapter", "emotion", "ttft_s", "tokens_per_s", "cancelled")
    return {k: getattr(result, k, None) for k in keys}


class ChatPane(QWidget):
    """One conversation at a time.

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

    def __init__(self, jobs: JobHost, hotkey: str = "Ctrl+Space", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.assistant: Any = None
        self.conversation_id: int | None = None
        self._pending_pin: str | None = None
        self.model_override: Any = None  # a model file that replaces the mapping's (smoke, tests)
        self._job: JobThread | None = None
        self._reply: MessageBubble | None = None
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
        stop.activated.connect(self.stop)
        from tara_desktop.ui.voice_controller import VoiceController

        self.voice = VoiceController(self)
        self.set_assistant(None)

    # ---- wiring ---------------------------------------------------------------------------------------
    @property
    def store(self) -> Any:
        return None if self.assistant is None else self.assistant.profile.store

    def set_assistant(self, assistant: Any) -> None:
        self.assistant = assistant
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
        return self._job is not None

    # ---- showing a conversation --------------------------------------------------------------------
    def show_conversation(self, conversation_id: int | None) -> None:
        if self.busy and conversation_id != self.conversation_id:
            self.stop()
        self.conversation_id = conversation_id
        self.view.clear()
        self.banner.hide()
        self._pending_pin = None
        if conversation_id is None or self.store is None:
            self.title.setText("New chat")
            self._show_pin(None)
            return
        try:
            info = next((c for c in self.store.list_conversations() if c.id == conversation_id), None)
            messages = self.store.messages(conversation_id)
        except TaraError as exc:
            self.banner.show_error(str(exc))
            return
        self.title.setText(info.title if info is not None and info.title else "Untitled")
        self._show_pin(getattr(info, "pinned_domain", None))
        for m in messages:
            if m.role in ("user", "assistant"):
                self.view.add_message(m.role, m.content, m.meta, m.id)
        self.view.set_actions_enabled(True)

    def _show_pin(self, domain: str | None) -> None:
        index = self.domain_box.findData(domain) if domain else 0
        self.domain_box.setCurrentIndex(max(0, index))

    def _on_domain_chosen(self, _index: int) -> None:
        domain = self.domain_box.currentData()
        if self.conversation_id is None or self.store is None:
            self._pending_pin = domain
            return
        try:
            self.store.set_pinned_domain(self.conversation_id, domain)
        except TaraError as exc:
            self.banner.show_error(str(exc))

    # ---- a turn --------------------------------------------------------------------------------------
    def send(self, text: str, *, emotion: str | None = None, emotion_confidence: float | None = None,
             source: Literal["typed", "voice"] = "typed", model_path: Any = None) -> None:
        """Show ``text`` as the user's message and stream TARA's reply below it."""
        text = text.strip()
        if not text or self.busy:
            return
        if self.assistant is None:
            self.banner.show_info("TARA is still starting; your message is back in the box — send it in a moment.")
            self.composer.set_text(text)
            return
        from tara_desktop.assistant import TurnRequest

        pin = self.domain_box.currentData()
        request = TurnRequest(text=text, conversation_id=self.conversation_id, emotion=emotion,
                              emotion_confidence=emotion_confidence, pinned_domain=pin, source=source,
                              model_path=model_path or self.model_override)
        self.banner.hide()
        self.view.add_message("user", text)
        self._reply = self.view.add_message("assistant", "")
        self.view.set_actions_enabled(False)
        assistant = self.assistant

        def run(state: JobState, emit: Any) -> Any:
            return assistant.run_turn(request, state, emit)

        self._job = self.jobs.start(run, "chat-turn")
        self._job.partial.connect(self._on_token)
        self._job.succeeded.connect(self._on_turn_done)
        self._job.failed.connect(self._on_turn_failed)
        self._job.cancelled.connect(self._on_turn_cancelled)
        self._job.done.connect(self._on_job_done)
        self.composer.set_busy(True)
        self.busy_changed.emit(True)

    def stop(self) -> None:
        if self._job is not None:
            self._job.cancel()

    def begin_external_turn(self, job: JobThread) -> None:
        """A turn that started elsewhere (a voice turn): Stop and busy state follow ``job``."""
        self._job = job
        self._reply = None
        job.done.connect(self._on_job_done)
        self.composer.set_busy(True)
        self.view.set_actions_enabled(False)
        self.busy_changed.emit(True)

    def show_external_message(self, text: str) -> None:
        """Show what the person said (a transcript) and an empty reply bubble to stream into."""
        self.banner.hide()
        self.view.add_message("user", text)
        self._reply = self.view.add_message("assistant", "")

    def _on_token(self, token: object) -> None:
        if self._reply is not None:
            self._reply.append_text(str(token))
        self.reply_token.emit(str(token))

    def _on_turn_done(self, result: Any) -> None:
        created = self.conversation_id is None and result.conversation_id is not None
        if self._reply is not None:
            self._reply.set_content(result.reply or self._reply.content)
            self._reply.set_meta(result_meta(result))
            self._reply.message_id = result.message_id
        if result.conversation_id is not None:
            self.conversation_id = result.conversation_id
            if created and self._pending_pin and self.store is not None:
                self.store.set_pinned_domain(result.conversation_id, self._pending_pin)
            self._reload_ids()
        if created and result.conversation_id is not None:
            self.conversation_created.emit(result.conversation_id)
        self.turn_finished.emit(result)

    def _reload_ids(self) -> None:
        """Give the bubbles the ids the store gave their messages (for edit and regenerate)."""
        if self.store is None or self.conversation_id is None:
            return
        try:
            messages = [m for m in self.store.messages(self.conversation_id) if m.role in ("user", "assistant")]
            info = next((c for c in self.store.list_conversations() if c.id == self.conversation_id), None)
        except TaraError:
            return
        if info is not None:
            self.title.setText(info.title or "Untitled")
        if len(messages) == len(self.view.bubbles):
            for bubble, m in zip(self.view.bubbles, messages, strict=True):
                bubble.message_id = m.id

    def _on_turn_failed(self, message: str) -> None:
        if self._reply is not None and not self._reply.content:
            self._reply.set_content("*(no reply)*")
        self.banner.show_error(message)
        self.turn_failed.emit(message)

    def _on_turn_cancelled(self) -> None:
        if self._reply is not None:
            meta = dict(self._reply.meta)
            meta["cancelled"] = True
            self._reply.set_meta(meta)

    def _on_job_done(self) -> None:
        self._job = None
        self._reply = None
        self.composer.set_busy(False)
        self.view.set_actions_enabled(True)
        self.busy_changed.emit(False)

    # ---- regenerate, edit and resend ---------------------------------------------------------------
    def _rewind_to_user_message(self, user_message_id: int) -> str | None:
        """Delete a user message and everything after it; return its text."""
        if self.store is None or self.conversation_id is None:
            return None
        messages = self.store.messages(self.conversation_id)
        ids = [m.id for m in messages]
        if user_message_id not in ids:
            return None
        index = ids.index(user_message_id)
        text = str(messages[index].content)
        before = ids[index - 1] if index > 0 else 0
        self.store.delete_messages_after(self.conversation_id, before)
        return text

    def regenerate(self, reply_message_id: int) -> None:
        """Write the reply ``reply_message_id`` again from the user message before it."""
        if self.busy or self.store is None or self.conversation_id is None:
            return
        try:
            messages = self.store.messages(self.conversation_id)
            ids = [m.id for m in messages]
            index = ids.index(reply_message_id)
            user = next(m for m in reversed(messages[:index]) if m.role == "user")
            text = self._rewind_to_user_message(user.id)
        except (ValueError, StopIteration):
            return
        except TaraError as exc:
            self.banner.show_error(str(exc))
            return
        if text is not None:
            self.show_conversation(self.conversation_id)
            self.send(text)

    def edit_and_resend(self, user_message_id: int) -> None:
        """Put a user message back in the box; the messages from it on are removed when it is sent."""
        if self.busy or self.store is None or self.conversation_id is None:
            return
        try:
            text = self._rewind_to_user_message(user_message_id)
        except TaraError as exc:
            self.banner.show_error(str(exc))
            return
        if text is not None:
            self.show_conversation(self.conversation_id)
            self.composer.set_text(text)
