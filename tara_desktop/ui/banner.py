"""An inline message strip (error or info) with a close button, and the page heading it sits under."""

from __future__ import annotations

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget


class Banner(QFrame):
    """Shows one message in the window; hidden until there is something to say."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Banner")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 6, 6)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setAccessibleName("Message")
        layout.addWidget(self.label, 1)
        close = QToolButton(self)
        close.setText("✕")
        close.setAccessibleName("Dismiss message")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        layout.addWidget(close)
        self.kind = "info"
        self.hide()

    def _show(self, kind: str, text: str) -> None:
        self.kind = kind
        self.setProperty("kind", kind)
        self.style().unpolish(self)
        self.style().polish(self)
        self.label.setText(text)
        self.show()

    def show_error(self, text: str) -> None:
        self._show("error", text)

    def show_info(self, text: str) -> None:
        self._show("info", text)

    @property
    def text(self) -> str:
        return "" if self.isHidden() else self.label.text()


def page_heading(layout: QVBoxLayout, title: str, parent: QWidget, *, hint: str | None = None) -> Banner:
    """A page's title (with a muted ``hint`` under it) added to ``layout``, then the page's banner, returned."""
    label = QLabel(title, parent)
    label.setObjectName("PageTitle")
    layout.addWidget(label)
    if hint is not None:
        note = QLabel(hint, parent)
        note.setObjectName("Muted")
        layout.addWidget(note)
    banner = Banner(parent)
    layout.addWidget(banner)
    return banner
