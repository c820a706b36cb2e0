"""Unexpected errors become a dialog, never a traceback on screen or a vanished window."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from types import TracebackType

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from tara_desktop.ui.workers import describe_error

log = logging.getLogger(__name__)


class _Relay(QObject):
    """Carries an error message from any thread to the GUI thread (it lives there: its slot runs there).

    Signals:
        error(str): one sentence for the user, emitted from any thread.
    """

    error = Signal(str)

    def __init__(self, parent: Callable[[], QWidget | None]) -> None:
        super().__init__()
        self._parent = parent
        self.error.connect(self._on_error)

    def _on_error(self, message: str) -> None:
        show_error(self._parent(), message)


_relay: _Relay | None = None
shown: list[str] = []  # messages shown this session (tests read it)


def show_error(parent: QWidget | None, message: str, title: str = "TARA") -> None:
    """The one way an unexpected error reaches the user: a modal message box."""
    shown.append(message)
    app = QApplication.instance()
    if app is None or (QApplication.platformName() == "offscreen" and parent is None):
        sys.stderr.write(f"error: {message}\n")
        return
    box = QMessageBox(QMessageBox.Icon.Critical, title, message, QMessageBox.StandardButton.Ok, parent)
    box.setWindowModality(Qt.WindowModality.WindowModal if parent else Qt.WindowModality.ApplicationModal)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()


def install(parent: Callable[[], QWidget | None]) -> None:
    """Route uncaught exceptions (GUI thread and other threads) to a dialog over ``parent()``."""
    global _relay
    _relay = _Relay(parent)

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            QApplication.quit()
            return
        log.error("uncaught %s", kind.__name__, exc_info=(kind, exc, tb))
        if _relay is not None:
            _relay.error.emit(describe_error(exc))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            hook(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = hook
    threading.excepthook = thread_hook
