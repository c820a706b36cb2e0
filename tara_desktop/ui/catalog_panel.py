"""The model catalog (models/catalog.yaml) with download, progress, cancel and resume."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tara_desktop import paths
from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.ui import model_files as mf
from tara_desktop.ui.workers import JobHost, JobThread

log = logging.getLogger(__name__)


def load_catalog() -> list[dict[str, Any]]:
    """Entries of the catalog as plain dicts (through the llm package's loader when it has one)."""
    try:
        from tara_desktop.llm import catalog as cat  # type: ignore[attr-defined]

        return [e if isinstance(e, dict) else _as_dict(e) for e in cat.load_catalog()]
    except ImportError:
        pass
    path = paths.bundled_models_dir() / "catalog.yaml"
    if not path.is_file():
        return []
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise TaraError(f"{path} cannot be read ({exc.__class__.__name__}); reinstall TARA") from None
    items = raw.get("models", raw) if isinstance(raw, dict) else raw
    if isinstance(items, dict):
        return [{"name": k, **(v or {})} for k, v in items.items()]
    return [dict(i) for i in items or [] if isinstance(i, dict)]


def _as_dict(entry: Any) -> dict[str, Any]:
    if hasattr(entry, "model_dump"):
        return dict(entry.model_dump())
    return dict(vars(entry))


def _size_mb(entry: dict[str, Any]) -> float:
    for key, scale in (("size_mb", 1.0), ("size_bytes", 1 / (1024 * 1024)), ("size", 1 / (1024 * 1024))):
        if isinstance(entry.get(key), int | float):
            return float(entry[key]) * scale
    return 0.0


def _ram_mb(entry: dict[str, Any]) -> float:
    for key in ("ram_mb", "ram_need_mb", "min_ram_mb"):
        if isinstance(entry.get(key), int | float):
            return float(entry[key])
    return _size_mb(entry) * 1.2


class CatalogPanel(QWidget):
    """Signals:
        downloaded(str): the path of a finished download.
        error(str): one sentence for the user.
    """

    downloaded = Signal(str)
    error = Signal(str)

    def __init__(self, jobs: JobHost, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.assistant: Any = None
        self.entries: list[dict[str, Any]] = []
        self._job: JobThread | None = None
        layout = QVBoxLayout(self)
        self.table = QTableWidget(0, 5, self)
        self.table.setHorizontalHeaderLabels(["Name", "Download", "Needs", "Fits this computer?", "License"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setAccessibleName("Model catalog")
        layout.addWidget(self.table, 1)
        self.empty = QLabel("No catalog was found in this installation.", self)
        self.empty.setObjectName("Muted")
        layout.addWidget(self.empty)
        row = QHBoxLayout()
        self.download_button = QPushButton("Download", self)
        self.download_button.setAccessibleName("Download the selected model")
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setAccessibleName("Cancel the download")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar(self)
        self.progress.setAccessibleName("Download progress")
        self.progress.setVisible(False)
        self.status = QLabel("", self)
        self.status.setObjectName("Muted")
        row.addWidget(self.download_button)
        row.addWidget(self.cancel_button)
        row.addWidget(self.progress, 1)
        row.addWidget(self.status)
        layout.addLayout(row)
        self.download_button.clicked.connect(self.download_selected)
        self.cancel_button.clicked.connect(self.cancel)

    def set_assistant(self, assistant: Any) -> None:
        self.assistant = assistant
        self.refresh()

    def refresh(self) -> None:
        try:
            self.entries = load_catalog()
        except TaraError as exc:
            self.entries = []
            self.error.emit(str(exc))
        avail = mf.available_mb()
        self.table.setRowCount(0)
        for e in self.entries:
            r = self.table.rowCount()
            self.table.insertRow(r)
            need = _ram_mb(e)
            cells = (str(e.get("name", "?")), mf.human_size(_size_mb(e) * 1024 * 1024),
                     f"~{need:.0f} MB RAM", mf.fit_label(need, avail), str(e.get("license", "")))
            for c, text in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.empty.setVisible(not self.entries)
        self.download_button.setEnabled(bool(self.entries) and self._job is None)

    def download_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or self._job is not None:
            return
        entry = self.entries[rows[0].row()]
        try:
            from tara_desktop.llm import downloads  # type: ignore[attr-defined]
        except ImportError:
            self.error.emit("Downloads are not available in this version; add a model file instead.")
            return
        profile_dir = Path(getattr(self.assistant, "profile_dir", None) or paths.profile_dir())
        dest = paths.user_models_dir(profile_dir)

        def run(state: JobState, _emit: Any) -> Any:
            return downloads.download(entry, dest, state)

        self._job = self.jobs.start(run, "download-model")
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.cancel_button.setEnabled(True)
        self.download_button.setEnabled(False)
        self._job.progress.connect(self._on_progress)
        self._job.succeeded.connect(self._on_downloaded)
        self._job.failed.connect(self.error)
        self._job.cancelled.connect(lambda: self.status.setText("Paused — Download again to resume."))
        self._job.done.connect(self._on_done)

    def _on_downloaded(self, path: object) -> None:
        self.status.setText("Downloaded.")
        self.downloaded.emit(str(path))

    def _on_progress(self, fraction: float | None, message: str) -> None:
        if fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(fraction * 1000))
        self.status.setText(message)

    def cancel(self) -> None:
        if self._job is not None:
            self._job.cancel()

    def _on_done(self) -> None:
        self._job = None
        self.progress.setVisible(False)
        self.cancel_button.setEnabled(False)
        self.refresh()
