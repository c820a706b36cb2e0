"""Models, Privacy and Settings pages in the real window, on a real profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox

TIMEOUT = 120_000


def test_add_a_broken_gguf_and_see_the_error(qtbot: Any, window: Any, tmp_path: Path, monkeypatch: Any) -> None:
    page = window.show_page("Models")
    broken = tmp_path / "not-a-model.gguf"
    broken.write_text("this is a text file, not a model\n", encoding="utf-8")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(broken), ""))
    before = page.table.rowCount()
    qtbot.mouseClick(page.add_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.banner.kind == "error", timeout=TIMEOUT)
    qtbot.waitUntil(page.add_button.isEnabled, timeout=TIMEOUT)
    assert page.banner.text.startswith("not-a-model.gguf was not added:")
    assert "GGUF" in page.banner.text or "gguf" in page.banner.text
    assert "Traceback" not in page.banner.text
    assert page.table.rowCount() == before
    assert page.library().models() == []


def test_add_validate_and_load_a_real_gguf(qtbot: Any, window: Any, tiny_gguf: Path) -> None:
    page = window.show_page("Models")
    with qtbot.waitSignal(page.models_changed, timeout=TIMEOUT):
        page.add_model(tiny_gguf)
    row = next(i for i, r in enumerate(page.rows) if r.name == tiny_gguf.stem)
    assert page.rows[row].status == "installed"
    # the label and the pool judge with one estimate: what the page says fits, the pool loads
    pool = window.session.assistant.pool
    assert page.table.item(row, 3).text() == "fits"
    assert page.rows[row].fit.need_bytes == pool.estimate(tiny_gguf).total_bytes
    assert page.table.item(row, 1).text() == "added by you"
    assert page.table.selectionModel().selectedRows()[0].row() == row
    qtbot.mouseClick(page.validate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "is valid" in page.banner.text, timeout=TIMEOUT)
    qtbot.mouseClick(page.load_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.table.item(row, 1).text().endswith("· loaded"), timeout=TIMEOUT)
    assert window.session.assistant.pool.is_loaded(tiny_gguf)
    with qtbot.waitSignal(page.refreshed, timeout=TIMEOUT):  # the list is read again off the GUI thread
        qtbot.mouseClick(page.unload_button, Qt.MouseButton.LeftButton)
    assert page.table.item(row, 1).text() == "added by you"
    assert not window.session.assistant.pool.is_loaded(tiny_gguf)


def test_fits_this_computer_names_the_budget_separately(qtbot: Any, window: Any, monkeypatch: Any) -> None:
    """On a 24 GB computer Qwen2.5 3B fits; only a 2 GB budget stops it, and the page says so."""
    from tara_desktop.llm import memory

    machine = memory.Machine(available_ram_bytes=20 * memory.GB, total_ram_bytes=24 * memory.GB,
                             free_disk_bytes=200 * memory.GB)
    monkeypatch.setattr(memory.Machine, "now", classmethod(lambda cls, models_dir=None: machine))
    assistant = window.session.assistant
    assistant.save_settings({"llm": {"memory_budget_mb": 2048}})
    page = window.show_page("Models")
    with qtbot.waitSignal(page.refreshed, timeout=TIMEOUT):
        page.refresh()
    qwen = next(i for i, r in enumerate(page.rows) if r.name == "qwen2.5-3b-instruct-q4_0")
    assert page.table.item(qwen, 3).text() == "fits this computer; over your 2.0 GB memory budget"
    assert "raise it in Settings" in page.table.item(qwen, 3).toolTip()
    summary = page.machine_label.text()
    assert "qwen2.5-3b-instruct-q4_0" in summary and "llama-3.2-1b-instruct-q4_0" not in summary
    assert "would fit this computer but not the memory budget: raise it in Settings" in summary
    assert "20.0 GB of 24.0 GB memory free" in page.machine_label.text()

    assistant.save_settings({"llm": {"memory_budget_mb": 0}})  # automatic: half of the 24 GB
    with qtbot.waitSignal(page.refreshed, timeout=TIMEOUT):
        page.refresh()
    assert page.table.item(qwen, 3).text() == "fits"
    assert "12.0 GB (automatic" in page.machine_label.text()
    huge = memory.Machine(available_ram_bytes=3 * memory.GB, total_ram_bytes=4 * memory.GB,
                          free_disk_bytes=200 * memory.GB)
    monkeypatch.setattr(memory.Machine, "now", classmethod(lambda cls, models_dir=None: huge))
    with qtbot.waitSignal(page.refreshed, timeout=TIMEOUT):
        page.refresh()
    big = next(i for i, r in enumerate(page.rows) if r.name == "llama-3.1-8b-instruct-q4_k_m")
    assert page.table.item(big, 3).text() == "won't fit this computer"


def test_export_and_delete_everything_from_the_privacy_page(
    qtbot: Any, window: Any, send: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    result = send("How can I lower my blood pressure naturally?")
    page = window.show_page("Privacy")
    assert page.where_form.rowCount() > 0
    out = tmp_path / "export.zip"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    with qtbot.waitSignal(page.exported, timeout=TIMEOUT):
        qtbot.mouseClick(page.export_button, Qt.MouseButton.LeftButton)
    assert out.exists() and out.stat().st_size > 0
    assert "Exported to" in page.banner.text

    asked: list[str] = []

    def confirm(_parent: Any, _title: str, text: str, *a: Any, **k: Any) -> Any:
        asked.append(text)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "warning", confirm)
    with qtbot.waitSignal(window.assistant_ready, timeout=TIMEOUT):  # a fresh, empty profile opens
        qtbot.mouseClick(page.delete_button, Qt.MouseButton.LeftButton)
    assert "permanently deletes all your conversations" in asked[0]
    assert "cannot be undone" in asked[0]
    store = window.session.assistant.profile.store
    assert store.list_conversations() == []
    assert window.conversations.list.count() == 0
    assert result.conversation_id is not None


def test_delete_everything_can_be_cancelled(qtbot: Any, window: Any, send: Any, monkeypatch: Any) -> None:
    send("What is cash flow?")
    page = window.show_page("Privacy")
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: QMessageBox.StandardButton.Cancel)
    qtbot.mouseClick(page.delete_button, Qt.MouseButton.LeftButton)
    assert len(window.session.assistant.profile.store.list_conversations()) == 1


def test_consent_toggles_and_audit_verify(qtbot: Any, window: Any) -> None:
    page = window.show_page("Privacy")
    profile = window.session.assistant.profile
    box = page.consent_boxes["record_voice"]
    was = bool(profile.consent.get("record_voice"))
    box.setChecked(not was)
    assert bool(profile.consent.get("record_voice")) is (not was)
    assert page.audit_table.rowCount() > 0
    qtbot.mouseClick(page.verify_button, Qt.MouseButton.LeftButton)
    assert page.verify_result.text().startswith("✓")


def test_settings_are_saved_in_the_profile(qtbot: Any, window: Any) -> None:
    page = window.show_page("Settings")
    page.theme_box.setCurrentIndex(page.theme_box.findData("dark"))
    page.font_size.setValue(13)
    page.memory.setValue(3072)
    page.threads.setValue(1)
    qtbot.mouseClick(page.apply_button, Qt.MouseButton.LeftButton)
    assert page.banner.kind == "info"
    from tara_desktop.assistant import SETTINGS_KEY

    saved = window.session.assistant.profile.store.get_setting(SETTINGS_KEY)
    assert saved["app"] == {"theme": "dark", "font_size": 13}
    assert saved["llm"] == {"memory_budget_mb": 3072, "threads": 1}
    assert window.session.assistant.configs.app.llm.memory_budget_mb == 3072


def test_edit_the_domain_to_model_mapping(qtbot: Any, window: Any, tiny_gguf: Path) -> None:
    from PySide6.QtWidgets import QComboBox

    from tara_desktop.model_mapping import MAPPING_KEY

    page = window.show_page("Models")
    page.tabs.setCurrentIndex(1)
    editor = page.mapping
    row = next(r for r in range(editor.table.rowCount()) if editor.table.cellWidget(r, 0).text() == "Technical")
    model_box = editor.table.cellWidget(row, 1)
    assert isinstance(model_box, QComboBox)
    model_box.setCurrentText(str(tiny_gguf))
    qtbot.mouseClick(editor.save_button, Qt.MouseButton.LeftButton)
    assistant = window.session.assistant
    assert assistant.profile.store.get_setting(MAPPING_KEY)["technical"]["model"] == str(tiny_gguf)
    assert assistant.configs.mapping.for_domain("technical").model == str(tiny_gguf)
    assert assistant.router.mapping.for_domain("technical").model == str(tiny_gguf)
    assert "saved" in page.banner.text
