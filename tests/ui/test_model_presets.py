"""The Models page shows a model's recommended generation settings and lets the user override them per model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt

TIMEOUT = 120_000
BUNDLED = "smollm2-135m-instruct"


def test_override_a_models_settings_and_reset_them(qtbot: Any, window: Any) -> None:
    from tara_desktop.llm import presets
    from tara_desktop.llm.catalog import load_catalog

    page = window.show_page("Models")
    with qtbot.waitSignal(page.refreshed, timeout=TIMEOUT):  # the list is read off the GUI thread
        page.refresh()
    row = next(i for i, r in enumerate(page.rows) if r.catalog_id == BUNDLED)
    page.table.selectRow(row)
    entry = load_catalog().get(BUNDLED)
    assert entry.preset is not None and entry.preset.temperature is not None
    model = page.rows[row].path or Path(entry.file)
    assistant = window.session.assistant
    store, llm = assistant.profile.store, assistant.configs.app.llm

    # the recommended settings are the catalog preset, shown and filled in
    assert page.preset_box.isEnabled()
    assert f"temperature {entry.preset.temperature}" in page.preset_label.text()
    assert "The recommended settings are in use." in page.preset_label.text()
    assert page.preset_fields["temperature"].value() == entry.preset.temperature
    assert not page.preset_reset_button.isEnabled()

    page.preset_fields["temperature"].setValue(1.25)
    page.preset_fields["top_k"].setValue(7)
    page.preset_fields["max_tokens"].setValue(123)
    qtbot.mouseClick(page.preset_save_button, Qt.MouseButton.LeftButton)
    mine = presets.generation_settings(model, llm, store)
    assert (mine.temperature, mine.top_k, mine.max_tokens) == (1.25, 7, 123)
    assert mine.top_p == entry.preset.top_p  # the fields not changed keep the recommended values
    assert presets.user_settings(store, presets.model_key(model)) is not None
    assert "Your own settings for this model are in use." in page.preset_label.text()
    assert page.preset_reset_button.isEnabled()

    qtbot.mouseClick(page.preset_reset_button, Qt.MouseButton.LeftButton)
    back = presets.generation_settings(model, llm, store)
    assert back == presets.generation_settings(model, llm)
    assert back.temperature == entry.preset.temperature and back.max_tokens == entry.preset.max_tokens
    assert presets.user_settings(store, presets.model_key(model)) is None
    assert page.preset_fields["temperature"].value() == entry.preset.temperature


def test_adding_a_gguf_without_weights_says_it_is_no_model(qtbot: Any, window: Any, tmp_path: Path) -> None:
    """(#13 bad input) A GGUF with only metadata is refused with the file's name and what to do."""
    from tests.llm.test_not_a_chat_model import GOOD_TEMPLATE, _gguf

    page = window.show_page("Models")
    path = _gguf(tmp_path / "header-only.gguf", "llama", tensors=False, chat_template=GOOD_TEMPLATE)
    page.add_model(path)
    qtbot.waitUntil(lambda: page.banner.kind == "error", timeout=TIMEOUT)
    qtbot.waitUntil(page.add_button.isEnabled, timeout=TIMEOUT)
    assert page.banner.text.startswith("header-only.gguf was not added: header-only.gguf holds only metadata")
    assert "Traceback" not in page.banner.text
    assert page.library().models() == []
