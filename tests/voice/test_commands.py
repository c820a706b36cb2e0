"""`tara voice transcribe|say|turn` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tara_desktop.cli import main
from tara_desktop.voice.tts import SpeechSynthesizer

from .conftest import espeak_wav, wer, words


def offline_engine() -> str:
    return SpeechSynthesizer.from_config().offline_engine


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_transcribe_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wav = espeak_wav(tmp_path / "q.wav", "my computer is running very slowly today", voice="en-us+m7", wpm=150,
                     pitch=45)
    code, out, err = run(["voice", "transcribe", str(wav), "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert words(data["text"]) == "my computer is running very slowly today".split()
    assert (data["engine"], data["model"]) == ("faster-whisper", "whisper-tiny.en")
    assert data["emotion"] in {"neutral", "happy", "sad", "angry"} and 0 <= data["confidence"] <= 1
    # No emotion model is downloaded here: the engine says it is the prosody+words estimate.
    assert data["emotion_engine"] in {"prosody+words", "prosody"} and data["emotion_model"] is None
    assert data["heard_nothing"] is False
    assert "\n" not in out.strip()


def test_transcribe_plain_prints_the_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wav = espeak_wav(tmp_path / "q.wav", "open the settings", voice="en-gb-x-rp", wpm=150)
    code, out, err = run(["voice", "transcribe", str(wav)], capsys)
    assert code == 0 and words(out) == ["open", "the", "settings"]
    assert err.startswith("engine: faster-whisper (whisper-tiny.en); emotion: ")


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "file not found"), (b"", "file is empty"), (b"RIFF\x00\x00\x00\x00WAVEjunk" * 3, "not a readable audio")],
    ids=["missing", "empty", "corrupt"],
)
def test_bad_wav_is_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         content: bytes | None, match: str) -> None:
    wav = tmp_path / "bad.wav"
    if content is not None:
        wav.write_bytes(content)
    for cmd in (["voice", "transcribe", str(wav)], ["voice", "turn", str(wav), "--out", str(tmp_path / "o.wav")]):
        code, out, err = run(cmd, capsys)
        assert code == 2 and out == ""
        assert err.startswith("error: ") and match in err and err.count("\n") == 1
    assert not (tmp_path / "o.wav").exists()


def test_ten_minute_silent_recording_is_heard_as_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wav = tmp_path / "long.wav"
    sf.write(str(wav), np.zeros(600 * 8000, dtype=np.int16), 8000, subtype="PCM_16")
    code, out, err = run(["voice", "transcribe", str(wav), "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["text"] == "" and data["heard_nothing"] is True
    assert data["seconds"] == pytest.approx(600.0, abs=1) and "I heard nothing" in err


def test_voice_models_lists_the_catalog_with_files(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["voice", "models", "--json"], capsys)
    rows = {r["id"]: r for r in json.loads(out)}
    assert code == 0
    assert rows["whisper-tiny.en"]["installed"] is True and rows["whisper-tiny.en"]["bundled"] is True
    emotion = rows["speechbrain/emotion-recognition-wav2vec2-IEMOCAP"]
    assert emotion["kind"] == "emotion" and emotion["installed"] is False
    assert {f["name"] for f in emotion["files"]} >= {"hyperparams.yaml", "model.ckpt", "wav2vec2.ckpt"}
    assert any(r["engine"] == "speechbrain" and r["kind"] == "asr" for r in rows.values())
    code, out, _ = run(["voice", "models"], capsys)
    assert code == 0 and "wav2vec2.ckpt (~380 MB)" in out


def test_download_of_an_unknown_model_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["voice", "download", "speechbrain/no-such-model"], capsys)
    assert code == 2 and out == "" and err.startswith("error: unknown voice model") and err.count("\n") == 1

def test_silence_transcribes_to_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wav = tmp_path / "silence.wav"
    sf.write(str(wav), np.zeros(16000, dtype=np.int16), 16000, subtype="PCM_16")
    code, out, _ = run(["voice", "transcribe", str(wav), "--json"], capsys)
    assert code == 0 and json.loads(out)["text"] == "" and json.loads(out)["engine"] == "none"


def test_say_writes_speech_and_names_the_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_wav = tmp_path / "hello.wav"
    code, out, err = run(["voice", "say", "Hello from TARA. Dr. Smith says 3.5 is fine!", "--out", str(out_wav),
                          "--offline"], capsys)
    assert code == 0 and out == ""
    assert err.startswith(f"engine: {offline_engine()} (")
    audio, sr = sf.read(str(out_wav))
    assert audio.size / sr > 1.0 and np.sqrt(np.mean(audio**2)) > 0.01
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hello.wav"]


def test_say_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["voice", "say", "  ", "--out", str(tmp_path / "x.wav")], capsys)
    assert code == 2 and "no text to speak" in err
    code, _, err = run(["voice", "say", "hi", "--out", str(tmp_path / "no" / "x.wav")], capsys)
    assert code == 2 and "folder not found" in err
    code, _, err = run(["voice", "say", "hi", "--out", str(tmp_path / "x.wav"), "--domain", "astrology"], capsys)
    assert code == 2 and "unknown domain" in err


@pytest.mark.slow
def test_spoken_question_end_to_end(tmp_path: Path) -> None:
    """espeak-ng asks a question; `tara voice turn` transcribes it, routes it, answers with a real GGUF model
    and writes a spoken answer that is not silent."""
    from tests.support.tiny_model import build_tiny_gguf

    model = build_tiny_gguf(tmp_path / "demo.gguf", seed=0)
    wav = espeak_wav(tmp_path / "q.wav", "how do i reverse a list in python", voice="en-gb-x-rp", wpm=155)
    out_wav = tmp_path / "answer.wav"
    proc = subprocess.run(
        [sys.executable, "-m", "tara_desktop.cli", "voice", "turn", str(wav), "--out", str(out_wav), "--json",
         "--model", str(model), "--offline"],
        check=False, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert wer("how do i reverse a list in python", data["text"]) <= 0.3
    assert (data["engine"], data["model"]) == ("faster-whisper", "whisper-tiny.en")
    assert data["domain"] == "technical"
    assert data["reply"].strip()
    assert data["tts_engine"] == offline_engine()
    audio, sr = sf.read(str(out_wav))
    assert audio.size / sr > 0.5 and np.sqrt(np.mean(audio**2)) > 0.01
