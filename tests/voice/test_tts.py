"""Speech synthesis: Edge TTS is unreachable here (the real offline path), pyttsx3 takes over, the circuit
breaker stops paying Edge's timeout on every sentence, and every result names its engine."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from tara_desktop.voice.audio import rms_dbfs
from tara_desktop.voice.tts import (
    CircuitBreaker,
    EdgeTts,
    EspeakTts,
    Pyttsx3Tts,
    SpeechSynthesizer,
    TtsError,
    TtsUnavailable,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def hanging_proxy() -> Iterator[str]:
    """A local proxy that accepts connections and never answers: Edge TTS must hit its timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(server.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    t.join()
    for c in conns:
        c.close()
    server.close()


def assert_speech(audio: np.ndarray, sr: int, min_seconds: float = 0.3) -> None:
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert audio.size / sr > min_seconds
    assert rms_dbfs(audio) > -40  # not silent


def test_pyttsx3_speaks_headless() -> None:
    audio, sr = Pyttsx3Tts().synthesize("Hello, this is TARA speaking.", None)
    assert_speech(audio, sr)


def test_espeak_engine_streams_wav_without_files() -> None:
    audio, sr = EspeakTts().synthesize("The second fallback works too.", None)
    assert_speech(audio, sr)


def test_edge_tts_unreachable_is_reported_as_unavailable() -> None:
    with pytest.raises(TtsUnavailable):
        EdgeTts(timeout_s=3.0).synthesize("Hello.", "en-US-AvaNeural")


def test_edge_tts_that_hangs_times_out(hanging_proxy: str) -> None:
    with pytest.raises(TtsUnavailable, match=r"no answer within 0.5 s|ProxyError|Timeout|ClientHttpProxyError"):
        EdgeTts(timeout_s=0.5, proxy=hanging_proxy).synthesize("Hello.", "en-US-AvaNeural")


def test_fallback_speaks_the_same_sentence_and_the_breaker_stops_retrying() -> None:
    clock = Clock()
    edge = EdgeTts(timeout_s=3.0)
    synth = SpeechSynthesizer(edge=edge, fallbacks=[Pyttsx3Tts()], breaker=CircuitBreaker(300.0, clock))

    first = synth.speak("The first sentence.", "en-US-GuyNeural")
    assert first.engine == "pyttsx3"
    assert first.fallback_reason is not None and first.fallback_reason.startswith("edge-tts:")
    assert synth.breaker.is_open and synth.breaker.failures == 1
    assert_speech(first.audio, first.sample_rate)

    second = synth.speak("The second sentence.", "en-US-GuyNeural")
    assert second.engine == "pyttsx3"
    assert second.fallback_reason == "edge-tts: skipped after a recent failure"
    assert synth.breaker.failures == 1  # Edge was not tried again

    clock.now += 301  # the retry window has passed: Edge is tried (and fails) once more
    third = synth.speak("The third sentence.", None)
    assert third.engine == "pyttsx3" and synth.breaker.failures == 2
    assert third.fallback_reason is not None and "skipped" not in third.fallback_reason


def test_breaker_closes_after_a_success() -> None:
    clock = Clock()
    b = CircuitBreaker(10.0, clock)
    assert b.allow()
    b.record_failure()
    assert not b.allow()
    clock.now += 10.0
    assert b.allow()
    b.record_success()
    assert b.allow() and not b.is_open


def test_when_pyttsx3_fails_espeak_speaks(monkeypatch: pytest.MonkeyPatch) -> None:
    import pyttsx3

    def broken_init(*a: object, **k: object) -> None:
        raise RuntimeError("no driver")

    monkeypatch.setattr(pyttsx3, "init", broken_init)
    synth = SpeechSynthesizer(edge=None, fallbacks=[Pyttsx3Tts(), EspeakTts()])
    out = synth.speak("Still speaking.")
    assert out.engine == "espeak-ng"
    assert out.fallback_reason == "pyttsx3: pyttsx3 failed (RuntimeError)"
    assert_speech(out.audio, out.sample_rate)


def test_no_engine_at_all_is_a_clear_error() -> None:
    synth = SpeechSynthesizer(edge=None, fallbacks=[EspeakTts(executables=["no-such-espeak"])])
    with pytest.raises(TtsError, match="no speech engine could speak"):
        synth.speak("Hello.")
    with pytest.raises(TtsError, match="no text to speak"):
        synth.speak("   ")


def test_wav_bytes_of_a_result() -> None:
    out = SpeechSynthesizer(edge=None, fallbacks=[EspeakTts()]).speak("Bytes please.")
    data = out.wav()
    assert data[:4] == b"RIFF" and len(data) > 1000
