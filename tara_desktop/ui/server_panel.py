"""Settings → Local API server: a switch that runs ``tara serve`` inside the app.

Shows the status and address, the port, a button that copies the API token, and the request log
(method, path, status, domain, token counts — never what was said). Starting and stopping happen off
the GUI thread; the server's own threads reach the widget only through queued signals.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QSpinBox,
    QWidget,
)

if TYPE_CHECKING:
    from tara_desktop.assistant import Assistant
    from tara_desktop.server.log import RequestRecord
    from tara_desktop.server.runner import ApiServer

log = logging.getLogger(__name__)

MAX_LOG_LINES = 200


class ServerPanel(QGroupBox):
    """Signals:
        status_changed(str): "stopped" | "starting" | "running" | "stopping" | "error".
        request_logged(str): one content-free line per request served.
    """

    status_changed = Signal(str)
    request_logged = Signal(str)
    _done = Signal(str, str)  # new status, message (from the start/stop thread)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Local API server", parent)
        self.assistant: Assistant | None = None
        self.server: ApiServer | None = None
        self.status = "stopped"
        self._worker: threading.Thread | None = None
        form = QFormLayout(self)
        self.enabled = QCheckBox("Serve TARA's models to apps on this computer (OpenAI-compatible API)", self)
        self.enabled.setAccessibleName("Run the local API server")
        form.addRow("", self.enabled)
        self.port = QSpinBox(self)
        self.port.setRange(1024, 65535)
        self.port.setAccessibleName("API server port")
        form.addRow("Port:", self.port)
        self.status_label = QLabel("Stopped", self)
        self.status_label.setAccessibleName("API server status")
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status_label.setWordWrap(True)
        form.addRow("Status:", self.status_label)
        row = QHBoxLayout()
        self.copy_button = QPushButton("Copy token", self)
        self.copy_button.setAccessibleName("Copy the API token")
        self.copy_button.setToolTip("Copy the API key apps must send (it is kept encrypted in your profile)")
        row.addWidget(self.copy_button)
        row.addStretch(1)
        form.addRow("API key:", row)
        self.log_view = QListWidget(self)
        self.log_view.setAccessibleName("API request log")
        self.log_view.setToolTip("Requests served: what was asked for and how it went, never what was said")
        self.log_view.setMaximumHeight(140)
        form.addRow("Requests:", self.log_view)
        note = QLabel("Only this computer can connect, and only with the key. Conversations from apps are "
                      "not kept unless the app asks for it and history is allowed on the Privacy page.", self)
        note.setWordWrap(True)
        note.setObjectName("Hint")
        form.addRow("", note)

        self.enabled.toggled.connect(self._on_toggled)
        self.copy_button.clicked.connect(self.copy_token)
        self.request_logged.connect(self._on_request_logged)
        self._done.connect(self._on_done)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        self.set_assistant(None)

    # -- wiring ----------------------------------------------------------------------------------------
    def set_assistant(self, assistant: Assistant | None) -> None:
        if assistant is not self.assistant and self.server is not None:
            self.shutdown()
        self.assistant = assistant
        self.setEnabled(assistant is not None)
        if assistant is None:
            return
        from tara_desktop.server.runner import DEFAULT_PORT, PORT_KEY

        saved = assistant.profile.store.get_setting(PORT_KEY)
        self.port.setValue(saved if isinstance(saved, int) and 1024 <= saved <= 65535 else DEFAULT_PORT)

    def token(self) -> str:
        from tara_desktop.errors import TaraError
        from tara_desktop.server.token import api_token

        if self.assistant is None:
            raise TaraError("no profile is open yet; unlock it first")
        return api_token(self.assistant.profile.store)

    def copy_token(self) -> None:
        if self.assistant is None:
            return
        clipboard = QApplication.clipboard()
        clipboard.setText(self.token())
        self._show("Token copied. Use it as the API key (Authorization: Bearer …).", keep_status=True)

    # -- start / stop (off the GUI thread) ----------------------------------------------------------
    def _set_status(self, status: str, message: str) -> None:
        self.status = status
        self.status_label.setText(message)
        self.status_changed.emit(status)

    def _show(self, message: str, *, keep_status: bool = False) -> None:
        if keep_status:
            self.status_label.setText(f"{self.status_label.text().split(' — ')[0]} — {message}")
        else:
            self.status_label.setText(message)

    def _on_toggled(self, on: bool) -> None:
        if self.assistant is None or (self._worker is not None and self._worker.is_alive()):
            return
        if on and self.server is None:
            self.port.setEnabled(False)
            self._set_status("starting", "Starting…")
            self._run(self._start, self.assistant, int(self.port.value()))
        elif not on and self.server is not None:
            self._set_status("stopping", "Stopping…")
            self._run(self._stop, self.server)

    def _run(self, target: Callable[..., None], *args: object) -> None:
        self._worker = threading.Thread(target=target, args=args, name="tara-api-switch", daemon=True)
        self._worker.start()

    def _start(self, assistant: Assistant, port: int) -> None:
        from tara_desktop.errors import TaraError
        from tara_desktop.server.runner import PORT_KEY, ApiServer

        try:
            server = ApiServer(assistant, port=port)
            server.log.subscribe(self._on_request_served)
            server.start()
            assistant.profile.store.set_setting(PORT_KEY, port)
        except TaraError as exc:
            self._done.emit("error", str(exc))
            return
        except Exception as exc:  # the switch must never take the window down
            log.error("the API server did not start: %s", exc.__class__.__name__)
            self._done.emit("error", f"The API server did not start ({exc.__class__.__name__}).")
            return
        self.server = server
        self._done.emit("running", f"Running on {server.url}")

    def _on_request_served(self, record: RequestRecord) -> None:  # on a server thread: the signal is queued
        self.request_logged.emit(record.line())

    def _stop(self, server: ApiServer) -> None:
        try:
            server.stop()
        finally:
            self.server = None
            self._done.emit("stopped", "Stopped")

    def _on_done(self, status: str, message: str) -> None:
        self._set_status(status, message)
        running = status == "running"
        self.port.setEnabled(not running)
        if self.enabled.isChecked() != running:
            self.enabled.blockSignals(True)
            self.enabled.setChecked(running)
            self.enabled.blockSignals(False)

    def _on_request_logged(self, line: str) -> None:
        self.log_view.addItem(line)
        while self.log_view.count() > MAX_LOG_LINES:
            self.log_view.takeItem(0)
        self.log_view.scrollToBottom()

    def wait_idle(self, timeout: float = 15.0) -> None:
        """Wait for a start or stop in progress (tests, shutdown)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)

    def shutdown(self) -> None:
        """Stop the server and wait for it (the app is quitting, or the profile changed)."""
        self.wait_idle()
        server, self.server = self.server, None
        if server is not None:
            server.stop()
        if self.status != "stopped":
            self._set_status("stopped", "Stopped")
            self.enabled.blockSignals(True)
            self.enabled.setChecked(False)
            self.enabled.blockSignals(False)
            self.port.setEnabled(True)
