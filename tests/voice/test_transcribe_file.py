"""Bad and unusual audio files: a clear error or a correct transcript, never a traceback or a hang."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from tara_desktop.jobs import Cancelled, JobState
from tara_desktop.voice.asr import transcribe_file
from tara_desktop.voice.audio import AudioError, read_wav, resample

from .conftest import espeak_wav, wer

TEXT = "how can i sleep better at night"


@pytest.fixture
def spoken(tmp_path: Path) -> tuple[np.ndarray, int]:
    return read_wav(espeak_wav(tmp_path / "spoken.wav", TEXT, voice="en-gb-x-rp", wpm=150))


def test_eight_bit_unsigned_wav(tmp_path: Path, spoken: tuple[np.ndarray, int], recognizer) -> None:  # type: ignore[no-untyped-def]
    import soundfile as sf

    audio, sr = spoken
    path = tmp_path / "u8.wav"
    sf.write(str(path), audio, sr, subtype="PCM_U8")
    assert sf.info(str(path)).subtype == "PCM_U8"
    assert wer(TEXT, transcribe_file(path, recognizer=recognizer).text) <= 0.2


def test_48khz_stereo_wav(tmp_path: Path, spoken: tuple[np.ndarray, int], recognizer) -> None:  # type: ignore[no-untyped-def]
    import soundfile as sf

    audio, sr = spoken
    hi = resample(audio, sr, 48000)
    path = tmp_path / "stereo48.wav"
    sf.write(str(path), np.stack([hi, hi * 0.8], axis=1), 48000, subtype="PCM_24")
    result = transcribe_file(path, recognizer=recognizer)
    assert wer(TEXT, result.text) <= 0.2 and result.engine == "faster-whisper"


def test_mp3_renamed_to_wav_is_decoded(tmp_path: Path, spoken: tuple[np.ndarray, int], recognizer) -> None:  # type: ignore[no-untyped-def]
    import av

    audio, sr = spoken
    path = tmp_path / "really-an-mp3.wav"
    with av.open(str(path), "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=sr, layout="mono")
        frame = av.AudioFrame.from_ndarray((audio * 32767).astype(np.int16)[None], format="s16", layout="mono")
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    assert path.read_bytes()[:4] != b"RIFF"
    assert wer(TEXT, transcribe_file(path, recognizer=recognizer).text) <= 0.2


@pytest.mark.parametrize(("name", "data", "match"), [
    ("empty.wav", b"", "the file is empty"),
    ("garbage.wav", b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk" * 20, "not a readable audio file"),
    ("text.wav", b"this is a text file, not audio\n" * 50, "not a readable audio file"),
])
def test_empty_and_corrupt_files_are_one_clear_error(tmp_path: Path, recognizer, name: str, data: bytes,  # type: ignore[no-untyped-def]
                                                      match: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(AudioError, match=match):
        transcribe_file(path, recognizer=recognizer)


def test_silent_file_is_heard_as_nothing(tmp_path: Path, recognizer) -> None:  # type: ignore[no-untyped-def]
    import soundfile as sf

    path = tmp_path / "silence.wav"
    sf.write(str(path), np.zeros(16000 * 3, np.float32), 16000, subtype="PCM_16")
    result = transcribe_file(path, recognizer=recognizer)
    assert result.heard_nothing and result.text == "" and result.seconds == pytest.approx(3.0)


def _hour_long_wav(path: Path, speech: np.ndarray, sr: int, at_s: list[float], seconds: float) -> None:
    """An 8 kHz 16-bit WAV of ``seconds`` (mostly silence) with ``speech`` at the given times, written in
    blocks so the test never holds the hour in memory."""
    low = (resample(speech, sr, 8000) * 32767).astype("<i2")
    total = int(seconds * 8000)
    marks = sorted(int(t * 8000) for t in at_s)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        pos = 0
        for mark in [*marks, total]:
            while pos < mark:
                n = min(mark - pos, 8000 * 60)
                w.writeframes(np.zeros(n, "<i2").tobytes())
                pos += n
            if mark < total:
                w.writeframes(low.tobytes())
                pos += low.size


@pytest.mark.slow
def test_an_hour_long_file_is_transcribed_in_chunks_with_progress(tmp_path: Path, spoken: tuple[np.ndarray, int],  # type: ignore[no-untyped-def]
                                                                   recognizer) -> None:
    audio, sr = spoken
    path = tmp_path / "hour.wav"
    _hour_long_wav(path, audio, sr, [5.0, 59.0, 1800.0], 3600.0)  # one sentence across a chunk boundary
    reports: list[float] = []
    result = transcribe_file(path, recognizer=recognizer,
                             state=JobState(lambda f, m: reports.append(f) if f is not None else None))
    assert result.seconds == pytest.approx(3600.0, abs=2.0)
    assert wer(" ".join([TEXT] * 3), result.text) <= 0.15, result.text
    assert reports and reports == sorted(reports) and reports[-1] == pytest.approx(1.0, abs=0.01) and len(reports) > 30


def test_a_long_transcription_can_be_cancelled(tmp_path: Path, spoken: tuple[np.ndarray, int], recognizer) -> None:  # type: ignore[no-untyped-def]
    audio, sr = spoken
    path = tmp_path / "long.wav"
    _hour_long_wav(path, audio, sr, [1.0, 200.0, 400.0], 600.0)
    state = JobState()
    seen: list[float] = []

    def on_progress(fraction: float | None, message: str) -> None:
        if fraction is not None:
            seen.append(fraction)
            if fraction > 0.2:
                state.cancel()

    state = JobState(on_progress)
    with pytest.raises(Cancelled):
        transcribe_file(path, recognizer=recognizer, state=state)
    assert seen and max(seen) < 0.5


def test_cli_reads_the_same_files(tmp_path: Path, spoken: tuple[np.ndarray, int]) -> None:
    """`tara voice transcribe` on a corrupt file: exit 2 and one `error:` line, no traceback."""
    import sys

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"\x00\x01" * 100)
    proc = subprocess.run([sys.executable, "-m", "tara_desktop.cli", "voice", "transcribe", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in proc.stderr
