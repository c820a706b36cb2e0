"""The Settings switch runs the same server inside the app: status, port, copy-token, content-free log."""

from __future__ import annotations

import socket
from typing import Any

import openai
import pytest

from tara_desktop.assistant import Assistant

pytest.importorskip("pytestqt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_switch_serves_copies_the_token_and_logs_without_content(qtbot: Any, api_assistant: Assistant) -> None:
    from PySide6.QtWidgets import QApplication

    from tara_desktop.ui.server_panel import ServerPanel

    panel = ServerPanel()
    qtbot.addWidget(panel)
    panel.set_assistant(api_assistant)
    port = _free_port()
    panel.port.setValue(port)
    try:
        with qtbot.waitSignal(panel.status_changed, timeout=30_000, check_params_cb=lambda s: s == "running"):
            panel.enabled.setChecked(True)
        assert panel.status == "running" and f"127.0.0.1:{port}" in panel.status_label.text()
        assert not panel.port.isEnabled()

        panel.copy_button.click()
        token = QApplication.clipboard().text()
        assert token == panel.token() and token.startswith("tara-")

        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=token, max_retries=0, timeout=300)
        canary = "panel-canary-51c2"
        client.chat.completions.create(model="tara", messages=[{"role": "user", "content": canary}], max_tokens=2)
        qtbot.waitUntil(lambda: panel.log_view.count() >= 1, timeout=10_000)
        lines = [panel.log_view.item(i).text() for i in range(panel.log_view.count())]
        assert any("POST /v1/chat/completions 200" in line for line in lines)
        assert not [line for line in lines if canary in line]

        with qtbot.waitSignal(panel.status_changed, timeout=30_000, check_params_cb=lambda s: s == "stopped"):
            panel.enabled.setChecked(False)
        assert panel.server is None and panel.port.isEnabled()
        with pytest.raises(openai.APIConnectionError):
            client.models.list()
    finally:
        panel.shutdown()


def test_a_port_in_use_shows_an_error_and_leaves_the_switch_off(qtbot: Any, api_assistant: Assistant) -> None:
    from tara_desktop.ui.server_panel import ServerPanel

    panel = ServerPanel()
    qtbot.addWidget(panel)
    panel.set_assistant(api_assistant)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        panel.port.setValue(int(busy.getsockname()[1]))
        with qtbot.waitSignal(panel.status_changed, timeout=30_000, check_params_cb=lambda s: s == "error"):
            panel.enabled.setChecked(True)
    assert "in use" in panel.status_label.text() and not panel.enabled.isChecked() and panel.server is None
    panel.shutdown()
