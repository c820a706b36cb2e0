"""The messages of one conversation: bubbles with markdown, a meta line per reply, copy/edit/regenerate."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import PurePath

from PySide6.QtCore import QEvent, QObject, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QResizeEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from tara_desktop.ui.markdown_render import to_html

# what detected a reply's emotion (voice.emotion's engines, and "text": read from the typed words), as the line says it
EMOTION_ENGINES = {"speechbrain": "SpeechBrain", "prosody+words": "tone of voice + words", "prosody": "tone of voice",
                   "words": "from the words", "text": "from text"}


def format_meta(meta: Mapping[str, object] | None) -> str:
    """``technical · tara-demo.gguf · feeling: calm (SpeechBrain) · first token 0.21 s · 18.3 tok/s`` from a
    reply's meta."""
    if not meta:
        return ""
    parts: list[str] = []
    if meta.get("domain"):
        parts.append(str(meta["domain"]))
    if meta.get("pinned"):
        parts[-1:] = [f"{parts[-1] if parts else ''} (pinned)".strip()]
    if meta.get("model"):
        parts.append(PurePath(str(meta["model"])).name)
    if meta.get("adapter"):
        parts.append("+ " + PurePath(str(meta["adapter"])).name)
    if meta.get("emotion"):
        engine = str(meta.get("emotion_engine") or "none")
        said_by = "" if engine == "none" else f" ({EMOTION_ENGINES.get(engine, engine)})"
        parts.append(f"feeling: {meta['emotion']}{said_by}")
    ttft = meta.get("ttft_s")
    if isinstance(ttft, int | float):
        parts.append(f"first token {ttft:.2f} s")
    tps = meta.get("tokens_per_s")
    if isinstance(tps, int | float) and tps > 0:
        parts.append(f"{tps:.1f} tok/s")
    if meta.get("cancelled"):
        parts.append("stopped")
    return " · ".join(parts)


