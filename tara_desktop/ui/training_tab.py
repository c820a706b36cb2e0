"""The Training tab: pick a domain, base model, dataset and LoRA settings; start, watch, cancel, resume, export.

The job runs in a child process (``tara_desktop.training.supervisor.run_supervised``) watched from a
:class:`~tara_desktop.ui.workers.JobThread`; its events reach the monitor as queued signals.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from tara_desktop import paths
from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.ui.banner import page_heading
from tara_desktop.ui.training_monitor import TrainingMonitor
from tara_desktop.ui.workers import Emit, JobFunction, JobHost, JobThread

if TYPE_CHECKING:
    from tara_desktop.assistant import Assistant
    from tara_desktop.training.export_job import ExportResult
    from tara_desktop.training.recovery import InterruptedJob
    from tara_desktop.training.spec import TrainingSpec
    from tara_desktop.training.supervisor import JobOutcome

log = logging.getLogger(__name__)


def _path_row(parent: QWidget, name: str, browse: Callable[[], None]) -> tuple[QWidget, QLineEdit]:
    cell = QWidget(parent)
    row = QHBoxLayout(cell)
    row.setContentsMargins(0, 0, 0, 0)
    edit = QLineEdit(cell)
    edit.setAccessibleName(name)
    button = QPushButton("Browse…", cell)
    button.setAccessibleName(f"Choose the {name.lower()}")
    button.clicked.connect(browse)
    row.addWidget(edit, 1)
    row.addWidget(button)
    return cell, edit


class TrainingTab(QWidget):
    """Signals: none; the tab owns its job (see :attr:`job`)."""

    def __init__(self, jobs: JobHost, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.assistant: Assistant | None = None
        self.job: JobThread | None = None
        self.last_adapter: Path | None = None
        self.last_domain: str | None = None
        self.running_domain: str | None = None
        self.interrupted: list[InterruptedJob] = []
        outer = QHBoxLayout(self)
        outer.setContentsMargins(24, 16, 24, 16)

        left = QWidget(self)
        form_col = QVBoxLayout(left)
        form_col.setContentsMargins(0, 0, 8, 0)
        self.banner = page_heading(form_col, "Training", left)
        form_col.addWidget(self._build_resume_banner(left))
        form_col.addWidget(self._build_what_to_train(left))
        form_col.addWidget(self._build_lora_settings(left))
        self._build_buttons(left, form_col)
        form_col.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setFixedWidth(390)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        outer.addWidget(scroll)
        self.monitor = TrainingMonitor(self)
        outer.addWidget(self.monitor, 1)

        self.start_button.clicked.connect(self._on_start_clicked)
        self.all_button.clicked.connect(self.train_all)
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button.clicked.connect(self.resume_interrupted)
        self.export_button.clicked.connect(self.export_dialog)
        self.set_assistant(None)

    # ---- building the form ---------------------------------------------------------------------------
    def _build_resume_banner(self, parent: QWidget) -> QWidget:
        """The (hidden until needed) note about an interrupted job, with its Resume button."""
        self.resume_banner = QWidget(parent)
        rb = QHBoxLayout(self.resume_banner)
        rb.setContentsMargins(0, 0, 0, 0)
        self.resume_label = QLabel("", self.resume_banner)
        self.resume_label.setWordWrap(True)
        self.resume_button = QPushButton("Resume", self.resume_banner)
        self.resume_button.setAccessibleName("Resume the interrupted training job")
        rb.addWidget(self.resume_label, 1)
        rb.addWidget(self.resume_button)
        self.resume_banner.hide()
        return self.resume_banner

    def _build_what_to_train(self, parent: QWidget) -> QGroupBox:
        """Domain, installed base model, base model path and dataset path."""
        what = QGroupBox("What to train", parent)
        form = QFormLayout(what)
        self.domain_box = QComboBox(what)
        self.domain_box.setAccessibleName("Domain")
        form.addRow("Domain:", self.domain_box)
        self.base_box = QComboBox(what)
        self.base_box.setAccessibleName("Installed base model")
        self.base_box.activated.connect(self._on_base_chosen)
        form.addRow("Installed model:", self.base_box)
        cell, self.base_edit = _path_row(what, "Base model", self._browse_base)
        self.base_edit.setPlaceholderText("an installed model above, a Hugging Face model folder or a .gguf file")
        form.addRow("Base model:", cell)
        cell, self.data_edit = _path_row(what, "Dataset", self._browse_data)
        self.data_edit.setPlaceholderText(".jsonl (chats or prompt/response) or .txt")
        form.addRow("Dataset:", cell)
        return what

    def _build_lora_settings(self, parent: QWidget) -> QGroupBox:
        lora = QGroupBox("LoRA settings", parent)
        form = QFormLayout(lora)
        self.rank = self._spin(form, "Rank:", 1, 1024)
        self.alpha = self._spin(form, "Alpha:", 1, 4096)
        self.dropout = self._dspin(form, "Dropout:", 0.0, 0.9, step=0.01, decimals=2)
        self.lr = self._dspin(form, "Learning rate:", 1e-6, 1.0, step=1e-5, decimals=6)
        self.epochs = self._spin(form, "Epochs:", 1, 100)
        self.max_samples = self._spin(form, "Max samples:", 2, 1_000_000)
        self.max_steps = self._spin(form, "Max steps:", 0, 1_000_000)
        self.max_steps.setSpecialValueText("no limit (use epochs)")
        return lora

    def _build_buttons(self, parent: QWidget, column: QVBoxLayout) -> None:
        """Start / train all / cancel in a row, then Export below them."""
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start training", parent)
        self.start_button.setObjectName("PrimaryButton")
        self.start_button.setAccessibleName("Start training")
        self.all_button = QPushButton("Train all domains", parent)
        self.all_button.setAccessibleName("Train all domains one after another")
        self.cancel_button = QPushButton("Cancel", parent)
        self.cancel_button.setAccessibleName("Cancel training")
        self.cancel_button.setEnabled(False)
        self.export_button = QPushButton("Export to GGUF…", parent)
        self.export_button.setAccessibleName("Export the trained adapter to GGUF")
        self.export_button.setEnabled(False)
        for b in (self.start_button, self.all_button, self.cancel_button):
            buttons.addWidget(b)
        column.addLayout(buttons)
        column.addWidget(self.export_button)

    def _on_start_clicked(self) -> None:
        self.start()

    # ---- form helpers -------------------------------------------------------------------------------
    def _spin(self, form: QFormLayout, label: str, lo: int, hi: int) -> QSpinBox:
        s = QSpinBox(self)
        s.setRange(lo, hi)
        s.setAccessibleName(label.rstrip(":"))
        form.addRow(label, s)
        return s

    def _dspin(self, form: QFormLayout, label: str, lo: float, hi: float, *, step: float,
               decimals: int) -> QDoubleSpinBox:
        s = QDoubleSpinBox(self)
        s.setDecimals(decimals)
        s.setRange(lo, hi)
        s.setSingleStep(step)
        s.setAccessibleName(label.rstrip(":"))
        form.addRow(label, s)
        return s

    def _browse_base(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a base model folder", str(Path.home()))
        if folder:
            self.base_edit.setText(folder)

    def _fill_bases(self, assistant: Assistant | None) -> None:
        """The installed models (the bundled one first) as bases; choosing one fills the base field."""
        from tara_desktop.llm.catalog import load_catalog
        from tara_desktop.llm.library import ModelLibrary, installed_model_files

        self.base_box.clear()
        self.base_box.addItem("Choose an installed model…", None)
        if assistant is None:
            return
        try:
            catalog = load_catalog()
        except TaraError:
            catalog = None
        try:
            found = installed_model_files(ModelLibrary(assistant.profile), catalog)
        except TaraError as exc:
            log.warning("could not list the installed models: %s", exc)
            found = []
        for label, path in found:
            self.base_box.addItem(label, str(path))
            self.base_box.setItemData(self.base_box.count() - 1, str(path), Qt.ItemDataRole.ToolTipRole)

    def _on_base_chosen(self, index: int) -> None:
        path = self.base_box.itemData(index)
        if path:
            self.base_edit.setText(str(path))

    def _browse_data(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a dataset", str(Path.home()),
                                              "Datasets (*.jsonl *.txt);;All files (*)")
        if path:
            self.data_edit.setText(path)

    # ---- state ----------------------------------------------------------------------------------------
    def jobs_root(self) -> Path:
        profile_dir = self.assistant.profile_dir if self.assistant is not None else None
        return (Path(profile_dir) if profile_dir else paths.profile_dir()) / "training"

    def set_assistant(self, assistant: Assistant | None) -> None:
        self.assistant = assistant
        self.domain_box.clear()
        self._fill_bases(assistant)
        if assistant is None:
            self.start_button.setEnabled(False)
            self.all_button.setEnabled(False)
            return
        for name in sorted(assistant.configs.domains):
            self.domain_box.addItem(name.capitalize(), name)
        t = assistant.configs.app.training
        self.rank.setValue(t.lora_rank)
        self.alpha.setValue(t.lora_alpha)
        self.dropout.setValue(t.lora_dropout)
        self.lr.setValue(t.learning_rate)
        self.epochs.setValue(t.epochs)
        self.max_samples.setValue(t.max_samples)
        self._set_running(self.job is not None)
        self.check_interrupted()

    def _set_running(self, running: bool) -> None:
        idle = not running and self.assistant is not None
        self.start_button.setEnabled(idle)
        self.all_button.setEnabled(idle)
        self.resume_button.setEnabled(idle)
        self.cancel_button.setEnabled(running)
        self.export_button.setEnabled(idle and self.last_adapter is not None)

    def check_interrupted(self) -> None:
        """Show the newest interrupted job (crash, power loss, cancel) with a Resume button."""
        from tara_desktop.training import recovery

        try:
            self.interrupted = recovery.find_interrupted_jobs(self.jobs_root())
        except Exception:
            log.warning("could not look for interrupted training jobs", exc_info=True)
            self.interrupted = []
        if not self.interrupted or self.job is not None:
            self.resume_banner.hide()
            return
        j = self.interrupted[0]
        where = f"from step {j.resume_step}" if j.resume_step else "from the start"
        more = f" ({len(self.interrupted) - 1} more)" if len(self.interrupted) > 1 else ""
        self.resume_label.setText(f"The {j.record.spec.domain} training job did not finish: {j.reason}. "
                                  f"It can resume {where}.{more}")
        self.resume_banner.show()

    # ---- start, resume, cancel --------------------------------------------------------------------
    def build_spec(self) -> TrainingSpec:
        from tara_desktop.training.spec import TrainingSpec

        domain = self.domain_box.currentData() or "general"
        out = self.jobs_root() / f"{domain}-{time.strftime('%Y%m%d-%H%M%S')}"
        data = self.data_edit.text().strip()
        return TrainingSpec(
            domain=domain, base=self.base_edit.text().strip(), out_dir=str(out),
            data_path=data or None, data_name=Path(data).name if data else "",
            lora_rank=self.rank.value(), lora_alpha=self.alpha.value(), lora_dropout=self.dropout.value(),
            learning_rate=self.lr.value(), epochs=self.epochs.value(), max_samples=self.max_samples.value(),
            max_steps=self.max_steps.value(),
        )

    def start(self, spec: TrainingSpec | None = None, *, resume: bool = False) -> None:
        """Start (or resume) one job in a child process."""
        if self.job is not None or self.assistant is None:
            return
        if spec is None:
            if not self.base_edit.text().strip():
                self.banner.show_error("Choose a base model (a model folder or a .gguf file) first.")
                return
            if not self.data_edit.text().strip():
                self.banner.show_error("Choose a dataset file first.")
                return
            spec = self.build_spec()
        profile = self.assistant.profile

        def run(state: JobState, emit: Emit) -> JobOutcome:
            from tara_desktop.training.supervisor import load_data, run_supervised

            return run_supervised(spec, state, load_data(spec, profile), resume=resume, on_event=emit)

        self.running_domain = spec.domain
        self._launch(run, f"{'Resuming' if resume else 'Training'} {spec.domain}…")

    def train_all(self) -> None:
        if self.job is not None or self.assistant is None:
            return
        if not self.base_edit.text().strip() or not self.data_edit.text().strip():
            self.banner.show_error("Choose a base model and a dataset first; every domain trains on them in turn.")
            return
        first = self.build_spec()
        specs = []
        for i in range(self.domain_box.count()):
            spec = self.build_spec()
            spec.domain = self.domain_box.itemData(i)
            spec.out_dir = str(Path(first.out_dir).with_name(f"{spec.domain}-all-{Path(first.out_dir).name.split('-', 1)[1]}"))
            specs.append(spec)
        profile = self.assistant.profile

        def run(state: JobState, emit: Emit) -> JobOutcome | None:
            from tara_desktop.training.supervisor import load_data, train_all

            def on_job(i: int, spec: TrainingSpec) -> None:
                emit({"type": "job", "domain": spec.domain})
                emit({"type": "log", "message": f"— {spec.domain} ({i + 1}/{len(specs)}) —"})

            outcomes = train_all(specs, state, data_for=functools.partial(load_data, profile=profile), on_event=emit,
                                 on_job=on_job)
            return outcomes[-1] if outcomes else None

        self._launch(run, "Training every domain, one after another…")

    def resume_interrupted(self) -> None:
        if not self.interrupted:
            return
        record = self.interrupted[0].record
        self.start(record.spec, resume=True)

    def _launch(self, run: JobFunction, message: str) -> None:
        self.monitor.reset()
        self.banner.show_info(message)
        self.resume_banner.hide()
        self.job = self.jobs.start(run, "training")
        self.job.partial.connect(self._on_event)
        self.job.succeeded.connect(self._on_outcome)
        self.job.failed.connect(self.banner.show_error)
        self.job.cancelled.connect(self._on_cancelled)
        self.job.done.connect(self._on_done)
        self._set_running(True)

    def _on_cancelled(self) -> None:
        self.banner.show_info("Training stopped; resume it any time.")

    def cancel(self) -> None:
        if self.job is not None:
            self.banner.show_info("Stopping after the current step (a checkpoint is saved)…")
            self.job.cancel()

    def _on_event(self, event: object) -> None:
        if isinstance(event, dict):
            if event.get("type") == "job":
                self.running_domain = str(event.get("domain"))
            self.monitor.on_event(event)
            if event.get("type") == "done":
                adapter = (event.get("result") or {}).get("adapter_dir")
                self.last_adapter = Path(adapter) if adapter else None
                self.last_domain = self.running_domain

    def _on_outcome(self, outcome: JobOutcome | None) -> None:
        status = outcome.status if outcome is not None else "done"
        message = outcome.message if outcome is not None else ""
        if status == "done":
            self.banner.show_info("Training finished. Export the adapter to use it in chat.")
        elif status == "cancelled":
            self.banner.show_info(f"Training stopped ({message}); resume it any time.")
        else:
            self.banner.show_error(message or f"Training {status}.")

    def _on_done(self) -> None:
        self.job = None
        self._set_running(False)
        self.check_interrupted()

    # ---- export -------------------------------------------------------------------------------------
    def export_dialog(self) -> None:
        if self.last_adapter is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export adapter as GGUF",
                                              str(self.last_adapter.parent / "adapter.gguf"), "GGUF (*.gguf)")
        if path:
            self.export(self.last_adapter, Path(path))

    def export(self, adapter_dir: Path, out: Path) -> None:
        """Convert the trained PEFT adapter to a GGUF LoRA adapter (the export engineer's job), then offer
        to use it for the domain it was trained for."""
        domain = self.last_domain

        def run(state: JobState, _emit: Emit) -> ExportResult:
            from tara_desktop.training.export_job import ExportRequest, run_export

            return run_export(ExportRequest(source=adapter_dir, out=out), state)

        self.banner.show_info("Exporting to GGUF…")
        self.export_button.setEnabled(False)
        job = self.jobs.start(run, "export-gguf")
        job.progress.connect(self._on_export_progress)
        job.succeeded.connect(functools.partial(self._on_exported, domain))
        job.failed.connect(self.banner.show_error)
        job.done.connect(self._on_export_done)

    def _on_export_progress(self, _fraction: float | None, message: str) -> None:
        if message:
            self.monitor.add_log(message)

    def _on_export_done(self) -> None:
        self._set_running(self.job is not None)

    def _on_exported(self, domain: str | None, result: ExportResult) -> None:
        path = Path(result.path)
        self.banner.show_info(f"Exported to {path} ({result.size_bytes / (1024 * 1024):.1f} MB).")
        if domain is None or self.assistant is None:
            return
        answer = QMessageBox.question(self, "Use the adapter", f"Use this adapter for the {domain} domain now?",
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            from tara_desktop.training.export_job import register_for_domain

            choice = self.assistant.configs.mapping.for_domain(domain)
            model = self.assistant.model_for(choice.model)
            register_for_domain(self.assistant.profile, domain, model=model, adapter=path,
                                domains=self.assistant.configs.domains)
            self.assistant.reload_settings()
        except TaraError as exc:
            self.banner.show_error(str(exc))
            return
        self.banner.show_info(f"The {domain} domain now answers with {model.name} + {path.name}.")

    def shutdown(self) -> None:
        """Closing the window: stop the job (it saves a checkpoint) and wait for it."""
        if self.job is not None:
            self.job.cancel()
            self.job.wait()
