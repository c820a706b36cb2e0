"""The first-run welcome: consent, how the profile is protected, and a model. Skippable; Help menu reopens it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.ui.privacy_page import CONSENTS
from tara_desktop.ui.session import WELCOME_KEY, Session

log = logging.getLogger(__name__)


def _label(text: str, parent: QWidget) -> QLabel:
    label = QLabel(text, parent)
    label.setWordWrap(True)
    return label


class WelcomeWizard(QWizard):
    """Four short pages; every choice can be changed later (Privacy, Settings, Models)."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.assistant: Any = session.assistant
        self.setWindowTitle("Welcome to TARA")
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setButtonText(QWizard.WizardButton.CancelButton, "Skip")
        self.setMinimumSize(560, 420)
        self.addPage(self._intro())
        self.addPage(self._consent())
        self.addPage(self._protection())
        self.addPage(self._model())
        self.accepted.connect(self._apply)
        self.rejected.connect(self._mark_done)

    # ---- pages --------------------------------------------------------------------------------------
    def _intro(self) -> QWizardPage:
        page = QWizardPage(self)
        page.setTitle("Your private assistant")
        lay = QVBoxLayout(page)
        lay.addWidget(_label(
            "TARA answers by text or voice using models that run on this computer. Nothing you say "
            "leaves it, and everything it keeps is encrypted.\n\nThree quick choices and you are ready; "
            "you can skip them and change everything later.", page))
        return page

    def _consent(self) -> QWizardPage:
        page = QWizardPage(self)
        page.setTitle("What may TARA do?")
        lay = QVBoxLayout(page)
        self.consent_boxes: dict[str, QCheckBox] = {}
        for kind, label, hint in CONSENTS:
            box = QCheckBox(label, page)
            box.setAccessibleName(label)
            current = self.assistant.profile.consent.get(kind) if self.assistant else False
            box.setChecked(bool(current))
            lay.addWidget(box)
            note = _label(hint, page)
            note.setObjectName("Muted")
            note.setContentsMargins(24, 0, 0, 6)
            lay.addWidget(note)
            self.consent_boxes[kind] = box
        lay.addStretch(1)
        return page

    def _protection(self) -> QWizardPage:
        page = QWizardPage(self)
        page.setTitle("How your profile is protected")
        lay = QVBoxLayout(page)
        self.key_source = str(getattr(self.assistant.profile, "key_source", "")) if self.assistant else ""
        how = {"keyring": "the key is in your system keyring", "passphrase": "protected by your passphrase"}
        lay.addWidget(_label(
            "Your conversations are encrypted with a key kept in your system's keyring (Windows "
            "Credential Manager), or derived from a passphrase you type when TARA starts.", page))
        if self.key_source:
            current = _label(f"Now: {how.get(self.key_source, self.key_source)}.", page)
            current.setObjectName("Muted")
            lay.addWidget(current)
        self.use_keyring = QRadioButton("Use the system keyring (no prompt at start)", page)
        self.use_passphrase = QRadioButton("Use a passphrase (asked at every start)", page)
        group = QButtonGroup(page)
        group.addButton(self.use_keyring)
        group.addButton(self.use_passphrase)
        (self.use_passphrase if self.key_source == "passphrase" else self.use_keyring).setChecked(True)
        lay.addWidget(self.use_keyring)
        lay.addWidget(self.use_passphrase)
        self.passphrase = QLineEdit(page)
        self.passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase.setPlaceholderText("New passphrase (leave empty to keep the current protection)")
        self.passphrase.setAccessibleName("New passphrase")
        lay.addWidget(self.passphrase)
        self.passphrase.setEnabled(self.use_passphrase.isChecked())
        self.use_passphrase.toggled.connect(self.passphrase.setEnabled)
        lay.addStretch(1)
        return page

    def _model(self) -> QWizardPage:
        page = QWizardPage(self)
        page.setTitle("Choose a model")
        lay = QVBoxLayout(page)
        self.model_demo = QRadioButton("Use the built-in demo model (small, starts at once)", page)
        self.model_file = QRadioButton("Add a GGUF model file from this computer", page)
        self.model_catalog = QRadioButton("Pick one from the catalog (opens Models)", page)
        self.model_demo.setChecked(True)
        for b in (self.model_demo, self.model_file, self.model_catalog):
            lay.addWidget(b)
        row = QHBoxLayout()
        self.model_path = QLineEdit(page)
        self.model_path.setAccessibleName("Model file")
        self.model_path.setPlaceholderText("path to a .gguf file")
        browse = QPushButton("Browse…", page)
        browse.setAccessibleName("Choose a model file")
        browse.clicked.connect(self._browse)
        row.addWidget(self.model_path, 1)
        row.addWidget(browse)
        lay.addLayout(row)
        lay.addStretch(1)
        return page

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a model", str(Path.home()), "GGUF models (*.gguf)")
        if path:
            self.model_path.setText(path)
            self.model_file.setChecked(True)

    # ---- finishing ----------------------------------------------------------------------------------
    def _mark_done(self) -> None:
        if self.assistant is not None:
            try:
                self.assistant.profile.store.set_setting(WELCOME_KEY, True)
            except TaraError:
                log.warning("could not record that the welcome was seen")

    def _apply(self) -> None:
        if self.assistant is None:
            return
        profile = self.assistant.profile
        window: Any = self.parent()
        try:
            for kind, box in self.consent_boxes.items():
                profile.consent.set(kind, box.isChecked())
        except TaraError as exc:
            if window is not None:
                window.chat.banner.show_error(str(exc))
        self._mark_done()
        if window is None:
            return
        phrase = self.passphrase.text()
        change: dict[str, Any] | None = None
        if self.use_passphrase.isChecked() and phrase:
            change = {"key_source": "passphrase", "new_passphrase": phrase}
        elif self.use_keyring.isChecked() and self.key_source != "keyring":
            change = {"key_source": "keyring"}
        if change is not None:
            kwargs = change

            def run(state: JobState, _emit: Any) -> Any:
                return profile.rotate_key(state, **kwargs)

            job = window.jobs.start(run, "rotate-key")
            job.succeeded.connect(lambda _g: window.chat.banner.show_info("Your profile's protection was changed."))
            job.failed.connect(window.chat.banner.show_error)
        if self.model_file.isChecked() and self.model_path.text().strip():
            window.show_page("Models").add_model(Path(self.model_path.text().strip()))
        elif self.model_catalog.isChecked():
            page = window.show_page("Models")
            page.tabs.setCurrentIndex(1)
