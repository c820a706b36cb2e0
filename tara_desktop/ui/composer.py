"""Where a message is written: Enter sends, Shift+Enter adds a line; Send turns into Stop while TARA replies."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget


class PromptEdit(QPlainTextEdit):
    """A text box that grows with its text (up to a limit).

    Signals:
        submitted(): Enter without Shift was pressed.
    """

    submitted = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setPlaceholderText("Message TARA…  (Enter to send, Shift+Enter for a new line)")
        self.setAccessibleName("Message")
        self.setTabChangesFocus(True)
        self.document().contentsChanged.connect(self._fit)
        self._fit()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            mods = event.modifiers()
            if not mods & (Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.ControlModifier
                           | Qt.KeyboardModifier.AltModifier):
                event.accept()
                self.submitted.emit()
                return
            if mods & Qt.KeyboardModifier.ShiftModifier:
                self.insertPlainText("\n")
                event.accept()
                return
        super().keyPressEvent(event)

    def _fit(self) -> None:
        line = self.fontMetrics().lineSpacing()
        lines = max(1, min(8, self.document().lineCount() or 1))
        self.setFixedHeight(lines * line + 18)


class Composer(QFrame):
    """The message box and its Send/Stop button.

    Signals:
        send_requested(str): the text to send (already stripped, never empty).
        stop_requested(): the user wants the reply in progress to stop.
    """

    send_requested = Signal(str)
    stop_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Composer")
        self._busy = False
        outer = QVBoxLayout(self)
        outer.setContentsMargins(10, 6, 8, 6)
        row = QHBoxLayout()
        outer.addLayout(row)
        self.edit = PromptEdit(self)
        row.addWidget(self.edit, 1)
        self.send_button = QPushButton("Send", self)
        self.send_button.setObjectName("PrimaryButton")
        self.send_button.setAccessibleName("Send message")
        self.send_button.setToolTip("Send (Enter)")
        self.send_button.setAutoDefault(False)
        row.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)
        self.edit.submitted.connect(self._on_submitted)
        self.send_button.clicked.connect(self._on_button)
        self.extra_row = QHBoxLayout()  # the chat pane puts the push-to-talk controls here
        outer.addLayout(self.extra_row)

    @property
    def busy(self) -> bool:
        return self._busy

    def set_busy(self, busy: bool) -> None:
        """While busy the button reads Stop and Enter does not send."""
        self._busy = busy
        self.send_button.setText("Stop" if busy else "Send")
        self.send_button.setAccessibleName("Stop the reply" if busy else "Send message")
        self.send_button.setToolTip("Stop the reply (Esc)" if busy else "Send (Enter)")

    def set_text(self, text: str) -> None:
        self.edit.setPlainText(text)
        self.edit.setFocus()
        cursor = self.edit.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        self.edit.setTextCursor(cursor)

    def _on_button(self) -> None:
        if self._busy:
            self.stop_requested.emit()
        else:
            self._on_submitted()

    def _on_submitted(self) -> None:
        if self._busy:
            return
        text = self.edit.toPlainText().strip()
        if not text:
            return
        self.edit.clear()
        self.send_requested.emit(text)
