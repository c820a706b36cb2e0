"""Audio I/O and devices: bad files give one clear error, odd formats are converted, no device is a clear error."""

from __future__ import annotations

import os
import threading
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tara_desktop.voice import audio as A
from tara_desktop.voice.audio import AudioDeviceError, AudioError


def tone(sr: int, seconds: float, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_wav_round_trip_is_atomic_and_16_bit(tmp_path: Path) -> None:
    out = A.write_wav(tmp_path / "a.wav", tone(16000, 0.5), 16000)
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]  # no temp file left behind
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    back, sr = A.read_wav(out)
    assert sr == 16000 and back.shape == (8000,)
    assert np.max(np.abs(back - tone(16000, 0.5))) < 1e-3


def test_write_wav_keeps_the_old_file_when_the_folder_is_missing(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="folder not found"):
        A.write_wav(tmp_path / "nope" / "a.wav", tone(16000, 0.1), 16000)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: None, "file not found"),
        (lambda p: p.write_bytes(b""), "file is empty"),
        (lambda p: p.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage" + os.urandom(64)), "not a readable audio"),
        (lambda p: p.write_text("hello, I am a text file"), "not a readable audio"),
    ],
    ids=["missing", "empty", "corrupt-header", "text"],
)
def test_bad_files_raise_one_clear_error(tmp_path: Path, make, match: str) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "bad.wav"
    make(p)
    with pytest.raises(AudioError, match=match) as info:
        A.read_wav(p)
    assert "\n" not in str(info.value)


def test_a_wav_header_with_no_samples_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "zero.wav"
    with wave.open(str(p), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    with pytest.raises(AudioError, match="no audio samples"):
        A.read_wav(p)


def test_truncated_wav_still_reads_what_is_there(tmp_path: Path) -> None:
    p = A.write_wav(tmp_path / "t.wav", tone(16000, 1.0), 16000)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    audio, sr = A.read_wav(p)
    assert sr == 16000 and 0 < audio.size <= 16000


def test_stereo_8khz_int16_becomes_16khz_mono(tmp_path: Path) -> None:
    left = tone(8000, 1.0, 300)
    stereo = np.stack([left, left], axis=1)
    p = tmp_path / "s.wav"
    sf.write(str(p), stereo, 8000, subtype="PCM_16")
    audio, sr = A.read_wav(p)
    speech = A.prepare_speech(audio, sr)
    assert speech.sample_rate == 16000 and speech.audio.shape == (16000,)
    assert abs(speech.level_dbfs - A.rms_dbfs(left)) < 0.5
    # the 300 Hz tone survives resampling at the right frequency
    spectrum = np.abs(np.fft.rfft(speech.audio))
    assert abs(np.argmax(spectrum) * 16000 / speech.audio.size - 300) < 2


def test_to_mono_scales_integer_pcm() -> None:
    assert np.allclose(A.to_mono(np.array([0, 16384, -32768], dtype=np.int16)), [0, 0.5, -1.0])
    assert np.allclose(A.to_mono(np.array([128, 255, 0], dtype=np.uint8)), [0, 127 / 128, -1.0])
    with pytest.raises(AudioError):
        A.to_mono(np.zeros((2, 2, 2)))


def test_prepare_speech_flags_silence_and_clipping_and_refuses_empty_or_too_long() -> None:
    silent = A.prepare_speech(np.zeros(16000, dtype=np.float32), 16000)
    assert silent.silent and not silent.clipped
    loud = A.prepare_speech(np.clip(tone(16000, 1.0, amp=5.0), -1, 1), 16000)
    assert loud.clipped and not loud.silent
    with pytest.raises(AudioError, match="empty"):
        A.prepare_speech(np.zeros(0, dtype=np.float32), 16000)
    ten_minutes = np.zeros(600 * 8000, dtype=np.float32)
    with pytest.raises(AudioError, match="600 s long"):
        A.prepare_speech(ten_minutes, 8000)
    with pytest.raises(AudioError, match="sample rate"):
        A.prepare_speech(np.zeros(100, dtype=np.float32), 100)


def test_nan_and_inf_samples_are_sanitised() -> None:
    x = np.array([np.nan, np.inf, -np.inf, 0.25], dtype=np.float32)
    assert np.allclose(A.to_mono(x), [0, 1, -1, 0.25])


def test_levels() -> None:
    assert A.rms_dbfs(np.zeros(10)) == -120.0
    assert abs(A.rms_dbfs(tone(16000, 1.0, amp=1.0)) + 3.01) < 0.05


def test_ring_buffer_keeps_the_most_recent_samples_across_threads() -> None:
    ring = A.RingBuffer(1000)
    blocks = [np.full(37, i, dtype=np.float32) for i in range(100)]

    def writer(bs: list[np.ndarray]) -> None:
        for b in bs:
            ring.write(b)

    t = threading.Thread(target=writer, args=(blocks,))
    t.start()
    t.join()
    data = ring.read_all()
    assert data.size == 1000 and len(ring) == 1000
    assert np.array_equal(data, np.concatenate(blocks)[-1000:])
    ring.write(np.arange(5000, dtype=np.float32))
    assert np.array_equal(ring.read_all(), np.arange(4000, 5000, dtype=np.float32))
    ring.clear()
    assert ring.read_all().size == 0


def test_no_microphone_is_a_clear_error_not_a_crash() -> None:
    # This machine has no sound card: PortAudio lists no device (or is missing entirely).
    mic = A.Microphone()
    with pytest.raises(AudioDeviceError, match=r"no microphone was found|audio devices are unavailable") as info:
        mic.start()
    assert "\n" not in str(info.value)
    assert not mic.active
    assert mic.stop().size == 0
    with pytest.raises(AudioDeviceError, match=r"no speaker was found|audio devices are unavailable"):
        A.Player().play(tone(16000, 0.1), 16000)


def test_missing_portaudio_is_reported_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_portaudio(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(__import__("sys").modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    with pytest.raises(AudioDeviceError, match="PortAudio"):
        A.input_devices()
