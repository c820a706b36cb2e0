"""Emotion that says what it is: a SpeechBrain model (built here in the layout of
speechbrain/emotion-recognition-wav2vec2-IEMOCAP) loads through its own interface and reports its engine; without
it the estimate is labelled prosody+words; the reply's tone follows only a confident emotion."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from tara_desktop.voice.emotion import EmotionDetector, measure_prosody, prosody_scores

LABELS = {"neutral", "happy", "sad", "angry"}


def test_iemocap_layout_loads_through_its_custom_interface(speak, emotion_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from speechbrain.inference.interfaces import Pretrained

    from tara_desktop.voice.emotion import SpeechBrainEmotion

    engine = SpeechBrainEmotion(emotion_model_dir, model="speechbrain/emotion-recognition-wav2vec2-IEMOCAP")
    model = engine.load()
    assert isinstance(model, Pretrained) and type(model).__name__ == "CustomEncoderWav2vec2Classifier"
    audio, sr = speak("this is wonderful news", voice="en-us+f3", wpm=190, pitch=80)
    result = EmotionDetector(engine).detect(audio, sr, transcript="this is wonderful news")
    assert result.engine == "speechbrain" and result.model == "speechbrain/emotion-recognition-wav2vec2-IEMOCAP"
    # neu/hap/sad/ang mapped to TARA's labels; probabilities of the model's own softmax.
    assert set(result.scores) == LABELS and abs(sum(result.scores.values()) - 1) < 1e-4
    assert result.label in LABELS and result.confidence == pytest.approx(max(result.scores.values()))


def test_a_downloaded_model_is_found_through_the_config(emotion_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from tara_desktop.config import VoiceSettings
    from tara_desktop.voice.models import user_voice_dir

    none_yet = EmotionDetector.from_config(VoiceSettings(), profile=tmp_path)
    assert none_yet.primary is None and "tara voice download" in str(none_yet.primary_error)
    assert none_yet.warm_up() == "prosody+words"
    target = user_voice_dir(tmp_path) / "speechbrain-emotion-recognition-wav2vec2-IEMOCAP"
    shutil.copytree(emotion_model_dir, target)
    found = EmotionDetector.from_config(VoiceSettings(emotion_min_confidence=0.7), profile=tmp_path)
    assert found.primary is not None and found.primary.model_dir == target
    assert found.min_confidence == 0.7


def test_a_broken_checkpoint_falls_back_and_says_why(speak, emotion_model_dir: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                     caplog: pytest.LogCaptureFixture) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(emotion_model_dir, broken)
    (broken / "model.ckpt").write_bytes(b"not a checkpoint")
    audio, sr = speak("i am so angry right now", voice="en-us", wpm=190, amplitude=180)
    det = EmotionDetector(broken, text_emotion=False)
    with caplog.at_level(logging.WARNING, logger="tara_desktop.voice.emotion"):
        result = det.detect(audio, sr, transcript="i am so angry right now")
    assert result.engine == "prosody" and result.fallback_reason
    assert "angry right now" not in caplog.text


def test_tone_follows_only_a_confident_emotion() -> None:
    sure = EmotionDetector(None, text_emotion=lambda text: ("sad", 0.9), min_confidence=0.6)
    unsure = EmotionDetector(None, text_emotion=lambda text: ("sad", 0.4), min_confidence=0.6)
    quiet = np.zeros(8000, dtype=np.float32)
    a = sure.detect(quiet, 16000, transcript="x")
    b = unsure.detect(quiet, 16000, transcript="x")
    assert (a.label, a.tone) == ("sad", "sad")
    assert (b.label, b.tone) == ("sad", "neutral")


def test_prosody_measures_what_espeak_was_told(speak) -> None:  # type: ignore[no-untyped-def]
    from tara_desktop.voice.audio import prepare_speech

    def prosody(**kw: int):  # type: ignore[no-untyped-def]
        audio, sr = speak("how should i price my product", voice="en-us", **kw)
        return measure_prosody(prepare_speech(audio, sr).audio)

    slow_low = prosody(wpm=100, pitch=15)
    fast_high = prosody(wpm=210, pitch=90)
    assert fast_high.pitch_hz > slow_low.pitch_hz * 1.2
    assert fast_high.syllables_per_s > slow_low.syllables_per_s
    assert slow_low.voiced_seconds > fast_high.voiced_seconds
    scores_fast, scores_slow = prosody_scores(fast_high), prosody_scores(slow_low)
    assert scores_fast["happy"] > scores_slow["happy"]
    assert scores_slow["sad"] > scores_fast["sad"]


def test_fallback_uses_prosody_and_wording_when_the_model_is_missing(
    speak, tmp_path: Path, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    text = "i feel really sad today"
    audio, sr = speak(text, voice="en-us", wpm=110, pitch=20, amplitude=60)
    det = EmotionDetector(tmp_path / "missing")
    with caplog.at_level(logging.WARNING, logger="tara_desktop.voice.emotion"):
        result = det.detect(audio, sr, transcript=text)
    assert result.fallback_reason is not None and "hyperparams.yaml" in result.fallback_reason
    if det.text_emotion is not None:
        assert result.engine == "prosody+words"
        assert result.label == "sad"
    else:
        assert result.engine == "prosody"
    assert text not in caplog.text


def test_prosody_alone_and_silence(tmp_path: Path) -> None:
    det = EmotionDetector(None, text_emotion=False)
    silent = det.detect(np.zeros(16000, dtype=np.float32), 16000)
    assert (silent.label, silent.confidence, silent.engine) == ("neutral", 0.0, "none")
    t = np.arange(16000) / 16000
    hum = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    result = det.detect(hum, 16000)
    assert result.engine == "prosody" and result.label in {"neutral", "happy", "sad", "angry"}
    assert abs(measure_prosody(hum).pitch_hz - 220) < 10


def test_text_emotion_is_used_when_the_router_provides_it() -> None:
    det = EmotionDetector(None, text_emotion=lambda text: ("angry", 0.9))
    result = det.detect(np.zeros(8000, dtype=np.float32), 16000, transcript="whatever")
    assert (result.label, result.engine) == ("angry", "words")
    assert result.confidence == pytest.approx(0.9)


def test_warm_up_loads_the_model_once(emotion_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tara_desktop.voice.emotion import SpeechBrainEmotion

    engine = SpeechBrainEmotion(emotion_model_dir)
    loads: list[str] = []
    load = engine._load
    monkeypatch.setattr(engine, "_load", lambda interface: (loads.append(interface), load(interface))[1])
    det = EmotionDetector(engine)
    assert det.warm_up() == "speechbrain"
    model = engine.load()
    assert det.warm_up() == "speechbrain" and engine.load() is model
    assert loads == ["foreign:custom_interface.py:CustomEncoderWav2vec2Classifier"]
