"""Models: installed GGUF files with size and fit, add (dialog or drop), validate, load/unload, remove;
the catalog with downloads; and the domain → model/adapter mapping."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from tara_desktop import paths
from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.ui import model_files as mf
from tara_desktop.ui.banner import Banner
from tara_desktop.ui.catalog_panel import CatalogPanel
from tara_desktop.ui.mapping_editor import MappingEditor
from tara_desktop.ui.workers import JobHost

log = logging.getLogger(__name__)

COLUMNS = ("Name", "Size", "Fits this computer?", "State", "Where")


class ModelsPage(QWidget):
    """Signals:
        models_changed(): a model was added or removed.
    """

    models_changed = Signal()

    def __init__(self, jobs: JobHost, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.assistant: Any = None
        self.models: list[mf.InstalledModel] = []
        self.setAcceptDrops(True)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 16, 24, 16)
        title = QLabel("Models", self)
        title.setObjectName("PageTitle")
        outer.addWidget(title)
        hint = QLabel("Drop a .gguf file here to add it. Models run on this computer only.", self)
        hint.setObjectName("Muted")
        outer.addWidget(hint)
        self.banner = Banner(self)
        outer.addWidget(self.banner)
        self.tabs = QTabWidget(self)
        outer.addWidget(self.tabs, 1)

        installed = QWidget(self)
        lay = QVBoxLayout(installed)
        self.table = QTableWidget(0, len(COLUMNS), installed)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setAccessibleName("Installed models")
        lay.addWidget(self.table)
        row = QHBoxLayout()
        self.add_button = self._button("Add a GGUF file…", row)
        self.validate_button = self._button("Validate", row)
        self.load_button = self._button("Load", row)
        self.unload_button = self._button("Unload", row)
        row.addStretch(1)
        self.remove_button = self._button("Remove", row)
        self.remove_button.setObjectName("DangerButton")
        lay.addLayout(row)
        self.tabs.addTab(installed, "Installed")
        self.catalog = CatalogPanel(jobs, self)
        self.tabs.addTab(self.catalog, "Catalog")
        self.mapping = MappingEditor(self)
        self.tabs.addTab(self.mapping, "Domains → models")

        self.add_button.clicked.connect(self.add_model_dialog)
        self.validate_button.clicked.connect(self.validate_selected)
        self.load_button.clicked.connect(self.load_selected)
        self.unload_button.clicked.connect(self.unload_selected)
        self.remove_button.clicked.connect(self.remove_selected)
        self.catalog.downloaded.connect(lambda _p: self.refresh())
        self.catalog.error.connect(self.banner.show_error)
        self.mapping.error.connect(self.banner.show_error)
        self.mapping.saved.connect(lambda: self.banner.show_info("The domain → model mapping was saved."))
        self.set_assistant(None)

    def _button(self, text: str, row: QHBoxLayout) -> QPushButton:
        b = QPushButton(text, self)
        b.setAccessibleName(text.rstrip("…"))
        row.addWidget(b)
        return b

    # ---- data ----------------------------------------------------------------------------------------
    @property
    def profile_dir(self) -> Path:
        if self.assistant is not None and getattr(self.assistant, "profile_dir", None):
            return Path(self.assistant.profile_dir)
        return paths.profile_dir()

    @property
    def pool(self) -> Any:
        return getattr(self.assistant, "pool", None)

    def set_assistant(self, assistant: Any) -> None:
        self.assistant = assistant
        self.catalog.set_assistant(assistant)
        self.mapping.set_assistant(assistant)
        self.refresh()

    def refresh(self) -> None:
        self.models = mf.installed_models(self.profile_dir)
        n_ctx = 2048
        budget: float | None = None
        if self.assistant is not None:
            n_ctx = self.assistant.configs.app.llm.context_size
            budget = self.assistant.configs.app.llm.memory_budget_mb
        avail = mf.available_mb()
        self.table.setRowCount(0)
        for m in self.models:
            r = self.table.rowCount()
            self.table.insertRow(r)
            need = mf.estimate_need_mb(m.path, n_ctx)
            loaded = self.pool is not None and self.pool.is_loaded(m.path)
            cells = (m.name, mf.human_size(m.size_bytes), f"{mf.fit_label(need, avail, budget)} (~{need:.0f} MB)",
                     "loaded" if loaded else "", "comes with TARA" if m.bundled else "added by you")
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(str(m.path))
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.mapping.set_models([m.path for m in self.models])

    def selected(self) -> mf.InstalledModel | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            self.banner.show_info("Select a model in the list first.")
            return None
        return self.models[rows[0].row()]

    # ---- add --------------------------------------------------------------------------------------------
    def add_model_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a model", str(Path.home()), "GGUF models (*.gguf);;All files (*)")
        if path:
            self.add_model(Path(path))

    def add_model(self, path: Path) -> None:
        """Validate and copy ``path`` into the user's models folder, off the GUI thread."""
        profile_dir = self.profile_dir
        self.banner.show_info(f"Checking {path.name}…")
        self.add_button.setEnabled(False)

        def run(state: JobState, _emit: Any) -> Any:
            return mf.add_model(path, profile_dir, state)

        job = self.jobs.start(run, "add-model")
        job.progress.connect(lambda f, m: self.banner.show_info(f"{m} {'' if f is None else f'{f:.0%}'}"))
        job.succeeded.connect(self._on_added)
        job.failed.connect(lambda msg: self.banner.show_error(f"{path.name} was not added: {msg}"))
        job.cancelled.connect(lambda: self.banner.show_info("Adding the model was cancelled."))
        job.done.connect(lambda: self.add_button.setEnabled(True))

    def _on_added(self, target: Path) -> None:
        self.banner.show_info(f"{Path(target).name} is valid and was added.")
        self.refresh()
        self.models_changed.emit()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        urls = event.mimeData().urls()
        if urls and all(u.isLocalFile() for u in urls):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.add_model(Path(url.toLocalFile()))
                break
        event.acceptProposedAction()

    # ---- validate, load, unload, remove ---------------------------------------------------------------
    def validate_selected(self) -> None:
        model = self.selected()
        if model is None:
            return

        def run(state: JobState, _emit: Any) -> Any:
            return mf.validate_model(model.path, state)

        job = self.jobs.start(run, "validate-model")
        self.banner.show_info(f"Validating {model.name}…")
        job.succeeded.connect(lambda info: self.banner.show_info(
            f"{model.name} is valid: {getattr(info, 'architecture', '?')}, "
            f"{getattr(info, 'quantization', '?')}, {getattr(info, 'tensor_count', '?')} tensors."))
        job.failed.connect(lambda msg: self.banner.show_error(f"{model.name}: {msg}"))

    def load_selected(self) -> None:
        model = self.selected()
        pool = self.pool
        if model is None or pool is None:
            return

        def run(state: JobState, _emit: Any) -> Any:
            return pool.get(model.path, state)

        self.banner.show_info(f"Loading {model.name}…")
        job = self.jobs.start(run, "load-model")
        job.succeeded.connect(lambda _e: self._on_loaded(model.name))
        job.failed.connect(lambda msg: self.banner.show_error(f"{model.name} did not load: {msg}"))

    def _on_loaded(self, name: str) -> None:
        self.banner.show_info(f"{name} is loaded.")
        self.refresh()

    def unload_selected(self) -> None:
        model = self.selected()
        if model is None or self.pool is None:
            return
        try:
            unloaded = self.pool.unload(model.path)
        except TaraError as exc:
            self.banner.show_error(str(exc))
            return
        self.banner.show_info(f"{model.name} was unloaded." if unloaded else f"{model.name} was not loaded.")
        self.refresh()

    def remove_selected(self) -> None:
        model = self.selected()
        if model is None:
            return
        answer = QMessageBox.question(self, "Remove model", f"Delete the file {model.name} from this computer?",
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
                                      QMessageBox.StandardButton.Cancel)
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            if self.pool is not None:
                self.pool.unload(model.path)
            mf.remove_model(model)
        except TaraError as exc:
            self.banner.show_error(str(exc))
            return
        self.refresh()
        self.models_changed.emit()
