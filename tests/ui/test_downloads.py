"""Download a catalog model from the Models page: progress, cancel, resume — against a real local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from PySide6.QtCore import Qt

TIMEOUT = 120_000


class _SlowFileHandler(http.server.BaseHTTPRequestHandler):
    """Serves one file and honours ``Range: bytes=N-`` (so a download resumes). The first, whole-file
    request stops after ``HOLD_AT`` bytes until the test says ``proceed``, then the connection drops —
    so the test can press Cancel while the download is certainly in the middle."""

    HOLD_AT = 256 * 1024 + 8192
    data = b""
    ranges: ClassVar[list[int]] = []
    proceed = threading.Event()

    def do_GET(self) -> None:
        start = 0
        header = self.headers.get("Range")
        if header and header.startswith("bytes="):
            start = int(header[6:].split("-")[0])
            type(self).ranges.append(start)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(self.data) - 1}/{len(self.data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(self.data) - start))
        self.end_headers()
        try:
            if start == 0:
                self.wfile.write(self.data[: self.HOLD_AT])
                self.wfile.flush()
                self.proceed.wait(60)
                return  # the connection drops mid-file
            self.wfile.write(self.data[start:])
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: Any) -> None:
        pass


BUILTIN = {
    "id": "builtin", "name": "Built-in Mini", "file": "builtin-mini.gguf", "bundled": True, "architecture": "llama",
    "parameters": "135M", "quantization": "Q4_1", "license": "Apache-2.0", "domains": ["general"],
    "notes": "Fluent for short everyday answers. Weak on facts and numbers. Download a larger model below.",
}


@pytest.fixture
def catalog_server(tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[bytes]:
    from tara_desktop import paths

    data = tiny_gguf.read_bytes()
    _SlowFileHandler.data = data
    _SlowFileHandler.ranges = []
    _SlowFileHandler.proceed = threading.Event()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowFileHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    models = tmp_path / "install-models"
    models.mkdir()
    entry = {
        "id": "tiny-chat", "name": "Tiny chat model", "file": "tiny-chat.gguf", "architecture": "llama",
        "parameters": "tiny", "quantization": "F32", "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(), "ram_mb": 64, "license": "Apache-2.0",
        "domains": ["general"], "source": f"http://127.0.0.1:{server.server_port}/tiny-chat.gguf",
    }
    (models / "catalog.yaml").write_text(yaml.safe_dump({"models": [BUILTIN, entry]}), encoding="utf-8")
    monkeypatch.setattr(paths, "bundled_models_dir", lambda: models)
    yield data
    _SlowFileHandler.proceed.set()
    server.shutdown()
    server.server_close()


def test_download_shows_progress_can_be_cancelled_and_resumes(qtbot: Any, window: Any,
                                                               catalog_server: bytes) -> None:
    page = window.show_page("Models")
    with qtbot.waitSignal(page.refreshed, timeout=TIMEOUT):
        page.refresh()
    row = next(i for i, r in enumerate(page.rows) if r.name == "tiny-chat")
    assert page.rows[row].status == "available"
    assert page.table.item(row, 1).text() == "in the catalog"
    page.table.selectRow(row)
    qtbot.mouseClick(page.download_button, Qt.MouseButton.LeftButton)
    assert page.progress.isVisible() and page.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: page.progress.value() > 0, timeout=TIMEOUT)
    qtbot.mouseClick(page.cancel_button, Qt.MouseButton.LeftButton)
    _SlowFileHandler.proceed.set()
    qtbot.waitUntil(lambda: page.download_job is None, timeout=TIMEOUT)
    assert "paused" in page.banner.text
    dest = Path(window.session.assistant.profile_dir) / "models" / "tiny-chat.gguf"
    assert not dest.exists()

    page.table.selectRow(row)
    with qtbot.waitSignal(page.models_changed, timeout=TIMEOUT):
        qtbot.mouseClick(page.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.download_job is None, timeout=TIMEOUT)
    assert _SlowFileHandler.ranges and _SlowFileHandler.ranges[0] > 0  # it resumed, not restarted
    assert dest.read_bytes() == catalog_server
    row = next(i for i, r in enumerate(page.rows) if r.name == "tiny-chat")
    assert page.rows[row].status == "installed"
    assert "valid and was added" in page.banner.text


def _welcome_model_page(qtbot: Any, window: Any) -> Any:
    from tara_desktop.ui.welcome import WelcomeWizard

    wizard = WelcomeWizard(window.session, window)
    qtbot.addWidget(wizard)
    wizard.show()
    while wizard.currentId() != wizard.pageIds()[-1]:
        wizard.next()
    return wizard


def test_welcome_recommends_a_model_that_fits_and_downloads_it(qtbot: Any, window: Any,
                                                                catalog_server: bytes) -> None:
    """First run: the catalog model that fits this computer is recommended; one click downloads it (with a
    dropped connection resumed), checks its sha256, adds it and makes it answer; cancel pauses."""
    wizard = _welcome_model_page(qtbot, window)
    assert "Built-in Mini (135M parameters)" in wizard.bundled_label.text()
    assert "memory free" in wizard.machine_label.text()
    assert wizard.model_list.topLevelItemCount() == 1
    item = wizard.model_list.topLevelItem(0)
    assert item.text(0) == "tiny-chat" and item.text(3) == "fits — recommended"
    assert wizard.model_list.currentItem() is item and wizard.download_button.isEnabled()

    qtbot.mouseClick(wizard.download_button, Qt.MouseButton.LeftButton)
    assert wizard.download_progress.isVisible() and wizard.cancel_download_button.isEnabled()
    qtbot.waitUntil(lambda: wizard.download_progress.value() > 0, timeout=TIMEOUT)
    qtbot.mouseClick(wizard.cancel_download_button, Qt.MouseButton.LeftButton)
    _SlowFileHandler.proceed.set()
    qtbot.waitUntil(lambda: wizard.download_job is None, timeout=TIMEOUT)
    assert "paused" in wizard.download_status.text()

    qtbot.mouseClick(wizard.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: wizard.download_job is None, timeout=TIMEOUT)
    assert _SlowFileHandler.ranges and _SlowFileHandler.ranges[0] > 0  # resumed, not restarted
    assert "tiny-chat was downloaded, checked and added" in wizard.download_status.text()
    assistant = window.session.assistant
    dest = Path(assistant.profile_dir) / "models" / "tiny-chat.gguf"
    assert dest.read_bytes() == catalog_server
    from tara_desktop.llm.library import ModelLibrary

    (model,) = ModelLibrary(assistant.profile).models()
    assert model.name == "tiny-chat" and model.origin == "downloaded"
    assert assistant.mapping.default.model == "tiny-chat"
    assert assistant.model_for("tiny-chat") == dest.resolve()
    assert wizard.model_list.topLevelItemCount() == 0  # nothing left to download
    wizard.reject()


def test_welcome_offline_says_the_bundled_model_stays_in_use(qtbot: Any, window: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from tara_desktop import paths

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here: like having no connection
    models = tmp_path / "offline-models"
    models.mkdir()
    entry = {
        "id": "far-away", "name": "Far away model", "file": "far.gguf", "architecture": "llama",
        "parameters": "1B", "quantization": "Q4_0", "size_bytes": 4096, "license": "MIT",
        "domains": ["general"], "source": f"http://127.0.0.1:{port}/far.gguf",
    }
    (models / "catalog.yaml").write_text(yaml.safe_dump({"models": [BUILTIN, entry]}), encoding="utf-8")
    monkeypatch.setattr(paths, "bundled_models_dir", lambda: models)
    wizard = _welcome_model_page(qtbot, window)
    qtbot.mouseClick(wizard.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: wizard.download_job is None, timeout=TIMEOUT)
    status = wizard.download_status.text()
    assert wizard.offline and "could not connect" in status
    assert "keeps answering with Built-in Mini, which works offline" in status
    assert "Fluent for short everyday answers" in status and "below" not in status
    assert window.session.assistant.mapping_overrides() == {}
    wizard.reject()
