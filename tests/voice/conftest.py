"""Voice test helpers: real speech from espeak-ng, the shipped tiny SpeechBrain models."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = PROJECT_ROOT / "models" / "voice"

Speak = Callable[..., tuple[np.ndarray, int]]


def espeak_wav(path: Path, text: str, *, voice: str = "en-us", wpm: int = 160, pitch: int = 50,
               amplitude: int = 100) -> Path:
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed; run scripts/setup")
    subprocess.run([exe, "-v", voice, "-s", str(wpm), "-p", str(pitch), "-a", str(amplitude), "-w", str(path),
                    text], check=True, capture_output=True)
    return path


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
def asr_model_dir() -> Path:
    folder = SHIPPED / "asr"
    if not (folder / "hyperparams.yaml").exists():
        pytest.fail("models/voice/asr is missing; run scripts/make_voice_models.py")
    return folder


@pytest.fixture(scope="session")
def emotion_model_dir() -> Path:
    folder = SHIPPED / "emotion"
    if not (folder / "hyperparams.yaml").exists():
        pytest.fail("models/voice/emotion is missing; run scripts/make_voice_models.py")
    return folder


@pytest.fixture(scope="session")
def recognizer(asr_model_dir: Path):  # type: ignore[no-untyped-def]
    from tara_desktop.voice.asr import SpeechRecognizer

    rec = SpeechRecognizer(asr_model_dir)
    assert rec.warm_up() == "speechbrain", rec.primary_error
    return rec


@pytest.fixture(scope="session")
def detector(emotion_model_dir: Path):  # type: ignore[no-untyped-def]
    from tara_desktop.voice.emotion import EmotionDetector

    det = EmotionDetector(emotion_model_dir)
    assert det.warm_up() == "speechbrain", det.primary_error
    return det


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread() -> object:
    """The tiny voice models run as fast on one thread, and two threads thrash on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield None
    torch.set_num_threads(before)
