"""Models: the user's and the bundled GGUF models beside the catalog, with size and whether each fits this
computer; add (dialog or drop), validate, load/unload, download (progress, cancel, resume), remove; the
domain → model/adapter mapping; and the voice models (ui/voice_models_panel.py)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from tara_desktop import paths
from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.ui.banner import page_heading
from tara_desktop.ui.mapping_editor import MappingEditor
from tara_desktop.ui.progress_bar import JobProgressBar
from tara_desktop.ui.voice_models_panel import VoiceModelsPanel
from tara_desktop.ui.workers import Emit, JobHost, JobThread

if TYPE_CHECKING:
    from tara_desktop.assistant import Assistant
    from tara_desktop.config import LlmSettings
    from tara_desktop.llm.gguf_info import GgufInfo
    from tara_desktop.llm.library import InstalledModel, ModelLibrary, ModelRow
    from tara_desktop.llm.memory import Machine
    from tara_desktop.llm.pool import ModelPool

log = logging.getLogger(__name__)

COLUMNS = ("Name", "State", "Size", "Fits this computer?", "Quantization", "License")
# the per-model generation settings a user can set on the page: (key, label, decimals, minimum, maximum, step);
# decimals 0 is a whole number. The ranges are GenerationPreset's (tara_desktop/llm/catalog.py).
PRESET_FIELDS = (
    ("temperature", "Temperature", 2, 0.0, 5.0, 0.05),
    ("top_p", "Top p", 2, 0.01, 1.0, 0.01),
    ("top_k", "Top k", 0, 0, 1000, 1),
    ("min_p", "Min p", 2, 0.0, 1.0, 0.01),
    ("repeat_penalty", "Repeat penalty", 2, 0.5, 3.0, 0.01),
    ("max_tokens", "Max tokens", 0, 1, 65_536, 16),
)
_STATE = {"installed": "added by you", "bundled": "comes with TARA", "available": "in the catalog",
          "missing": "file missing"}


def human_size(n: float | None) -> str:
    if not n:
        return "–"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def machine_summary(machine: Machine, budget_setting_mb: float, n_ctx: int, rows: Sequence[ModelRow] = ()) -> str:
    """One paragraph under the table: this computer's memory and disk, the budget, and what stops a model."""
    from tara_desktop.llm import memory

    budget = memory.budget_mb(budget_setting_mb, machine.total_ram_bytes)
    disk = (f", {memory.human(machine.free_disk_bytes)} free disk for downloads"
            if machine.free_disk_bytes is not None else "")
    how = "automatic: half of this computer's memory" if budget_setting_mb <= 0 else "set in Settings"
    text = (f"This computer: {memory.human(machine.available_ram_bytes)} of {memory.human(machine.total_ram_bytes)} "
            f"memory free{disk}. Memory budget for models: {memory.human(budget * memory.MB)} ({how}). "
            f"Needs are estimated at a {n_ctx}-token context.")
    over = [r.name for r in rows if r.fit.verdict == "over budget"]
    if over:
        text += (f" {', '.join(over)} would fit this computer but not the memory budget: raise it in Settings "
                 "to use them.")
    return text


