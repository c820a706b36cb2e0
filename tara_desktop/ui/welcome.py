"""The first-run welcome: consent, how the profile is protected, and a model. Skippable; Help menu reopens it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, cast

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from tara_desktop import paths
from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.ui.privacy_page import CONSENTS
from tara_desktop.ui.progress_bar import JobProgressBar
from tara_desktop.ui.session import WELCOME_KEY, Session
from tara_desktop.ui.workers import Emit, JobThread

if TYPE_CHECKING:
    from tara_desktop.assistant import Assistant
    from tara_desktop.llm.catalog import CatalogModel
    from tara_desktop.llm.library import InstalledModel, ModelRow
    from tara_desktop.llm.memory import Machine
    from tara_desktop.ui.main_window import MainWindow

log = logging.getLogger(__name__)


def _label(text: str, parent: QWidget) -> QLabel:
    label = QLabel(text, parent)
    label.setWordWrap(True)
    return label


def bundled_description(entry: CatalogModel | None) -> str:
    """What the model that comes with TARA is, in the catalog's words."""
    if entry is None:
        return "TARA comes with a small chat model that works offline."
    notes = " ".join(str(entry.notes).split())
    return f"TARA comes with {entry.name} ({entry.parameters} parameters), already installed. {notes}".strip()


def offline_message(entry: CatalogModel | None) -> str:
    """Offline: which model stays in use and what it is good for (the catalog's notes, minus its advice to
    download, which cannot be followed now)."""
    if entry is None:
        return "TARA keeps answering with its built-in model, which works offline. Download a larger model later from Models."
    sentences = [t.strip() for t in " ".join(str(entry.notes).split()).split(". ") if t.strip()]
    about = ". ".join(t.rstrip(".") for t in sentences if "download" not in t.lower())
    return (f"TARA keeps answering with {entry.name}, which works offline. {about + '.' if about else ''} "
            "Download a larger model later from Models, when you are online.").replace("  ", " ")


def answer_with(assistant: Assistant, model_name: str) -> bool:
    """Make ``model_name`` answer the default and every domain that still has the shipped choice with no
    adapter (a domain the user mapped themselves, or one with an adapter, keeps its choice). Returns
    whether the mapping was changed."""
    overrides = dict(assistant.mapping_overrides())
    mapping = assistant.configs.mapping
    choices = {"default": mapping.default, **{d: mapping.for_domain(d) for d in assistant.configs.domains}}
    changed = False
    for domain, choice in choices.items():
        if domain not in overrides and choice.adapter is None:
            overrides[domain] = {"model": model_name, "adapter": None}
            changed = True
    if changed:
        assistant.set_mapping(overrides)
    return changed


