"""Speech recognition: Whisper tiny.en understands sentences from voices the project never trained on;
silence is "heard nothing"; a missing or broken model falls back to the next engine and says which; SpeechBrain
models load through SpeechBrain's own interface."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from tara_desktop.voice.asr import AsrResult, SpeechRecognizer
from tara_desktop.voice.asr_engines import PocketSphinxAsr, SpeechBrainAsr, WhisperAsr
from tara_desktop.voice.audio import AudioError, prepare_speech

from .conftest import wer

# Ordinary sentences in espeak-ng voices (nobody trained anything on them).
SENTENCES = [
    ("what could cause a headache that lasts all day", "en-us+m7", 150, 45),
    ("give me three ideas for a short story about the sea", "en-gb", 160, 45),
    ("how can i sleep better at night", "en-us+f3", 170, 60),
    ("my computer is running very slowly today", "en-gb-x-rp", 150, 50),
    ("please read that last answer again", "en-us+m7", 150, 45),
]


def test_whisper_understands_unseen_sentences(speak, recognizer) -> None:  # type: ignore[no-untyped-def]
    total = 0.0
    for text, voice, wpm, pitch in SENTENCES:
        audio, sr = speak(text, voice=voice, wpm=wpm, pitch=pitch)
        result = recognizer.transcribe(audio, sr)
        assert result.engine == "faster-whisper" and result.model == "whisper-tiny.en"
        assert 0.0 < result.confidence <= 1.0 and result.language == "en"
        assert wer(text, result.text) <= 0.34, (text, result.text)
        total += wer(text, result.text)
    assert total / len(SENTENCES) <= 0.15


def test_silence_and_faint_noise_are_heard_as_nothing(recognizer) -> None:  # type: ignore[no-untyped-def]
    result = recognizer.transcribe(np.zeros(16000 * 2, dtype=np.float32), 16000)
    assert result == AsrResult("", "none", 0.0, 2.0, None)
    assert result.heard_nothing
    rng = np.random.default_rng(0)
    hiss = (rng.normal(0, 0.003, 16000 * 3)).astype(np.float32)  # about -50 dBFS: above the silence gate
    heard = recognizer.transcribe(hiss, 16000)
    assert heard.heard_nothing, heard.text  # VAD finds no speech: nothing invented


def test_leading_and_trailing_silence_is_trimmed(speak, recognizer) -> None:  # type: ignore[no-untyped-def]
    text = "please read that last answer again"
    audio, sr = speak(text, voice="en-us+m7", wpm=150, pitch=45)
    padded = np.concatenate([np.zeros(sr * 4, np.float32), audio, np.zeros(sr * 4, np.float32)])
    assert wer(text, recognizer.transcribe(padded, sr).text) <= 0.2


def test_clipped_and_phone_quality_recordings_still_work(speak, recognizer) -> None:  # type: ignore[no-untyped-def]
    from tara_desktop.voice.audio import resample

    text = "how can i sleep better at night"
    audio, sr = speak(text, voice="en-us", wpm=150)
    low = resample(audio, sr, 8000)  # a telephone-band recording: tiny.en loses a word or two here
    assert wer(text, recognizer.transcribe(low, 8000).text) <= 0.3
    clipped = np.clip(audio * 8.0, -1.0, 1.0)
    speech = prepare_speech(clipped, sr)
    assert speech.clipped
    assert wer(text, recognizer.transcribe(speech).text) <= 0.2


def test_empty_recording_is_a_clear_error(recognizer) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AudioError, match="empty"):
        recognizer.transcribe(np.zeros(0, dtype=np.float32), 16000)


def test_missing_model_falls_back_to_pocketsphinx_and_says_why(speak, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    text = "hello how are you today"
    audio, sr = speak(text, voice="en-us", wpm=150)
    rec = SpeechRecognizer([WhisperAsr(tmp_path / "no-such-model", model="whisper-base")])
    with caplog.at_level(logging.WARNING, logger="tara_desktop.voice.asr"):
        result = rec.transcribe(audio, sr)
    assert result.engine == "pocketsphinx" and result.model == "pocketsphinx-en-us"
    assert result.fallback_reason is not None and "model.bin" in result.fallback_reason
    assert result.text.strip() and all(w.isalpha() or "'" in w for w in result.text.split())
    assert any("using the next one" in r.getMessage() for r in caplog.records)
    assert all(text not in r.getMessage() for r in caplog.records)  # no content in logs


def test_broken_model_file_falls_back_once_with_a_logged_reason(speak, whisper_dir: Path, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "whisper-broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(whisper_dir / name, broken / name)
    (broken / "model.bin").write_bytes(b"this is not a CTranslate2 model")
    audio, sr = speak("tell me a fun fact", voice="en-us")
    rec = SpeechRecognizer([WhisperAsr(broken, model="whisper-broken")], fallback=PocketSphinxAsr())
    with caplog.at_level(logging.WARNING, logger="tara_desktop.voice.asr"):
        first = rec.transcribe(audio, sr)
    assert first.engine == "pocketsphinx" and first.fallback_reason
    assert "fun fact" not in caplog.text
    assert rec.transcribe(audio, sr).engine == "pocketsphinx"  # the broken model is not retried every turn
    assert rec.primary_error == first.fallback_reason


def test_config_choices_resolve_to_engines(tmp_path: Path) -> None:
    from tara_desktop.config import VoiceSettings

    rec = SpeechRecognizer.from_config(VoiceSettings(), profile=tmp_path)
    assert [e.model for e in rec.engines] == ["whisper-tiny.en", "pocketsphinx-en-us"]
    assert rec.primary_error is None
    # Whisper base chosen but not installed: tiny.en takes over and the reason says how to install base.
    rec = SpeechRecognizer.from_config(VoiceSettings(asr_model="whisper-base"), profile=tmp_path)
    assert [e.model for e in rec.engines] == ["whisper-tiny.en", "pocketsphinx-en-us"]
    assert rec.primary_error is not None and "install-base" in rec.primary_error
    rec = SpeechRecognizer.from_config(VoiceSettings(asr_model="speechbrain/asr-wav2vec2-librispeech"),
                                       profile=tmp_path)
    assert rec.engines[0].model == "whisper-tiny.en"
    assert "tara voice download speechbrain/asr-wav2vec2-librispeech" in str(rec.primary_error)


def test_a_speechbrain_model_folder_loads_with_encoder_asr(speak, sb_asr_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from speechbrain.inference.ASR import EncoderASR

    engine = SpeechBrainAsr(sb_asr_dir)
    assert isinstance(engine.load(), EncoderASR)
    audio, sr = speak("start a new conversation", voice="en-us")
    rec = SpeechRecognizer([engine], use_fallback=False)
    result = rec.transcribe(audio, sr)
    assert result.engine == "speechbrain" and result.model == "encoder-asr"
    # Seeded random weights: whatever it says is made of its own characters, with a confidence in 0..1.
    assert set(result.text) <= set("abcdefghijklmnopqrstuvwxyz' ")
    assert 0.0 <= result.confidence <= 1.0
    # The same folder through the config (a folder path) picks the SpeechBrain engine too.
    assert isinstance(SpeechRecognizer.for_folder(sb_asr_dir).engines[0], SpeechBrainAsr)


def test_warm_up_loads_whisper_once(whisper_dir: Path) -> None:
    engine = WhisperAsr(whisper_dir, model="whisper-tiny.en", threads=1)
    rec = SpeechRecognizer([engine])
    assert rec.warm_up() == "faster-whisper"
    model = engine._model
    assert model is not None
    assert rec.warm_up() == "faster-whisper" and engine._model is model and engine.load() is model
    assert rec.describe() == "faster-whisper (whisper-tiny.en)" and rec.primary_error is None
