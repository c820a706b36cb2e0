"""The Training tab starts a real LoRA job in a child process, plots its loss live, and cancels it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt

TIMEOUT = 240_000


def _dataset(path: Path) -> Path:
    rows = [
        {"prompt": f"What is {a} plus {b}?", "response": f"{a} plus {b} is {a + b}."}
        for a in range(1, 9) for b in range(1, 6)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_start_watch_the_plot_and_cancel(qtbot: Any, window: Any, tmp_path: Path) -> None:
    from tests.support.tiny_base import build_tiny_base

    base = build_tiny_base(tmp_path / "base")
    tab = window.show_page("Training")
    tab.base_edit.setText(str(base))
    tab.data_edit.setText(str(_dataset(tmp_path / "sums.jsonl")))
    tab.max_steps.setValue(400)
    qtbot.mouseClick(tab.start_button, Qt.MouseButton.LeftButton)
    assert tab.job is not None and tab.cancel_button.isEnabled() and not tab.start_button.isEnabled()
    qtbot.waitUntil(lambda: len(tab.monitor.steps) >= 2, timeout=TIMEOUT)  # the curve is drawn live
    xs, ys = tab.monitor.train_curve.getData()
    assert xs is not None and len(xs) >= 2 and all(y > 0 for y in ys)
    assert tab.monitor.values["step"].text().endswith("/ 400")
    assert tab.monitor.values["tokens_per_s"].text() != "–"
    qtbot.mouseClick(tab.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tab.job is None, timeout=TIMEOUT)
    assert "stopped" in tab.banner.text.lower()
    assert tab.start_button.isEnabled()
    # the stopped job is offered for resuming
    assert tab.resume_banner.isVisibleTo(tab)
    assert "can resume" in tab.resume_label.text()


def test_the_tab_refuses_to_start_without_inputs(qtbot: Any, window: Any) -> None:
    tab = window.show_page("Training")
    qtbot.mouseClick(tab.start_button, Qt.MouseButton.LeftButton)
    assert tab.job is None
    assert tab.banner.kind == "error" and "base model" in tab.banner.text
