"""Screenshots of the main views for the docs: ``python -m tara_desktop.ui.screenshots OUT_DIR [--dark]``.

It opens the real window on a throw-away profile holding a sample conversation (written through the
profile store, as a real chat would be) and saves one PNG per page. Run it under Xvfb
(``xvfb-run -a python -m tara_desktop.ui.screenshots docs/screenshots``) or offscreen.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SAMPLE = [
    ("user", "How do I read a CSV file in Python and sum one column?", None),
    ("assistant",
     "Use the standard library's `csv` module — no extra packages needed:\n\n"
     "```python\nimport csv\n\nwith open(\"sales.csv\", newline=\"\") as f:\n"
     "    total = sum(float(row[\"amount\"]) for row in csv.DictReader(f))\nprint(total)\n```\n\n"
     "- `DictReader` gives you each row as a dict keyed by the header.\n"
     "- Use `newline=\"\"` so line endings are handled correctly on Windows.",
     {"domain": "technical", "model": "tara-demo.gguf", "emotion": "neutral", "ttft_s": 0.18, "tokens_per_s": 21.4}),
    ("user", "Thanks! And if the file is huge?", None),
    ("assistant",
     "Then stream it exactly like that: `csv.DictReader` reads **one row at a time**, so memory stays flat "
     "even for a 10 GB file. If you need grouping or joins, *pandas* with `chunksize=` is the next step.",
     {"domain": "technical", "model": "tara-demo.gguf", "emotion": "happy", "ttft_s": 0.16, "tokens_per_s": 22.0}),
]
OTHER_TITLES = ["Business plan for a coffee shop", "Sleep and focus", "Explaining photosynthesis",
                "Feedback for my team lead"]


def _fill(store: Any) -> int:
    for title in OTHER_TITLES:
        cid = store.create_conversation(title)
        store.append_message(cid, "user", title + "?")
    cid = int(store.create_conversation("Summing a CSV column in Python"))
    for role, text, meta in SAMPLE:
        store.append_message(cid, role, text, meta)
    return cid


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tara_desktop.ui.screenshots")
    p.add_argument("out", type=Path)
    p.add_argument("--dark", action="store_true")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tara-shots-") as tmp:
        os.environ["TARA_HOME"] = str(Path(tmp) / "profile")
        os.environ.setdefault("TARA_PASSPHRASE", os.urandom(8).hex())
        from PySide6.QtCore import QEventLoop, QTimer

        from tara_desktop.ui import theme
        from tara_desktop.ui.app import create_application
        from tara_desktop.ui.main_window import MainWindow

        app = create_application()
        theme.apply_theme(app, "dark" if args.dark else "light", 10)
        window = MainWindow(Path(os.environ["TARA_HOME"]), show_welcome=False, keep_theme=True)
        window.resize(1240, 780)
        window.show()
        loop = QEventLoop()
        window.assistant_ready.connect(lambda _a: loop.quit())
        window.session.failed.connect(lambda _m: loop.quit())
        window.open_session()
        loop.exec()
        assistant = window.session.assistant
        if assistant is None:
            sys.stderr.write("error: the profile did not open\n")
            return 1
        cid = _fill(assistant.profile.store)
        window.conversations.refresh(select=cid)
        window.chat.show_conversation(cid)
        window.chat.set_status("tara-demo.gguf ready")
        suffix = "-dark" if args.dark else ""
        for name in ("Chat", "Models", "Training", "Privacy", "Settings"):
            window.show_page(name)
            for _ in range(3):
                wait = QEventLoop()
                QTimer.singleShot(120, wait.quit)
                wait.exec()
            path = args.out / f"{name.lower()}{suffix}.png"
            window.grab().save(str(path))
            print(path)
        window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
