"""Privacy: where the data lives and how it is protected, consent, export, delete everything, audit log."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.ui.banner import page_heading
from tara_desktop.ui.workers import Emit, JobHost

if TYPE_CHECKING:
    from tara_desktop.assistant import Assistant
    from tara_desktop.profile import AuditEntry, Profile

log = logging.getLogger(__name__)

CONSENTS = (
    ("store_history", "Keep my conversation history", "Conversations are saved, encrypted, on this computer."),
    ("record_voice", "Keep my push-to-talk recordings",
     "The microphone works without this; with it, recordings are kept encrypted on this computer."),
    ("train_on_my_data", "Allow training on my data", "Datasets you import stay encrypted on this computer."),
    ("online_voice", "Use the online voice: reply text is sent to Microsoft's speech service",
     "Edge TTS. Off (the default): replies are spoken by a voice on this computer and no text leaves it."),
)


def _describe_status(status: Mapping[str, object]) -> list[tuple[str, str]]:
    """The profile's status as rows a person understands."""
    rows: list[tuple[str, str]] = []
    if status.get("dir"):
        rows.append(("Folder", str(status["dir"])))
    source = status.get("key_source")
    if source == "keyring":
        how = f"Encrypted; the key is in your system keyring ({status.get('key_source_detail', 'keyring')})"
    elif source == "passphrase":
        how = "Encrypted with a key derived from your passphrase (asked when TARA starts)"
    else:
        how = "Encrypted"
    rows.append(("Protection", how))
    counts = status.get("counts") or {}
    if isinstance(counts, dict) and counts:
        parts = []
        for key, raw in counts.items():
            # per kind (e.g. blobs by kind) counts are summed
            value = sum(v for v in raw.values() if isinstance(v, int)) if isinstance(raw, dict) else raw
            if isinstance(value, int):
                parts.append(f"{value} {key.replace('_', ' ')}")
        rows.append(("Stored", ", ".join(parts)))
    size = status.get("size_bytes")
    if isinstance(size, int):
        rows.append(("Size on disk", f"{size / (1024 * 1024):.1f} MB"))
    created = status.get("created_at")
    if isinstance(created, int | float):
        rows.append(("Created", datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M")))
    return rows


class PrivacyPage(QWidget):
    """Signals:
        everything_deleted(): the profile was wiped; the window must start again from an empty profile.
        exported(str): the path of a finished export.
    """

    everything_deleted = Signal()
    exported = Signal(str)

    def __init__(self, jobs: JobHost, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.assistant: Assistant | None = None
        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 16, 24, 16)
        self.banner = page_heading(outer, "Privacy", self)

        where = QGroupBox("Where your data lives", self)
        self.where_form = QFormLayout(where)
        outer.addWidget(where)

        consent = QGroupBox("What TARA may do", self)
        consent_layout = QVBoxLayout(consent)
        self.consent_boxes: dict[str, QCheckBox] = {}
        for kind, label, hint in CONSENTS:
            box = QCheckBox(label, consent)
            box.setToolTip(hint)
            box.setAccessibleName(label)
            box.toggled.connect(functools.partial(self._set_consent, kind))
            consent_layout.addWidget(box)
            self.consent_boxes[kind] = box
        outer.addWidget(consent)

        actions = QHBoxLayout()
        self.export_button = QPushButton("Export my data…", self)
        self.export_button.setAccessibleName("Export my data")
        self.delete_button = QPushButton("Delete everything…", self)
        self.delete_button.setObjectName("DangerButton")
        self.delete_button.setAccessibleName("Delete everything")
        actions.addWidget(self.export_button)
        actions.addStretch(1)
        actions.addWidget(self.delete_button)
        outer.addLayout(actions)

        audit = QGroupBox("Audit log", self)
        audit_layout = QVBoxLayout(audit)
        self.audit_table = QTableWidget(0, 2, audit)
        self.audit_table.setHorizontalHeaderLabels(["When", "What"])
        self.audit_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.audit_table.verticalHeader().setVisible(False)
        self.audit_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.audit_table.setAccessibleName("Audit log")
        audit_layout.addWidget(self.audit_table)
        row = QHBoxLayout()
        self.verify_button = QPushButton("Verify", audit)
        self.verify_button.setAccessibleName("Verify the audit log")
        self.verify_result = QLabel("", audit)
        self.verify_result.setWordWrap(True)
        row.addWidget(self.verify_button)
        row.addWidget(self.verify_result, 1)
        audit_layout.addLayout(row)
        outer.addWidget(audit, 1)

        self.export_button.clicked.connect(self.export_dialog)
        self.delete_button.clicked.connect(self.delete_everything)
        self.verify_button.clicked.connect(self.verify)
        self._quiet = False
        self.set_assistant(None)

    @property
    def profile(self) -> Profile | None:
        return None if self.assistant is None else self.assistant.profile

    def set_assistant(self, assistant: Assistant | None) -> None:
        self.assistant = assistant
        self.setEnabled(assistant is not None)
        self.refresh()

    def refresh(self) -> None:
        while self.where_form.rowCount():
            self.where_form.removeRow(0)
        if self.profile is None:
            return
        try:
            status = dict(self.profile.status())
        except TaraError as exc:
            self.banner.show_error(str(exc))
            status = {}
        for label, value in _describe_status(status):
            text = QLabel(value, self)
            text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            text.setWordWrap(True)
            self.where_form.addRow(f"{label}:", text)
        self._quiet = True
        for kind, box in self.consent_boxes.items():
            box.setChecked(bool(self.profile.consent.get(kind)))
        self._quiet = False
        self._load_audit()

    def _load_audit(self) -> None:
        profile = self.profile
        if profile is None:
            return
        entries: list[AuditEntry] = []
        try:
            entries = list(profile.audit.entries(on_damaged="skip"))
        except TaraError as exc:
            self.verify_result.setText(str(exc))
        self.audit_table.setRowCount(0)
        for entry in reversed(entries[-500:]):
            when, what = _audit_row(entry)
            r = self.audit_table.rowCount()
            self.audit_table.insertRow(r)
            self.audit_table.setItem(r, 0, QTableWidgetItem(when))
            self.audit_table.setItem(r, 1, QTableWidgetItem(what))
        self.audit_table.resizeColumnToContents(0)

    def _set_consent(self, kind: str, on: bool) -> None:
        if self._quiet or self.profile is None:
            return
        try:
            self.profile.consent.set(kind, on)
        except TaraError as exc:
            self.banner.show_error(str(exc))
        self._load_audit()

    # ---- export -------------------------------------------------------------------------------------
    def export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export my data", str(Path.home() / "tara-export.zip"),
                                              "TARA export (*.zip);;All files (*)")
        if path:
            self.export_to(Path(path))

    def export_to(self, out: Path) -> None:
        profile = self.profile
        if profile is None:
            return
        self.export_button.setEnabled(False)
        self.banner.show_info("Exporting…")

        def run(state: JobState, _emit: Emit) -> dict[str, object]:
            state.report(None, "exporting")
            return profile.export(out, state)

        job = self.jobs.start(run, "export-profile")
        job.succeeded.connect(functools.partial(self._on_exported, out))
        job.failed.connect(self.banner.show_error)
        job.done.connect(self._on_export_done)

    def _on_export_done(self) -> None:
        self.export_button.setEnabled(True)

    def _on_exported(self, out: Path, _result: object) -> None:
        where = str(out)
        self.banner.show_info(f"Exported to {where}. The export is not encrypted: keep it somewhere safe.")
        self._load_audit()
        self.exported.emit(where)

    # ---- delete -------------------------------------------------------------------------------------
    def delete_everything(self) -> None:
        if self.profile is None:
            return
        where = ""
        try:
            where = str(self.profile.status().get("dir", ""))
        except Exception:
            pass
        answer = QMessageBox.warning(
            self, "Delete everything",
            "This permanently deletes all your conversations, settings, imported datasets, consent choices, "
            f"the audit log and the encryption key{(' in ' + where) if where else ''}. "
            "It cannot be undone. Delete everything?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        if self.jobs.busy:
            self.jobs.shutdown()
        try:
            self.profile.delete_everything()
        except TaraError as exc:
            self.banner.show_error(str(exc))
            return
        self.set_assistant(None)
        self.banner.show_info("Everything was deleted. TARA starts again with an empty profile.")
        self.everything_deleted.emit()

    # ---- audit --------------------------------------------------------------------------------------
    def verify(self) -> None:
        if self.profile is None:
            return
        try:
            # everything the profile can check about itself, as `tara profile audit-verify` does: the audit
            # chain, consent against the signed trail, per-conversation message ledgers, the rollback anchor
            result = self.profile.verify_integrity()
        except TaraError as exc:
            self.verify_result.setText(f"✗ {exc}")
            return
        if result.ok:
            self.verify_result.setText(
                f"✓ Intact: the audit log's {result.audit.entries} entries, none changed or removed; " + "; ".join(result.checked)
            )
        else:
            self.verify_result.setText(f"✗ {result}")


def _audit_row(entry: AuditEntry) -> tuple[str, str]:
    when = datetime.fromtimestamp(entry.created_at).strftime("%Y-%m-%d %H:%M:%S")
    event = entry.event
    if entry.details:
        event += "  (" + ", ".join(f"{k}={v}" for k, v in entry.details.items()) + ")"
    return when, event
