"""``tara-desktop``: start the GUI (or ``--smoke``: one offscreen chat turn with the bundled chat model).

Startup imports only Qt and the chat window; the profile, router and models open in the background.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PySide6.QtWidgets import QAbstractButton, QApplication

    from tara_desktop.assistant import Assistant
    from tara_desktop.turn import TurnResult
    from tara_desktop.ui.main_window import MainWindow

log = logging.getLogger(__name__)

SMOKE_QUESTION = "Hello TARA! What can you help me with?"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    from tara_desktop import __version__

    p = argparse.ArgumentParser(prog="tara-desktop", description="TARA: a local, private AI assistant.")
    p.add_argument("--profile", metavar="DIR", help="profile directory (default: TARA_HOME or the OS data dir)")
    p.add_argument("--smoke", action="store_true",
                   help="open the window offscreen, run one chat turn with the bundled chat model, print it, exit")
    p.add_argument("--no-welcome", action="store_true", help="do not show the first-run welcome")
    p.add_argument("--bench-startup", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--version", action="version", version=f"tara-desktop {__version__}")
    return p.parse_args(argv)


def create_application(argv: Sequence[str] | None = None) -> QApplication:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(list(argv or sys.argv[:1]))
    app.setApplicationName("TARA")
    app.setOrganizationName("TARA")
    if isinstance(app, QGuiApplication):
        app.setApplicationDisplayName("TARA")
    assert isinstance(app, QApplication), "the window needs a QApplication, not a bare QCoreApplication"
    return app


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=os.environ.get("TARA_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    if args.profile:
        os.environ["TARA_HOME"] = str(Path(args.profile).expanduser().resolve())
    if args.smoke:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        return smoke(args)
    app = create_application()
    from tara_desktop.ui import error_hook, theme
    from tara_desktop.ui.main_window import MainWindow

    theme.apply_theme(app, "system")
    window = MainWindow(Path(os.environ["TARA_HOME"]) if args.profile else None,
                        show_welcome=not args.no_welcome)
    error_hook.install(lambda: window)
    window.assistant_ready.connect(functools.partial(check_chat_model, window))
    window.show()
    window.open_session()
    if args.bench_startup:
        _report_startup(app, window)
    return int(app.exec())


def _report_startup(app: QApplication, window: MainWindow) -> None:
    """For benchmarks/bench_ui.py: print when the window was first painted and when the profile was open
    (seconds since the process started), and the peak RSS; then quit."""
    import json
    import resource
    import time

    import psutil
    from PySide6.QtCore import QTimer

    started = psutil.Process().create_time()
    marks: dict[str, float] = {}

    def shown() -> None:
        marks["shown_s"] = time.time() - started

    def ready(_assistant: Assistant) -> None:
        marks["ready_s"] = time.time() - started
        window.close()
        marks["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(marks), flush=True)
        app.quit()

    def failed(message: str) -> None:
        print(json.dumps({"error": message}))
        app.quit()

    QTimer.singleShot(0, shown)  # runs once the event loop has painted the first frame
    window.assistant_ready.connect(ready)
    window.session.failed.connect(failed)


def check_chat_model(window: MainWindow, assistant: Assistant) -> str | None:
    """On start: when the default chat model (the user's mapping over the shipped one) cannot be used, say
    so in the chat banner and in a message box that offers the model catalog. Returns the problem."""
    from PySide6.QtWidgets import QMessageBox

    from tara_desktop.errors import TaraError

    try:
        assistant.model_for(assistant.configs.mapping.default.model)
    except TaraError as exc:
        problem = str(exc)
    else:
        return None
    log.warning("no usable default chat model: %s", problem)
    window.chat.banner.show_error(problem)
    box = QMessageBox(QMessageBox.Icon.Warning, "TARA has no chat model",
                      "TARA cannot answer yet: " + problem, parent=window)
    catalog = box.addButton("Open the model catalog", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Close)

    def _on_clicked(button: QAbstractButton) -> None:
        if button is catalog:
            window.show_page("Models")

    box.buttonClicked.connect(_on_clicked)
    box.setObjectName("chatModelMissing")
    box.open()
    return problem


def smoke(args: argparse.Namespace) -> int:
    """Open the real window offscreen, send one message with the bundled chat model, print the reply."""
    from tara_desktop.errors import TaraError
    from tara_desktop.llm.library import default_chat_model

    try:
        model = default_chat_model()
    except TaraError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    with tempfile.TemporaryDirectory(prefix="tara-smoke-") as tmpdir:
        tmp = Path(tmpdir)
        if not args.profile:
            os.environ["TARA_HOME"] = str(tmp / "profile")
            os.environ.setdefault("TARA_PASSPHRASE", os.urandom(12).hex())
        app = create_application()
        from PySide6.QtCore import QEventLoop, QTimer

        from tara_desktop.ui import error_hook, theme
        from tara_desktop.ui.main_window import MainWindow

        theme.apply_theme(app, "light")
        window = MainWindow(Path(os.environ["TARA_HOME"]), show_welcome=False, keep_theme=True)
        error_hook.install(lambda: window)
        window.show()
        results: list[TurnResult] = []
        errors: list[str] = []
        loop = QEventLoop()

        def on_ready(_assistant: Assistant) -> None:
            window.chat.send(SMOKE_QUESTION, model_path=model)

        def on_done(result: TurnResult) -> None:
            results.append(result)
            loop.quit()

        def on_failed(message: str) -> None:
            errors.append(message)
            loop.quit()

        window.assistant_ready.connect(on_ready)
        window.session.failed.connect(on_failed)
        window.chat.turn_finished.connect(on_done)
        window.chat.turn_failed.connect(on_failed)
        QTimer.singleShot(300_000, functools.partial(on_failed, "the smoke turn took longer than 5 minutes"))
        window.open_session()
        loop.exec()
        window.close()
        app.processEvents()
        if errors or not results:
            sys.stderr.write(f"error: {errors[0] if errors else 'the smoke turn did not finish'}\n")
            return 1
        result = results[0]
        sys.stdout.write(f"you:  {SMOKE_QUESTION}\n")
        sys.stdout.write(f"tara: {result.reply}\n")
        sys.stdout.write(f"      [{result.domain} · {Path(str(result.model)).name} · "
                         f"first token {result.ttft_s or 0:.2f} s · {result.tokens_per_s or 0:.1f} tok/s]\n")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
