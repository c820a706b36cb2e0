"""The passphrase prompt: unlocking a profile protected by a passphrase, or choosing one for a new profile."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QLineEdit, QVBoxLayout, QWidget

UNLOCK_TEXT = "Your conversations are encrypted with your passphrase.\nEnter it to unlock your profile."
CHOOSE_TEXT = ("Choose a passphrase to encrypt your conversations (there is no OS keyring to keep a key).\n"
               "Nobody can recover it for you: a few unrelated words you will remember work best.")


class UnlockDialog(QDialog):
    """Asks for the profile passphrase (never stored; used to derive the key in memory). With
    ``new_profile`` the passphrase is being chosen: it is typed twice and accepted only when both match, so a
    typo cannot lock the person out of the profile it creates."""

    def __init__(self, parent: QWidget | None = None, error: str | None = None, *, new_profile: bool = False
                 ) -> None:
        super().__init__(parent)
        self.new_profile = new_profile
        self.setWindowTitle("Protect TARA" if new_profile else "Unlock TARA")
        layout = QVBoxLayout(self)
        intro = QLabel(CHOOSE_TEXT if new_profile else UNLOCK_TEXT)
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.error = QLabel(error or "", self)
        self.error.setObjectName("Muted")
        self.error.setWordWrap(True)
        self.error.setVisible(bool(error))
        layout.addWidget(self.error)
        self.field = self._password_field("Passphrase")
        layout.addWidget(self.field)
        self.repeat = self._password_field("Repeat the passphrase")
        self.repeat.setVisible(new_profile)
        layout.addWidget(self.repeat)
        self.mismatch = QLabel("The two passphrases differ.", self)
        self.mismatch.setObjectName("Muted")
        self.mismatch.setVisible(False)
        layout.addWidget(self.mismatch)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self._ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self._ok.setText("Create profile" if new_profile else "Unlock")
        self._ok.setEnabled(False)
        self.field.textChanged.connect(self._on_text_changed)
        self.repeat.textChanged.connect(self._on_text_changed)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def _password_field(self, name: str) -> QLineEdit:
        field = QLineEdit(self)
        field.setEchoMode(QLineEdit.EchoMode.Password)
        field.setAccessibleName(name)
        field.setPlaceholderText(name)
        return field

    def _on_text_changed(self, _text: str) -> None:
        typed = self.field.text()
        if not self.new_profile:
            self._ok.setEnabled(bool(typed))
            return
        again = self.repeat.text()
        self.mismatch.setVisible(bool(again) and again != typed)
        self._ok.setEnabled(bool(typed) and again == typed)

    def passphrase(self) -> str:
        return self.field.text()


def ask_passphrase(parent: QWidget | None, error: str | None = None, *, new_profile: bool = False) -> str | None:
    dialog = UnlockDialog(parent, error, new_profile=new_profile)
    try:
        if dialog.exec() == QDialog.DialogCode.Accepted and dialog.passphrase():
            return dialog.passphrase()
        return None
    finally:
        dialog.deleteLater()
