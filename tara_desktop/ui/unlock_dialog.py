"""The unlock prompt shown on start when the profile is protected by a passphrase."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QLineEdit, QVBoxLayout, QWidget


class UnlockDialog(QDialog):
    """Asks for the profile passphrase (never stored; used to derive the key in memory)."""

    def __init__(self, parent: QWidget | None = None, error: str | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Unlock TARA")
        layout = QVBoxLayout(self)
        intro = QLabel("Your conversations are encrypted with your passphrase.\nEnter it to unlock your profile.")
        layout.addWidget(intro)
        self.error = QLabel(error or "", self)
        self.error.setObjectName("Muted")
        self.error.setWordWrap(True)
        self.error.setVisible(bool(error))
        layout.addWidget(self.error)
        self.field = QLineEdit(self)
        self.field.setEchoMode(QLineEdit.EchoMode.Password)
        self.field.setAccessibleName("Passphrase")
        self.field.setPlaceholderText("Passphrase")
        layout.addWidget(self.field)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self._ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self._ok.setText("Unlock")
        self._ok.setEnabled(False)
        self.field.textChanged.connect(self._on_text_changed)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def _on_text_changed(self, text: str) -> None:
        self._ok.setEnabled(bool(text))

    def passphrase(self) -> str:
        return self.field.text()


def ask_passphrase(parent: QWidget | None, error: str | None = None) -> str | None:
    dialog = UnlockDialog(parent, error)
    try:
        if dialog.exec() == QDialog.DialogCode.Accepted and dialog.passphrase():
            return dialog.passphrase()
        return None
    finally:
        dialog.deleteLater()
