"""Screenshots of the main views for the docs, from a real run of the real app.

    .venv/bin/python scripts/screenshots.py docs/screenshots [--dark] [--question TEXT ...]

It opens the real window on a throw-away profile, types the questions into the chat one after the other,
and waits for each reply, which the bundled chat model (or whatever the shipped mapping resolves to)
writes through the whole pipeline: router, context window, engine, safety layer, encrypted profile. The
timings under each reply are the ones measured in this run. Nothing in the pictures is written by hand.
Then it saves one PNG per page. It runs offscreen (QT_QPA_PLATFORM=offscreen, the default here) or under
Xvfb (``xvfb-run -a .venv/bin/python scripts/screenshots.py docs/screenshots``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

QUESTIONS = [
    "How do I read a CSV file in Python and sum one column?",
    "I have had a headache for three days and I feel dizzy. What should I do?",
]


def _wait(ms: int) -> None:
    from PySide6.QtCore import QEventLoop, QTimer  # noqa: TID251 (a GUI script, like tara_desktop/ui)

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/screenshots.py", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--dark", action="store_true")
    p.add_argument("--question", action="append", help="a question to ask (repeatable; default: two examples)")
    p.add_argument("--pages", default="Chat,Models,Training,Privacy,Settings")
    args = p.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    args.out.mkdir(parents=True, exist_ok=True)
    questions = args.question or QUESTIONS
    with tempfile.TemporaryDirectory(prefix="tara-shots-") as tmp:
        os.environ["TARA_HOME"] = str(Path(tmp) / "profile")
        os.environ.setdefault("TARA_PASSPHRASE", os.urandom(8).hex())
        from PySide6.QtCore import QEventLoop, QTimer  # noqa: TID251 (a GUI script, like tara_desktop/ui)

        from tara_desktop.ui import theme
        from tara_desktop.ui.app import create_application
        from tara_desktop.ui.main_window import MainWindow

        app = create_application()
        theme.apply_theme(app, "dark" if args.dark else "light", 10)
        window = MainWindow(Path(os.environ["TARA_HOME"]), show_welcome=False, keep_theme=True)
        window.resize(1240, 780)
        window.show()
        outcome: dict[str, Any] = {}
        loop = QEventLoop()

        def finished(result: Any) -> None:
            outcome["result"] = result
            loop.quit()

        def failed(message: str) -> None:
            outcome["error"] = message
            loop.quit()

        window.assistant_ready.connect(lambda _a: loop.quit())
        window.session.failed.connect(failed)
        window.open_session()
        loop.exec()
        if window.session.assistant is None:
            sys.stderr.write(f"error: the profile did not open: {outcome.get('error')}\n")
            return 1
        assistant = window.session.assistant
        assistant.profile.consent.set("store_history", True)  # as a person does in the welcome: keep the chat
        window.chat.turn_finished.connect(finished)
        window.chat.turn_failed.connect(failed)
        for question in questions:
            outcome.clear()
            window.chat.send(question)
            QTimer.singleShot(300_000, lambda: failed("a reply took longer than 5 minutes"))
            loop.exec()
            if "error" in outcome:
                sys.stderr.write(f"error: {outcome['error']}\n")
                return 1
            result = outcome["result"]
            print(f"asked {question!r}: {result.domain}, {result.model}, first token {result.ttft_s:.2f} s, "
                  f"{result.tokens_per_s:.1f} tok/s", file=sys.stderr)
        window.conversations.refresh()
        suffix = "-dark" if args.dark else ""
        for name in args.pages.split(","):
            window.show_page(name)
            for _ in range(3):
                _wait(150)
            path = args.out / f"{name.lower()}{suffix}.png"
            window.grab().save(str(path))
            print(path)
        window.close()
        app.processEvents()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
