"""Speech recognition: the shipped tiny SpeechBrain model transcribes unseen espeak-ng voices; pocketsphinx
takes over when the model folder is missing or broken; odd recordings give sensible results."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from tara_desktop.voice.asr import AsrResult, SpeechRecognizer
from tara_desktop.voice.audio import AudioError, prepare_speech

# Voices and variants never used in training (see models/voice/asr/phrases.json).
UNSEEN = [("en-gb-x-rp", 158, 52), ("en-us+m7", 148, 45), ("en-us+f3", 172, 60), ("en-gb+f5", 140, 58)]


def cer(ref: str, hyp: str) -> float:
    d = list(range(len(hyp) + 1))
    for i, rc in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, hc in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (rc != hc))
    return d[len(hyp)] / max(1, len(ref))


def phrases(model_dir: Path) -> list[str]:
    return list(json.loads((model_dir / "phrases.json").read_text())["phrases"])


def test_unseen_voices_are_transcribed_correctly(speak, recognizer, asr_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    known = phrases(asr_model_dir)
    trained = {v[0] for v in json.loads((asr_model_dir / "phrases.json").read_text())["train_voices"]}
    assert trained.isdisjoint({v for v, _, _ in UNSEEN})
    exact, total_cer, n = 0, 0.0, 0
    for i, text in enumerate(known):
        voice, wpm, pitch = UNSEEN[i % len(UNSEEN)]
        audio, sr = speak(text, voice=voice, wpm=wpm, pitch=pitch)
        result = recognizer.transcribe(audio, sr)
        assert result.engine == "speechbrain" and 0.0 < result.confidence <= 1.0
        exact += result.text == text
        total_cer += cer(text, result.text)
        n += 1
    # A demo model trained in minutes on 22 synthetic voices: most phrases exact, the rest a letter or two off.
    assert exact / n >= 0.5, f"only {exact}/{n} exact"
    assert total_cer / n <= 0.05, f"mean CER {total_cer / n:.3f}"


def test_unknown_speech_does_not_come_out_as_a_known_phrase_verbatim(speak, recognizer) -> None:  # type: ignore[no-untyped-def]
    # A demo model knows only its phrases; a different sentence must not be "recognised" perfectly.
    audio, sr = speak("the quick brown fox jumps over the lazy dog", voice="en-us")
    result = recognizer.transcribe(audio, sr)
    assert result.engine == "speechbrain" and result.text != "the quick brown fox jumps over the lazy dog"


def test_eight_khz_stereo_and_clipped_recordings_still_work(speak, recognizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import soundfile as sf

    from tara_desktop.voice.audio import read_wav, resample

    text = "what should i cook for dinner"
    audio, sr = speak(text, voice="en-us+m7", wpm=150)
    low = resample(audio, sr, 8000)
    path = tmp_path / "phone.wav"
    sf.write(str(path), np.stack([low, low * 0.9], axis=1), 8000, subtype="PCM_16")
    a8, sr8 = read_wav(path)
    assert sr8 == 8000
    assert cer(text, recognizer.transcribe(a8, sr8).text) <= 0.15
    clipped = np.clip(audio * 8.0, -1.0, 1.0)
    speech = prepare_speech(clipped, sr)
    assert speech.clipped
    assert cer(text, recognizer.transcribe(speech).text) <= 0.25


def test_silence_gives_an_empty_transcript_not_an_error(recognizer) -> None:  # type: ignore[no-untyped-def]
    result = recognizer.transcribe(np.zeros(16000 * 2, dtype=np.float32), 16000)
    assert result == AsrResult("", "none", 0.0, 2.0, None)


def test_too_long_and_empty_recordings_are_clear_errors(recognizer) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AudioError, match="600 s long"):
        recognizer.transcribe(np.zeros(16000 * 600, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="empty"):
        recognizer.transcribe(np.zeros(0, dtype=np.float32), 16000)


def test_missing_model_folder_falls_back_to_pocketsphinx(speak, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    text = "hello how are you today"
    audio, sr = speak(text, voice="en-us", wpm=150)
    rec = SpeechRecognizer(tmp_path / "no-such-model")
    with caplog.at_level(logging.WARNING, logger="tara_desktop.voice.asr"):
        result = rec.transcribe(audio, sr)
    assert result.engine == "pocketsphinx"
    assert result.fallback_reason is not None and "hyperparams.yaml" in result.fallback_reason
    # pocketsphinx's general English model decodes espeak-ng's synthetic voice poorly, but it hears words.
    assert result.text.strip() and all(w.isalpha() or "'" in w for w in result.text.split())
    assert 0.0 < result.confidence <= 1.0
    assert any("using the fallback" in r.getMessage() for r in caplog.records)
    assert all(text not in r.getMessage() for r in caplog.records)  # no content in logs


def test_broken_model_file_falls_back_with_a_logged_reason(speak, asr_model_dir: Path, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "asr"
    shutil.copytree(asr_model_dir, broken)
    (broken / "encoder.ckpt").write_bytes(b"this is not a checkpoint")
    audio, sr = speak("tell me a fun fact", voice="en-us")
    rec = SpeechRecognizer(broken)
    with caplog.at_level(logging.WARNING, logger="tara_desktop.voice.asr"):
        first = rec.transcribe(audio, sr)
    assert first.engine == "pocketsphinx" and first.fallback_reason
    assert "fun fact" not in caplog.text
    # The broken model is not retried on every turn.
    assert rec.transcribe(audio, sr).engine == "pocketsphinx"
    assert rec.primary_error == first.fallback_reason
