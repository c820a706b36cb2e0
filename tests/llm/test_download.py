"""Downloads against a real HTTP server on 127.0.0.1: full, resumed after a dropped connection, wrong
checksum, cancel and resume, 404, a server that ignores ranges, and nobody listening."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tara_desktop.jobs import Cancelled, JobState
from tara_desktop.llm import download as dl
from tara_desktop.llm.download import DownloadError, download, part_path

from .gguf_corpus import write_valid_gguf


@dataclass
class ServerState:
    payload: bytes = b""
    drop_after: list[int] = field(default_factory=list)  # per request: close after this many body bytes
    ignore_range: bool = False
    requests: list[str | None] = field(default_factory=list)  # the Range header of each GET


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        st = self.server.st
        st.requests.append(self.headers.get("Range"))
        if self.path != "/model.gguf":
            body = b"<html>not found</html>"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        data = st.payload
        start = 0
        rng = self.headers.get("Range")
        if rng and not st.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if st.drop_after:
            cut = st.drop_after.pop(0)
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    st: ServerState


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, ServerState]]:
    st = ServerState(payload=write_valid_gguf(tmp_path / "src.gguf").read_bytes())
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.st = st
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", st
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(10)


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dl, "CHUNK", 1024)


def test_full_download_is_checked_and_moved_into_place(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, st = server
    reports: list[tuple[float | None, str]] = []
    dest = tmp_path / "models" / "m.gguf"
    digest = hashlib.sha256(st.payload).hexdigest()
    out = download(f"{base}/model.gguf", dest, sha256=digest, state=JobState(lambda f, m: reports.append((f, m))))
    assert out == dest and dest.read_bytes() == st.payload
    assert not part_path(dest).exists()
    fractions = [f for f, _m in reports if f is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("downloading m.gguf" in m for _f, m in reports)
    assert st.requests == [None]


def test_resumes_after_the_server_drops_the_connection(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, st = server
    st.drop_after = [10_000, 7_000]  # the first two responses stop midway
    dest = tmp_path / "m.gguf"
    download(f"{base}/model.gguf", dest, sha256=hashlib.sha256(st.payload).hexdigest(), state=JobState(), retry_delay=0)
    assert dest.read_bytes() == st.payload
    assert st.requests == [None, "bytes=10000-", "bytes=17000-"]


def test_wrong_checksum_deletes_the_part_and_says_so(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, _st = server
    dest = tmp_path / "m.gguf"
    with pytest.raises(DownloadError, match=r"has sha256 [0-9a-f]{64} but 0{64} was expected: .*deleted, try again"):
        download(f"{base}/model.gguf", dest, sha256="0" * 64, state=JobState())
    assert not dest.exists() and not part_path(dest).exists()


def test_cancel_keeps_the_part_and_the_next_attempt_resumes(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, st = server
    dest = tmp_path / "m.gguf"
    state = JobState()

    def on_progress(fraction: float | None, _message: str) -> None:
        if fraction is not None and fraction > 0.3:
            state.cancel()

    state = JobState(on_progress)
    with pytest.raises(Cancelled):
        download(f"{base}/model.gguf", dest, state=state)
    kept = part_path(dest).stat().st_size
    assert 0 < kept < len(st.payload)
    assert not dest.exists()
    download(f"{base}/model.gguf", dest, sha256=hashlib.sha256(st.payload).hexdigest(), state=JobState())
    assert dest.read_bytes() == st.payload
    assert st.requests == [None, f"bytes={kept}-"]


def test_a_server_that_ignores_ranges_restarts_cleanly(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, st = server
    st.ignore_range = True
    st.drop_after = [5_000]
    dest = tmp_path / "m.gguf"
    download(f"{base}/model.gguf", dest, sha256=hashlib.sha256(st.payload).hexdigest(), state=JobState(), retry_delay=0)
    assert dest.read_bytes() == st.payload


def test_a_complete_part_is_finished_without_downloading_again(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, st = server
    dest = tmp_path / "m.gguf"
    part_path(dest).write_bytes(st.payload)
    download(f"{base}/model.gguf", dest, state=JobState())
    assert dest.read_bytes() == st.payload
    assert st.requests == [f"bytes={len(st.payload)}-"]


def test_404_is_a_clear_error_and_leaves_nothing(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, _st = server
    dest = tmp_path / "m.gguf"
    with pytest.raises(DownloadError, match=r"the server has no file at .*/missing.gguf \(HTTP 404\)"):
        download(f"{base}/missing.gguf", dest, state=JobState())
    assert list(tmp_path.iterdir()) == [tmp_path / "src.gguf"]


def test_a_file_that_is_not_gguf_is_rejected_after_download(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, st = server
    st.payload = b"<html>please log in</html>" * 10
    dest = tmp_path / "m.gguf"
    with pytest.raises(DownloadError, match=r"is not a usable GGUF model .*web page"):
        download(f"{base}/model.gguf", dest, state=JobState())
    assert not dest.exists() and not part_path(dest).exists()


def test_nobody_listening_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=r"cannot reach 127.0.0.1 .*check the internet connection"):
        download(f"http://127.0.0.1:{port}/model.gguf", tmp_path / "m.gguf", state=JobState())
    assert not (tmp_path / "m.gguf.part").exists()


def test_existing_destination_is_never_overwritten(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, _st = server
    dest = tmp_path / "m.gguf"
    dest.write_bytes(b"mine")
    with pytest.raises(DownloadError, match=r"already exists"):
        download(f"{base}/model.gguf", dest, state=JobState())
    assert dest.read_bytes() == b"mine"


def test_nobody_listening_is_reported_as_unreachable(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(dl.Unreachable, match=r"cannot reach 127\.0\.0\.1"):
        download(f"http://127.0.0.1:{port}/model.gguf", tmp_path / "m.gguf", state=JobState())


def test_a_file_larger_than_the_free_disk_is_refused_before_writing(
    server: tuple[str, ServerState], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, st = server
    monkeypatch.setattr(dl, "free_disk_bytes", lambda folder: len(st.payload) - 1)
    dest = tmp_path / "m.gguf"
    with pytest.raises(DownloadError, match=r"needs .* more disk space but only .* are free .*free some space"):
        download(f"{base}/model.gguf", dest, state=JobState())
    assert not dest.exists() and not part_path(dest).exists()
    monkeypatch.setattr(dl, "free_disk_bytes", lambda folder: len(st.payload))
    assert download(f"{base}/model.gguf", dest, state=JobState()).read_bytes() == st.payload


def test_download_catalog_model_downloads_registers_and_is_idempotent(
    server: tuple[str, ServerState], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tara_desktop.llm.catalog import CatalogModel
    from tara_desktop.llm.library import ModelLibrary
    from tara_desktop.profile import Profile

    base, st = server
    entry = CatalogModel(id="small", name="Small", file="small.gguf", architecture="llama", parameters="1M",
                         quantization="Q8_0", size_bytes=len(st.payload), sha256=hashlib.sha256(st.payload).hexdigest(),
                         license="MIT", domains=["general"], source=f"{base}/model.gguf")
    models = tmp_path / "models"
    with Profile.open(tmp_path / "profile") as profile:
        library = ModelLibrary(profile)
        monkeypatch.setattr(dl, "free_disk_bytes", lambda folder: 10)  # known size, too little disk: no request
        with pytest.raises(DownloadError, match="more disk space"):
            dl.download_catalog_model(entry, models, library, state=JobState())
        assert st.requests == [] and library.models() == []
        monkeypatch.undo()
        model, status = dl.download_catalog_model(entry, models, library, state=JobState())
        assert status == "downloaded" and model.name == "small" and model.origin == "downloaded"
        assert (models / "small.gguf").read_bytes() == st.payload
        again, status = dl.download_catalog_model(entry, models, library, state=JobState())
        assert status == "already" and again == model and len(st.requests) == 1
        library.remove("small")  # the file stays: registering it again needs no download
        back, status = dl.download_catalog_model(entry, models, library, state=JobState())
        assert status == "registered" and back.name == "small" and len(st.requests) == 1
        bundled = entry.model_copy(update={"bundled": True})
        with pytest.raises(DownloadError, match="ships with TARA"):
            dl.download_catalog_model(bundled, models, library, state=JobState())