class ModelsPage(QWidget):
    """Signals:
        models_changed(): a model was added, downloaded or removed (emitted once the list shows it).
        refreshed(): the newest listing of the models is shown.
    """

    models_changed = Signal()
    refreshed = Signal()

    def __init__(self, jobs: JobHost, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.assistant: Assistant | None = None
        self.rows: list[ModelRow] = []
        self.download_job: JobThread | None = None
        self._refresh_job: JobThread | None = None
        self._refresh_seq = 0
        self._pending_select: str | None = None
        self._pending_changed = False
        self.setAcceptDrops(True)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 16, 24, 16)
        self.banner = page_heading(outer, "Models", self,
                                   hint="Models run on this computer only. Drop a .gguf file here to add it.")
        self.tabs = QTabWidget(self)
        outer.addWidget(self.tabs, 1)

        models = QWidget(self)
        lay = QVBoxLayout(models)
        self.table = QTableWidget(0, len(COLUMNS), models)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setAccessibleName("Models")
        lay.addWidget(self.table)
        self.machine_label = QLabel("", models)
        self.machine_label.setObjectName("Muted")
        self.machine_label.setWordWrap(True)
        self.machine_label.setAccessibleName("This computer")
        lay.addWidget(self.machine_label)
        row = QHBoxLayout()
        self.add_button = self._button("Add a GGUF file…", row)
        self.validate_button = self._button("Validate", row)
        self.load_button = self._button("Load", row)
        self.unload_button = self._button("Unload", row)
        self.download_button = self._button("Download", row)
        self.cancel_button = self._button("Cancel download", row)
        self.cancel_button.setEnabled(False)
        row.addStretch(1)
        self.remove_button = self._button("Remove", row)
        self.remove_button.setObjectName("DangerButton")
        lay.addLayout(row)
        self.progress = JobProgressBar("Download progress", models)
        lay.addWidget(self.progress)
        lay.addWidget(self._build_presets(models))
        self.tabs.addTab(models, "Models")
        self.mapping = MappingEditor(self)
        self.tabs.addTab(self.mapping, "Domains → models")
        self.voice_models = VoiceModelsPanel(jobs, self.banner, self)  # speech recognition and emotion
        self.tabs.addTab(self.voice_models, "Voice models")

        self.add_button.clicked.connect(self.add_model_dialog)
        self.validate_button.clicked.connect(self.validate_selected)
        self.load_button.clicked.connect(self.load_selected)
        self.unload_button.clicked.connect(self.unload_selected)
        self.download_button.clicked.connect(self.download_selected)
        self.cancel_button.clicked.connect(self.cancel_download)
        self.remove_button.clicked.connect(self.remove_selected)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.itemSelectionChanged.connect(self.show_generation_settings)
        self.preset_save_button.clicked.connect(self.save_generation_settings)
        self.preset_reset_button.clicked.connect(self.reset_generation_settings)
        self.mapping.error.connect(self.banner.show_error)
        self.mapping.saved.connect(self._on_mapping_saved)
        self.set_assistant(None)

    def _on_mapping_saved(self) -> None:
        self.banner.show_info("The domain → model mapping was saved.")

    def _on_job_failed(self, prefix: str, message: str) -> None:
        """A job's failure in the banner, after what it was (the prefix names the model)."""
        self.banner.show_error(f"{prefix}{message}")

    def _build_presets(self, parent: QWidget) -> QGroupBox:
        box = self.preset_box = QGroupBox("Generation settings of the selected model", parent)
        box.setAccessibleName("Generation settings of the selected model")
        form = QFormLayout(box)
        self.preset_label = QLabel("Select a model to see the settings it answers with.", box)
        self.preset_label.setObjectName("Muted")
        self.preset_label.setWordWrap(True)
        self.preset_label.setAccessibleName("Recommended settings")
        form.addRow(self.preset_label)
        self.preset_fields: dict[str, QDoubleSpinBox | QSpinBox] = {}
        for key, label, decimals, lo, hi, step in PRESET_FIELDS:
            field: QDoubleSpinBox | QSpinBox
            if decimals:
                field = QDoubleSpinBox(box)
                field.setDecimals(decimals)
                field.setRange(lo, hi)
                field.setSingleStep(step)
            else:
                field = QSpinBox(box)
                field.setRange(int(lo), int(hi))
                field.setSingleStep(int(step))
            field.setAccessibleName(label)
            self.preset_fields[key] = field
            form.addRow(label, field)
        buttons = QHBoxLayout()
        self.preset_save_button = self._button("Save for this model", buttons)
        self.preset_reset_button = self._button("Reset to recommended", buttons)
        buttons.addStretch(1)
        form.addRow(buttons)
        box.setEnabled(False)
        return box

    def _button(self, text: str, row: QHBoxLayout) -> QPushButton:
        b = QPushButton(text, self)
        b.setAccessibleName(text.rstrip("…"))
        row.addWidget(b)
        return b

    # ---- data ----------------------------------------------------------------------------------------
    @property
    def pool(self) -> ModelPool | None:
        return None if self.assistant is None else self.assistant.pool

    def set_assistant(self, assistant: Assistant | None) -> None:
        self.assistant = assistant
        self.setEnabled(assistant is not None)
        self.mapping.set_assistant(assistant)
        self.voice_models.set_assistant(assistant)
        self.refresh()

    def services(self) -> Assistant:
        """The open profile's services; TaraError before a profile is open."""
        if self.assistant is None:
            raise TaraError("no profile is open yet; unlock it first")
        return self.assistant

    def library(self) -> ModelLibrary:
        from tara_desktop.llm.library import ModelLibrary

        return ModelLibrary(self.services().profile)

    def refresh(self, *, select: str | None = None, changed: bool = False) -> None:
        """List the models again off the GUI thread (every GGUF header is parsed; a slow disk or many files
        must not freeze the window); the table is updated when the listing arrives, and a listing a newer
        refresh has overtaken is dropped. ``select``: the model to select then (else the selection is kept);
        ``changed``: emit models_changed then (the page shows the change when listeners hear of it)."""
        self._refresh_seq += 1
        seq = self._refresh_seq
        if select is not None:
            self._pending_select = select
        self._pending_changed = self._pending_changed or changed
        if self._refresh_job is not None:
            self._refresh_job.cancel()  # its result would be dropped anyway
            self._refresh_job = None
        if self.assistant is None:
            self.table.setRowCount(0)
            self.rows = []
            self._pending_select, self._pending_changed = None, False
            self.show_generation_settings()
            return
        llm = self.assistant.configs.app.llm
        pool = self.pool
        library = self.library()
        models_dir = paths.user_models_dir(Path(self.assistant.profile_dir))

        def run(_state: JobState, _emit: Emit) -> tuple[Machine, list[ModelRow]]:
            from tara_desktop.llm import memory
            from tara_desktop.llm.catalog import load_catalog
            from tara_desktop.llm.library import list_models

            loaded = [m.path for m in pool.loaded()] if pool is not None else []
            machine = memory.Machine.now(models_dir)
            rows = list_models(library, load_catalog(), n_ctx=llm.context_size, budget_mb=llm.memory_budget_mb,
                               n_batch=llm.batch_size, loaded=loaded, memory=machine)
            return machine, rows

        job = self._refresh_job = self.jobs.start(run, "list-models")
        job.done.connect(functools.partial(self._refresh_done, job))
        job.succeeded.connect(functools.partial(self._apply_refresh, seq, llm))
        job.failed.connect(functools.partial(self._refresh_failed, seq))

    def _refresh_done(self, job: JobThread) -> None:
        if self._refresh_job is job:
            self._refresh_job = None

    def _refresh_failed(self, seq: int, message: str) -> None:
        if seq == self._refresh_seq:
            self.banner.show_error(f"The list of models could not be read: {message}")
            self._finish_refresh()

    def _finish_refresh(self) -> None:
        changed, self._pending_changed = self._pending_changed, False
        self._pending_select = None
        self.refreshed.emit()
        if changed:
            self.models_changed.emit()

    def _apply_refresh(self, seq: int, llm: LlmSettings, result: tuple[Machine, list[ModelRow]]) -> None:
        if seq != self._refresh_seq or self.assistant is None:  # overtaken by a newer refresh
            return
        machine, rows = result
        current = self.selected(quiet=True)
        keep = self._pending_select or (current.name if current is not None else None)
        self.table.setRowCount(0)
        self.rows = list(rows)
        for r in self.rows:
            i = self.table.rowCount()
            self.table.insertRow(i)
            state = _STATE.get(r.status, r.status) + (" · loaded" if r.loaded else "")
            cells = (r.name, state, human_size(r.size_bytes), r.fit.label, r.quantization or "", r.license or "")
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(r.problem or r.fit.reason or (str(r.path) if r.path else ""))
                self.table.setItem(i, c, item)
        self.machine_label.setText(machine_summary(machine, llm.memory_budget_mb, llm.context_size, self.rows))
        header = self.table.horizontalHeader()
        self.table.resizeColumnsToContents()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.mapping.set_models([r.path for r in self.rows if r.path is not None])
        if keep is not None:
            self.select_name(keep)
        self._update_buttons()
        self.show_generation_settings()
        self._finish_refresh()

    def selected(self, *, quiet: bool = False) -> ModelRow | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            if not quiet:
                self.banner.show_info("Select a model in the list first.")
            return None
        return self.rows[rows[0].row()]

    def select_name(self, name: str) -> None:
        for i, r in enumerate(self.rows):
            if r.name == name:
                self.table.selectRow(i)
                return

    def _update_buttons(self) -> None:
        r = self.selected(quiet=True)
        on_disk = r is not None and r.path is not None and r.status in ("installed", "bundled")
        self.validate_button.setEnabled(on_disk)
        self.load_button.setEnabled(on_disk and r is not None and not r.loaded)
        self.unload_button.setEnabled(r is not None and r.loaded)
        self.download_button.setEnabled(r is not None and r.status == "available" and self.download_job is None)
        self.remove_button.setEnabled(r is not None and r.status in ("installed", "missing"))

    # ---- per-model generation settings ------------------------------------------------------------------
    def _settings_file(self, r: ModelRow | None) -> Path | None:
        """The file name a row's settings are looked up by (its file, or the catalog's file name when it
        is not downloaded yet: presets and the user's settings are keyed by catalog id or file name)."""
        if r is None:
            return None
        if r.path is not None:
            return r.path
        if r.catalog_id:
            from tara_desktop.llm.catalog import load_catalog

            entry = load_catalog().find(r.catalog_id)
            if entry is not None:
                return Path(entry.file)
        return None

    def show_generation_settings(self) -> None:
        """Show the selected model's recommended settings (its catalog preset over the app's settings) and
        the ones it answers with (the user's own for this model winning)."""
        from tara_desktop.llm import presets

        r = self.selected(quiet=True)
        path = self._settings_file(r)
        if self.assistant is None or r is None or path is None:
            self.preset_box.setEnabled(False)
            self.preset_label.setText("Select a model to see the settings it answers with.")
            return
        llm = self.assistant.configs.app.llm
        store = self.assistant.profile.store
        recommended = presets.generation_settings(path, llm)
        effective = presets.generation_settings(path, llm, store)
        rec = ", ".join(f"{label.lower()} {getattr(recommended, key)}" for key, label, *_ in PRESET_FIELDS)
        if recommended.stop:
            rec += ", stop " + " ".join(recommended.stop)
        source = ("its catalog preset" if presets.preset_for(path) is not None
                  else "no catalog preset: TARA's own settings")
        mine = presets.user_settings(store, presets.model_key(path)) is not None
        self.preset_label.setText(
            f"Recommended for {r.name} ({source}): {rec}. "
            + ("Your own settings for this model are in use." if mine else "The recommended settings are in use."))
        for key, field in self.preset_fields.items():
            value = getattr(effective, key)
            if isinstance(field, QSpinBox):
                field.setValue(int(value))
            else:
                field.setValue(float(value))
        self.preset_reset_button.setEnabled(mine)
        self.preset_box.setEnabled(True)

    def save_generation_settings(self) -> None:
        """Keep the values in the fields as the user's own settings for the selected model."""
        values = {key: field.value() for key, field in self.preset_fields.items()}
        self._store_generation_settings(values, "now answers with your own settings.")

    def reset_generation_settings(self) -> None:
        """Forget the user's own settings for the selected model: it answers with its recommended ones."""
        self._store_generation_settings(None, "answers with its recommended settings again.")

    def _store_generation_settings(self, values: dict[str, float] | None, done: str) -> None:
        from tara_desktop.llm import presets

        r = self.selected()
        path = self._settings_file(r)
        if self.assistant is None or r is None or path is None:
            return
        try:
            presets.save_user_settings(self.assistant.profile.store, presets.model_key(path), values)
        except TaraError as exc:
            self.banner.show_error(str(exc))
            return
        self.banner.show_info(f"{r.name} {done}")
        self.show_generation_settings()

    # ---- add --------------------------------------------------------------------------------------------
    def add_model_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a model", str(Path.home()),
                                              "GGUF models (*.gguf);;All files (*)")
        if path:
            self.add_model(Path(path))

    def add_model(self, path: Path) -> None:
        """Validate ``path`` and add it to the user's models (the file stays where it is), off the GUI thread."""
        if self.assistant is None:
            return
        library = self.library()
        self.banner.show_info(f"Checking {path.name}…")
        self.add_button.setEnabled(False)

        def run(state: JobState, _emit: Emit) -> InstalledModel:
            from tara_desktop.llm.catalog import load_catalog
            from tara_desktop.llm.model_check import validate_gguf

            if path.is_file():  # a file that parses but is no chat model (no weights, no template): say so
                validate_gguf(path)
            return library.add(path, catalog=load_catalog(), state=state)

        job = self.jobs.start(run, "add-model")
        job.succeeded.connect(self._on_added)
        job.failed.connect(functools.partial(self._on_job_failed, f"{path.name} was not added: "))
        job.done.connect(self._on_add_done)

    def _on_add_done(self) -> None:
        self.add_button.setEnabled(True)

    def _on_added(self, model: InstalledModel) -> None:
        self.banner.show_info(f"{model.name} is valid and was added.")
        self.refresh(select=model.name, changed=True)

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
        r = self.selected()
        if r is None or r.path is None:
            return
        path, name = r.path, r.name

        def run(state: JobState, _emit: Emit) -> GgufInfo:
            from tara_desktop.llm import gguf_file

            return gguf_file.validate(path, state=state)

        self.banner.show_info(f"Validating {name}…")
        job = self.jobs.start(run, "validate-model")
        job.succeeded.connect(functools.partial(self._on_validated, name))
        job.failed.connect(functools.partial(self._on_job_failed, f"{name}: "))

    def _on_validated(self, name: str, info: GgufInfo) -> None:
        self.banner.show_info(f"{name} is valid: {info.architecture or 'unknown architecture'}, {info.quantization}, "
                              f"{info.tensor_count} tensors.")

    def load_selected(self) -> None:
        r = self.selected()
        pool = self.pool
        if r is None or r.path is None or pool is None:
            return
        path, name = r.path, r.name

        def run(state: JobState, _emit: Emit) -> str:
            pool.get(path, state)
            return name

        self.banner.show_info(f"Loading {name}…")
        job = self.jobs.start(run, "load-model")
        job.succeeded.connect(self._on_loaded)
        job.failed.connect(functools.partial(self._on_job_failed, f"{name} did not load: "))

    def _on_loaded(self, name: str) -> None:
        self.banner.show_info(f"{name} is loaded.")
        self.refresh(select=name)

    def unload_selected(self) -> None:
        r = self.selected()
        if r is None or r.path is None or self.pool is None:
            return
        self.pool.unload(r.path)
        self.banner.show_info(f"{r.name} was unloaded.")
        self.refresh(select=r.name)

    def remove_selected(self) -> None:
        r = self.selected()
        if r is None or r.status not in ("installed", "missing"):
            return
        answer = QMessageBox.question(
            self, "Remove model",
            f"Remove {r.name} from your models? The file itself stays where it is.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Cancel)
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            if self.pool is not None and r.path is not None:
                self.pool.unload(r.path)
            self.library().remove(r.name)
        except TaraError as exc:
            self.banner.show_error(str(exc))
            return
        self.refresh(changed=True)

    # ---- download ---------------------------------------------------------------------------------------
    def download_selected(self) -> None:
        r = self.selected()
        if r is None or r.status != "available" or self.download_job is not None:
            return
        from tara_desktop.llm.catalog import load_catalog

        entry = load_catalog().get(r.catalog_id or r.name)
        source = entry.source
        if source is None:
            self.banner.show_error(f"{entry.id} has no download address in the catalog; add its file instead.")
            return
        models_dir = paths.user_models_dir(Path(self.services().profile_dir))
        library = self.library()

        def run(state: JobState, _emit: Emit) -> InstalledModel:
            from tara_desktop.llm.download import download_catalog_model

            return download_catalog_model(entry, models_dir, library, state=state, catalog=load_catalog())[0]

        self.download_job = job = self.jobs.start(run, "download-model")
        self.progress.begin()
        self.cancel_button.setEnabled(True)
        self.banner.show_info(f"Downloading {entry.name}…")
        job.progress.connect(self.progress.show_progress)
        job.succeeded.connect(self._on_added)
        job.failed.connect(functools.partial(self._on_job_failed, f"{entry.id} was not downloaded: "))
        job.cancelled.connect(functools.partial(self._on_download_paused, entry.id))
        job.done.connect(self._on_download_done)
        self._update_buttons()

    def _on_download_paused(self, model_id: str) -> None:
        self.banner.show_info(f"The download of {model_id} is paused; Download again to resume where it stopped.")

    def cancel_download(self) -> None:
        if self.download_job is not None:
            self.download_job.cancel()

    def _on_download_done(self) -> None:
        self.download_job = None
        self.progress.hide()
        self.cancel_button.setEnabled(False)
        self._update_buttons()

