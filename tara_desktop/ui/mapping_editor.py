"""Edit which model (and LoRA adapter) answers each domain; saved encrypted in the profile."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from tara_desktop.errors import TaraError

if TYPE_CHECKING:
    from tara_desktop.assistant import Assistant
    from tara_desktop.config import ModelMapping
    from tara_desktop.jobs import JobState
    from tara_desktop.ui.workers import Emit, JobHost

NO_ADAPTER = "(no adapter)"


class MappingEditor(QWidget):
    """A row per domain: model file, adapter file, adapter scale.

    Signals:
        saved(): the mapping was stored.
        error(str): something went wrong (one sentence).
    """

    saved = Signal()
    error = Signal(str)

    def __init__(self, parent: QWidget | None = None, jobs: JobHost | None = None) -> None:
        super().__init__(parent)
        self.assistant: Assistant | None = None
        self.jobs = jobs  # a JobHost: saving waits for a running turn, so it runs off the GUI thread
        self.model_names: list[str] = []
        layout = QVBoxLayout(self)
        note = QLabel("Choose the model and optional LoRA adapter that answer each domain.", self)
        note.setObjectName("Muted")
        layout.addWidget(note)
        self.table = QTableWidget(0, 3, self)
        self.table.setHorizontalHeaderLabels(["Domain", "Model", "Adapter (scale)"])
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setAccessibleName("Domain to model mapping")
        layout.addWidget(self.table, 1)
        row = QHBoxLayout()
        row.addStretch(1)
        self.save_button = QPushButton("Save mapping", self)
        self.save_button.setObjectName("PrimaryButton")
        self.save_button.setAccessibleName("Save mapping")
        row.addWidget(self.save_button)
        layout.addLayout(row)
        self.save_button.clicked.connect(self.save)

    def set_assistant(self, assistant: Assistant | None) -> None:
        self.assistant = assistant
        self.setEnabled(assistant is not None)
        self._fill()

    def set_models(self, models: list[Path]) -> None:
        self.model_names = sorted({m.name for m in models})
        self._fill()

    def _fill(self) -> None:
        self.table.setRowCount(0)
        if self.assistant is None:
            return
        configs = self.assistant.configs
        for domain in sorted(configs.domains):
            choice = configs.mapping.for_domain(domain)
            r = self.table.rowCount()
            self.table.insertRow(r)
            label = QLabel(domain.capitalize())
            label.setContentsMargins(6, 0, 6, 0)
            self.table.setCellWidget(r, 0, label)
            models = QComboBox()
            models.setEditable(True)
            models.setAccessibleName(f"Model for {domain}")
            models.addItems(sorted({*self.model_names, choice.model}))
            models.setCurrentText(choice.model)
            self.table.setCellWidget(r, 1, models)
            self.table.setCellWidget(r, 2, self._adapter_cell(domain, choice.adapter, choice.adapter_scale))
        self.table.resizeColumnToContents(0)

    def _adapter_cell(self, domain: str, adapter: str | None, scale: float) -> QWidget:
        cell = QWidget()
        row = QHBoxLayout(cell)
        row.setContentsMargins(2, 0, 2, 0)
        box = QComboBox(cell)
        box.setEditable(True)
        box.setAccessibleName(f"Adapter for {domain}")
        box.addItem(NO_ADAPTER)
        if adapter:
            box.addItem(adapter)
            box.setCurrentText(adapter)
        browse = QPushButton("…", cell)
        browse.setAccessibleName(f"Choose an adapter file for {domain}")
        browse.setMaximumWidth(32)
        browse.clicked.connect(functools.partial(self._browse, box))
        spin = QDoubleSpinBox(cell)
        spin.setRange(0.0, 4.0)
        spin.setSingleStep(0.1)
        spin.setValue(scale)
        spin.setAccessibleName(f"Adapter scale for {domain}")
        row.addWidget(box, 1)
        row.addWidget(browse)
        row.addWidget(spin)
        return cell

    def _browse(self, box: QComboBox, _checked: bool = False) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a LoRA adapter", str(Path.home()),
                                              "GGUF adapters (*.gguf);;All files (*)")
        if path:
            box.setCurrentText(path)

    def values(self) -> dict[str, dict[str, str | float | None]]:
        out: dict[str, dict[str, str | float | None]] = {}
        for r in range(self.table.rowCount()):
            label = self.table.cellWidget(r, 0)
            models = self.table.cellWidget(r, 1)
            cell = self.table.cellWidget(r, 2)
            assert isinstance(label, QLabel) and isinstance(models, QComboBox) and cell is not None
            adapter_box = cell.findChild(QComboBox)
            spin = cell.findChild(QDoubleSpinBox)
            adapter = adapter_box.currentText().strip() if adapter_box is not None else ""
            out[label.text().lower()] = {
                "model": models.currentText().strip(),
                "adapter": None if adapter in ("", NO_ADAPTER) else adapter,
                "adapter_scale": spin.value() if spin is not None else 1.0,
            }
        return out

    def save(self) -> None:
        """Hand the table to the assistant (the one owner of the mapping), which swaps it in under its
        turn lock; when a turn holds the lock (routing a message) the save waits for it off the GUI thread."""
        if self.assistant is None:
            return
        values = self.values()
        for domain, v in values.items():
            if not v["model"]:
                self.error.emit(f"the {domain} domain has no model; choose one before saving")
                return
        assistant = self.assistant
        jobs: JobHost | None = self.jobs if self.jobs is not None else getattr(self.window(), "jobs", None)
        lock = assistant.turn_lock
        if jobs is None or lock.acquire(blocking=False):
            try:  # no turn is running: the swap is quick, do it now
                assistant.set_mapping(values)
            except (TaraError, ValueError) as exc:
                self.error.emit(str(exc))
                return
            finally:
                if jobs is not None:
                    lock.release()
            self.saved.emit()
            return
        self.save_button.setEnabled(False)  # a message is being routed: swap right after, off the GUI thread

        def run(_state: JobState, _emit: Emit) -> ModelMapping:
            return assistant.set_mapping(values)

        job = jobs.start(run, "save-mapping")
        job.succeeded.connect(self._on_saved_later)
        job.failed.connect(self.error)
        job.done.connect(self._on_save_done)

    def _on_saved_later(self, _result: object) -> None:
        self.saved.emit()

    def _on_save_done(self) -> None:
        self.save_button.setEnabled(True)
