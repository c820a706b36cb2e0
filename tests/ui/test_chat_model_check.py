"""On start, a missing or broken bundled chat model is a message (banner + a box offering the catalog),
never a traceback; a working one shows nothing."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtWidgets import QMessageBox


def test_a_working_bundled_model_shows_nothing(qtbot: Any, window: Any) -> None:
    from tara_desktop.ui.app import check_chat_model

    assert check_chat_model(window, window.session.assistant) is None
    assert window.findChild(QMessageBox, "chatModelMissing") is None


def test_a_missing_bundled_model_says_so_and_offers_the_catalog(qtbot: Any, window: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from tara_desktop.llm import library
    from tara_desktop.ui.app import check_chat_model

    monkeypatch.setattr(library, "bundled_file", lambda entry, models_dir=None: None)
    problem = check_chat_model(window, window.session.assistant)
    assert problem is not None and "SmolLM2-135M-Instruct.Q4_1.gguf is missing" in problem
    assert window.chat.banner.kind == "error" and "reinstall TARA" in window.chat.banner.text
    box = window.findChild(QMessageBox, "chatModelMissing")
    assert box is not None and box.isVisible() and "SmolLM2" in box.text()
    catalog = next(b for b in box.buttons() if "catalog" in b.text().lower())
    catalog.click()
    qtbot.waitUntil(lambda: not box.isVisible())
    from tara_desktop.ui.main_window import PAGES

    assert window.nav.currentRow() == PAGES.index("Models")