class _AutoHeightBrowser(QTextBrowser):
    """A QTextBrowser as tall as its document, so the surrounding scroll area does the scrolling."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenExternalLinks(True)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.document().setDocumentMargin(2)
        self.document().contentsChanged.connect(self._fit)

    def _fit(self) -> None:
        doc = self.document()
        doc.setTextWidth(max(50, self.viewport().width()))
        self.setFixedHeight(int(doc.size().height()) + 4)

    def sizeHint(self) -> QSize:
        doc = self.document().clone(self)
        doc.setTextWidth(-1)
        width = int(doc.idealWidth()) + 12
        doc.deleteLater()
        return QSize(max(60, width), self.height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()


class MessageBubble(QFrame):
    """One message.

    Signals:
        edit_requested(int): the message id of a user message to edit and resend.
        regenerate_requested(int): the message id of the reply to produce again.
    """

    edit_requested = Signal(int)
    regenerate_requested = Signal(int)

    def __init__(self, role: str, content: str, meta: Mapping[str, object] | None = None,
                 message_id: int | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.role = role
        self.message_id = message_id
        self.content = content
        self.meta: dict[str, object] = dict(meta or {})
        is_user = role == "user"
        self.setObjectName("UserBubble" if is_user else "ReplyBubble")
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 6)
        layout.setSpacing(2)
        self.who = QLabel("You" if is_user else "TARA", self)
        self.who.setStyleSheet("font-weight: 600;")
        layout.addWidget(self.who)
        self.body = _AutoHeightBrowser(self)
        self.body.setAccessibleName("Your message" if is_user else "TARA's reply")
        layout.addWidget(self.body)
        row = QHBoxLayout()
        row.setSpacing(2)
        self.meta_label = QLabel(self)
        self.meta_label.setObjectName("BubbleMeta")
        self.meta_label.setAccessibleName("Reply details")
        row.addWidget(self.meta_label)
        row.addStretch(1)  # lets the bubble grow to its text even when the details line is hidden
        self.copy_button = self._action("Copy", "Copy this message to the clipboard", self._copy)
        row.addWidget(self.copy_button)
        self.edit_button: QToolButton | None = None
        self.regenerate_button: QToolButton | None = None
        if is_user:
            self.edit_button = self._action("Edit", "Edit this message and send it again", self._on_edit_clicked)
            row.addWidget(self.edit_button)
        else:
            self.regenerate_button = self._action("Regenerate", "Write this reply again",
                                                  self._on_regenerate_clicked)
            row.addWidget(self.regenerate_button)
        layout.addLayout(row)
        self.set_content(content)
        self.set_meta(self.meta)

    def _action(self, text: str, tip: str, slot: Callable[[], None]) -> QToolButton:
        button = QToolButton(self)
        button.setObjectName("BubbleAction")
        button.setText(text)
        button.setToolTip(tip)
        button.setAccessibleName(tip)
        button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        button.clicked.connect(slot)
        return button

    def _on_edit_clicked(self) -> None:
        if self.message_id is not None:
            self.edit_requested.emit(self.message_id)

    def _on_regenerate_clicked(self) -> None:
        if self.message_id is not None:
            self.regenerate_requested.emit(self.message_id)

    def _copy(self) -> None:
        QGuiApplication.clipboard().setText(self.content)

    def set_content(self, content: str) -> None:
        self.content = content
        self.body.setHtml(to_html(content) if content else "<p>…</p>")
        self.body.updateGeometry()

    def append_text(self, text: str) -> None:
        self.set_content(self.content + text)

    def set_meta(self, meta: Mapping[str, object] | None) -> None:
        self.meta = dict(meta or {})
        line = format_meta(self.meta)
        self.meta_label.setText(line)
        self.meta_label.setVisible(bool(line))

    def set_actions_enabled(self, enabled: bool) -> None:
        for b in (self.edit_button, self.regenerate_button):
            if b is not None:
                b.setEnabled(enabled and self.message_id is not None)


class MessageView(QScrollArea):
    """A scrolling column of :class:`MessageBubble` (user on the right, TARA on the left).

    Signals:
        edit_requested(int), regenerate_requested(int): re-emitted from the bubbles.
    """

    edit_requested = Signal(int)
    regenerate_requested = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("MessageScroll")
        self.setAccessibleName("Messages")
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._column = QWidget(self)
        self._column.setObjectName("MessageColumn")
        self._layout = QVBoxLayout(self._column)
        self._layout.setContentsMargins(24, 16, 24, 16)
        self._layout.setSpacing(12)
        self._layout.addStretch(1)
        self.setWidget(self._column)
        self.bubbles: list[MessageBubble] = []
        self._rows: list[QWidget] = []
        self._empty = QLabel("Start a conversation: type below, or hold Ctrl+Space to talk.", self._column)
        self._empty.setObjectName("Muted")
        self._empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._layout.insertWidget(0, self._empty)
        self.verticalScrollBar().rangeChanged.connect(self._on_range_changed)
        self._stick_to_bottom = True
        self.verticalScrollBar().valueChanged.connect(self._on_scrolled)
        self._column.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self._column and event.type() == QEvent.Type.Resize:
            width = self.viewport().width()
            for b in self.bubbles:
                b.setMaximumWidth(max(320, int(width * 0.82)))
        return super().eventFilter(watched, event)

    def _on_scrolled(self, value: int) -> None:
        bar = self.verticalScrollBar()
        self._stick_to_bottom = value >= bar.maximum() - 24

    def _on_range_changed(self, _low: int, high: int) -> None:
        if self._stick_to_bottom:
            self.verticalScrollBar().setValue(high)

    def clear(self) -> None:
        # Each bubble sits in a row widget Qt owns; Qt deletes the rows (and the bubbles in them) on the next
        # event-loop turn. Never setParent(None) or takeAt() here: handing a widget or a nested layout to
        # Python while Qt also deletes it left a dangling wrapper that crashed PySide (a segfault in
        # Shiboken's releaseWrapper after a few dozen conversation switches; tests/ui/test_soak.py).
        for row in self._rows:
            self._layout.removeWidget(row)
            row.hide()
            row.deleteLater()
        self._rows.clear()
        self.bubbles.clear()
        self._empty.show()

    def add_message(self, role: str, content: str, meta: Mapping[str, object] | None = None,
                    message_id: int | None = None) -> MessageBubble:
        self._empty.hide()
        holder = QWidget(self._column)
        row = QHBoxLayout(holder)
        row.setContentsMargins(0, 0, 0, 0)
        bubble = MessageBubble(role, content, meta, message_id, holder)
        bubble.setMaximumWidth(max(320, int(self.viewport().width() * 0.82)))
        bubble.edit_requested.connect(self.edit_requested)
        bubble.regenerate_requested.connect(self.regenerate_requested)
        if role == "user":
            row.addStretch(1)
            row.addWidget(bubble, 0)
        else:
            row.addWidget(bubble, 0)
            row.addStretch(1)
        self._layout.insertWidget(self._layout.count() - 1, holder)
        self._rows.append(holder)
        self.bubbles.append(bubble)
        self._stick_to_bottom = True
        QTimer.singleShot(0, self._scroll_to_bottom)
        return bubble

    def _scroll_to_bottom(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def set_actions_enabled(self, enabled: bool) -> None:
        last_reply = next((b for b in reversed(self.bubbles) if b.role != "user"), None)
        for b in self.bubbles:
            b.set_actions_enabled(enabled)
            if b.regenerate_button is not None:
                b.regenerate_button.setVisible(b is last_reply)