class WelcomeWizard(QWizard):
    """Four short pages; every choice can be changed later (Privacy, Settings, Models)."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.assistant: Assistant | None = session.assistant
        self.download_job: JobThread | None = None
        self.downloaded: InstalledModel | None = None
        self.offline = False
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
    def _new_page(self, title: str) -> tuple[QWizardPage, QVBoxLayout]:
        page = QWizardPage(self)
        page.setTitle(title)
        return page, QVBoxLayout(page)

    def _intro(self) -> QWizardPage:
        page, lay = self._new_page("Your private assistant")
        lay.addWidget(_label(
            "TARA answers by text or voice using models that run on this computer. Nothing you say "
            "leaves it, and everything it keeps is encrypted.\n\nThree quick choices and you are ready; "
            "you can skip them and change everything later.", page))
        return page

    def _consent(self) -> QWizardPage:
        page, lay = self._new_page("What may TARA do?")
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
        page, lay = self._new_page("How your profile is protected")
        self.key_source = self.assistant.profile.key_source if self.assistant else ""
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
        page, lay = self._new_page("A model for this computer")
        self.bundled_entry, self.model_rows, self.machine = self._catalog_models()
        bundled = self.bundled_entry
        self.bundled_label = _label(bundled_description(bundled), page)
        lay.addWidget(self.bundled_label)
        self.machine_label = _label("", page)
        self.machine_label.setObjectName("Muted")
        lay.addWidget(self.machine_label)
        self.model_list = QTreeWidget(page)
        self.model_list.setHeaderLabels(["Model", "Download", "Needs", "Fits this computer?"])
        self.model_list.setRootIsDecorated(False)
        self.model_list.setAccessibleName("Models to download")
        self.model_list.setMinimumHeight(120)
        lay.addWidget(self.model_list)
        row = QHBoxLayout()
        self.download_button = QPushButton("Download", page)
        self.download_button.setAccessibleName("Download the selected model")
        self.download_button.setObjectName("PrimaryButton")
        self.cancel_download_button = QPushButton("Cancel download", page)
        self.cancel_download_button.setEnabled(False)
        self.use_downloaded = QCheckBox("Answer with it once downloaded", page)
        self.use_downloaded.setChecked(True)
        row.addWidget(self.download_button)
        row.addWidget(self.cancel_download_button)
        row.addWidget(self.use_downloaded)
        row.addStretch(1)
        lay.addLayout(row)
        self.download_progress = JobProgressBar("Download progress", page)
        lay.addWidget(self.download_progress)
        self.download_status = _label("", page)
        self.download_status.setAccessibleName("Download status")
        lay.addWidget(self.download_status)
        self.download_button.clicked.connect(self.download_selected)
        self.cancel_download_button.clicked.connect(self.cancel_download)
        self.model_list.itemSelectionChanged.connect(self._update_download_buttons)

        name = bundled.name if bundled is not None else "the built-in model"
        self.model_bundled = QRadioButton(f"Use {name} for now (comes with TARA, works offline)", page)
        self.model_demo = self.model_bundled  # the name older callers use
        self.model_file = QRadioButton("Add a GGUF model file from this computer", page)
        self.model_catalog = QRadioButton("See every model (opens Models)", page)
        self.model_bundled.setChecked(True)
        for b in (self.model_bundled, self.model_file, self.model_catalog):
            lay.addWidget(b)
        path_row = QHBoxLayout()
        self.model_path = QLineEdit(page)
        self.model_path.setAccessibleName("Model file")
        self.model_path.setPlaceholderText("path to a .gguf file")
        browse = QPushButton("Browse…", page)
        browse.setAccessibleName("Choose a model file")
        browse.clicked.connect(self._browse)
        path_row.addWidget(self.model_path, 1)
        path_row.addWidget(browse)
        lay.addLayout(path_row)
        self._fill_models()
        return page

    # ---- recommended models -------------------------------------------------------------------------
    def _window(self) -> MainWindow | None:
        """The window this welcome was opened over (MainWindow.show_welcome is its one opener)."""
        return cast("MainWindow | None", self.parent())

    def _catalog_models(self) -> tuple[CatalogModel | None, list[ModelRow], Machine | None]:
        """The bundled catalog entry, the catalog models not installed yet (with their fit), this computer."""
        if self.assistant is None:
            return None, [], None
        from tara_desktop.llm import memory
        from tara_desktop.llm.catalog import load_catalog
        from tara_desktop.llm.library import ModelLibrary, list_models

        llm = self.assistant.configs.app.llm
        try:
            catalog = load_catalog()
            machine = memory.Machine.now(paths.user_models_dir(Path(self.assistant.profile_dir)))
            rows = list_models(ModelLibrary(self.assistant.profile), catalog, n_ctx=llm.context_size,
                               budget_mb=llm.memory_budget_mb, n_batch=llm.batch_size, memory=machine)
        except TaraError as exc:
            log.warning("the welcome could not list the catalog: %s", exc)
            return None, [], None
        bundled = next((e for e in catalog if e.bundled), None)
        return bundled, [r for r in rows if r.status == "available"], machine

    def _fill_models(self) -> None:
        from tara_desktop.llm import memory

        self.model_list.clear()
        if self.machine is not None and self.assistant is not None:  # (a machine is only read for an assistant)
            llm = self.assistant.configs.app.llm
            disk = (f" and {memory.human(self.machine.free_disk_bytes)} free disk"
                    if self.machine.free_disk_bytes is not None else "")
            self.machine_label.setText(
                f"This computer has {memory.human(self.machine.available_ram_bytes)} of "
                f"{memory.human(self.machine.total_ram_bytes)} memory free{disk}. Larger models answer better; "
                f"these are judged at a {llm.context_size}-token context:")
        self.recommended = memory.best_fit([(r, r.fit) for r in self.model_rows])
        recommended_item: QTreeWidgetItem | None = None
        for r in self.model_rows:
            label = r.fit.label + (" — recommended" if r is self.recommended else "")
            need = memory.human(r.fit.need_bytes) if r.fit.need_bytes else "?"
            size = ("~" if r.size_is_estimate else "") + memory.human(r.size_bytes) if r.size_bytes else "?"
            item = QTreeWidgetItem([r.name, size, need, label])
            item.setToolTip(3, r.fit.reason)
            item.setData(0, Qt.ItemDataRole.UserRole, r.name)
            self.model_list.addTopLevelItem(item)
            if r is self.recommended:
                recommended_item = item
        for c in range(4):
            self.model_list.resizeColumnToContents(c)
        if recommended_item is not None:
            self.model_list.setCurrentItem(recommended_item)
        elif not self.model_rows:
            self.download_status.setText("Every catalog model is installed already." if self.machine is not None
                                         else "The catalog could not be read; Models lists what is installed.")
        else:
            self.download_status.setText("None of the catalog's models fits this computer's free memory and disk "
                                         "now; the built-in model stays in use.")
        self._update_download_buttons()

    def _selected_row(self) -> ModelRow | None:
        item = self.model_list.currentItem()
        if item is None:
            return None
        name = item.data(0, Qt.ItemDataRole.UserRole)
        return next((r for r in self.model_rows if r.name == name), None)

    def _update_download_buttons(self) -> None:
        r = self._selected_row()
        running = self.download_job is not None
        self.download_button.setEnabled(r is not None and not running and r.fit.verdict not in ("won't fit", "no disk space"))
        self.cancel_download_button.setEnabled(running)

    def download_selected(self) -> None:
        """Download the selected catalog model (resumable, checksummed) and register it; off the GUI thread."""
        r = self._selected_row()
        window = self._window()
        if r is None or self.download_job is not None or window is None or self.assistant is None:
            return
        from tara_desktop.llm.catalog import load_catalog

        try:
            catalog = load_catalog()
            entry = catalog.get(r.catalog_id or r.name)
        except TaraError as exc:
            self.download_status.setText(str(exc))
            return
        assistant = self.assistant
        models_dir = paths.user_models_dir(Path(assistant.profile_dir))
        use_it = self.use_downloaded.isChecked() and r.fit.loadable  # never map a model the pool would refuse

        def run(state: JobState, _emit: Emit) -> tuple[InstalledModel, bool]:
            from tara_desktop.llm.download import download_catalog_model
            from tara_desktop.llm.library import ModelLibrary

            model, _status = download_catalog_model(entry, models_dir, ModelLibrary(assistant.profile), state=state,
                                                    catalog=catalog)
            used = use_it and answer_with(assistant, model.name)
            return model, used

        self.download_job = job = window.jobs.start(run, "download-model")
        self.download_progress.begin()
        self.download_status.setText(f"Downloading {entry.name}…")
        job.progress.connect(self.download_progress.show_progress)
        job.succeeded.connect(self._on_downloaded)
        job.failed.connect(self._on_download_failed)
        job.cancelled.connect(self._on_download_cancelled)
        job.done.connect(self._on_download_done)
        self._update_download_buttons()

    def _on_downloaded(self, result: tuple[InstalledModel, bool]) -> None:
        model, used = result
        self.downloaded = model
        if used:
            tail = " TARA answers with it from your next message."
        elif self.use_downloaded.isChecked():
            tail = " It is over your memory budget: raise the budget in Settings, then choose it on Models."
        else:
            tail = " Choose it for a domain on Models."
        self.model_rows = [r for r in self.model_rows if r.name != model.name]
        self._fill_models()
        self.download_status.setText(f"{model.name} was downloaded, checked and added.{tail}")
        models = getattr(self.parent(), "pages", {}).get("Models")
        page = getattr(models, "page", None)
        if page is not None:
            page.refresh()

    def _on_download_failed(self, message: str) -> None:
        from tara_desktop.llm.download import Unreachable

        exc = self.download_job.exception if self.download_job is not None else None
        self.offline = isinstance(exc, Unreachable)
        if self.offline:
            self.download_status.setText(f"TARA could not connect to download the model. {offline_message(self.bundled_entry)}")
        else:
            self.download_status.setText(f"The download stopped: {message}")

    def _on_download_cancelled(self) -> None:
        self.download_status.setText("The download is paused; Download again resumes where it stopped.")

    def _on_download_done(self) -> None:
        self.download_job = None
        self.download_progress.hide()
        self._update_download_buttons()

    def cancel_download(self) -> None:
        if self.download_job is not None:
            self.download_job.cancel()

    def done(self, result: int) -> None:  # QDialog override: leaving the welcome pauses its download
        if self.download_job is not None:
            self.download_job.cancel()
            window = self._window()
            if window is not None and hasattr(window, "chat"):
                window.chat.banner.show_info("The model download is paused: Models → Download resumes it.")
        super().done(result)

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
        window = self._window()
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
        change: dict[str, str] | None = None
        if self.use_passphrase.isChecked() and phrase:
            change = {"key_source": "passphrase", "new_passphrase": phrase}
        elif self.use_keyring.isChecked() and self.key_source != "keyring":
            change = {"key_source": "keyring"}
        if change is not None:  # runs on the window's jobs: this wizard closes before it ends
            window.change_protection(profile, **change)
        if self.model_file.isChecked() and self.model_path.text().strip():
            window.models_page(show=True).add_model(Path(self.model_path.text().strip()))
        elif self.model_catalog.isChecked():
            page = window.models_page(show=True)
            page.tabs.setCurrentIndex(0)  # the models with their fit, not the domain mapping
