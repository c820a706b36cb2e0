"""The voice turn end to end without Qt: real espeak-ng speech → Whisper tiny.en + prosody/words emotion → a
real tiny llama GGUF through llama-cpp-python streaming the reply → speech per sentence (Piper, in its own
process); barge-in stops both; a quiet emotion does not change the tone."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from tara_desktop.jobs import JobState
from tara_desktop.voice.emotion import EmotionDetector
from tara_desktop.voice.tts import SpeechSynthesizer
from tara_desktop.voice.tts_engines import default_fallbacks
from tara_desktop.voice.turn import VoiceEvent, run_voice_turn

from .conftest import wer, words

QUESTION = "how do i reverse a list in python"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tara_desktop.llm.engine import Engine
    from tests.support.tiny_model import build_tiny_gguf

    path = build_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", seed=0)
    eng = Engine.load(path, n_ctx=512, n_threads=1, n_batch=64)
    yield eng
    eng.close()


def llama_respond(engine: Any, state: JobState, max_tokens: int = 48,
                  calls: list[str] | None = None) -> Callable[..., str]:
    from tara_desktop.llm.generation import GenerationSettings

    def respond(text: str, emotion: str, confidence: float, on_token: Callable[[str], None]) -> str:
        if calls is not None:
            calls.append(text)
        messages = [{"role": "system", "content": f"The user sounds {emotion}."}, {"role": "user", "content": text}]
        settings = GenerationSettings(max_tokens=max_tokens, temperature=0.0, seed=0)
        out = []
        for piece in engine.stream_chat(messages, settings, state):
            on_token(piece)
            out.append(piece)
        return "".join(out)

    return respond


def software_player(played: list[int]) -> Callable[[np.ndarray, int, threading.Event], bool]:
    """Plays into nothing at real time in 20 ms blocks, stoppable like the real speaker."""

    def play(audio: np.ndarray, sr: int, stop: threading.Event) -> bool:
        block = int(sr * 0.02)
        for start in range(0, audio.size, block):
            if stop.wait(0.02):
                return False
            played.append(min(block, audio.size - start))
        return True

    return play


def offline_tts() -> SpeechSynthesizer:
    return SpeechSynthesizer(edge=None, fallbacks=default_fallbacks())


@pytest.fixture(scope="module")
def piper_tts() -> Iterator[SpeechSynthesizer]:
    """The app's default offline voice: Piper joe in its own process, the system voice behind it."""
    synth = SpeechSynthesizer.from_config()
    assert synth.offline_engine == "piper"
    yield synth
    synth.close()


def test_spoken_question_is_answered_and_spoken_sentence_by_sentence(
    speak, recognizer, detector, engine, piper_tts  # type: ignore[no-untyped-def]
) -> None:
    audio, sr = speak(QUESTION, voice="en-gb-x-rp", wpm=155, pitch=50)
    state = JobState()
    events: list[VoiceEvent] = []
    result = run_voice_turn(audio, sr, asr=recognizer, emotion=detector, respond=llama_respond(engine, state),
                            tts=piper_tts, state=state, on_event=events.append)

    assert wer(QUESTION, result.transcript) <= 0.3 and result.asr_engine == "faster-whisper"
    assert result.asr_model == "whisper-tiny.en"
    assert result.emotion in {"neutral", "happy", "sad", "angry"}
    assert result.emotion_engine in {"prosody+words", "prosody"}
    assert result.reply.strip() and not result.cancelled
    assert "".join(result.reply.split()) == "".join("".join(result.sentences).split())
    assert len(result.spoken) == len(result.sentences) >= 1
    assert result.tts_engines == ["piper"]
    states = [e.data for e in events if e.kind == "state"]
    assert states == ["transcribing", "thinking", "speaking", "idle"]
    kinds = [e.kind for e in events]
    # The first sentence went to speech before generation finished (streaming, not after the fact).
    if len(result.sentences) > 1:
        assert kinds.index("sentence") < len(kinds) - 1 - kinds[::-1].index("token")
    audio_out, out_sr = result.reply_audio()
    assert audio_out.size / out_sr > 0.5 and float(np.sqrt(np.mean(audio_out**2))) > 0.01
    for key in ("asr_s", "emotion_s", "first_token_s", "first_sentence_s", "first_audio_s", "total_s"):
        assert key in result.timings


def test_barge_in_while_speaking_stops_playback(
    speak, recognizer, detector, engine  # type: ignore[no-untyped-def]
) -> None:
    audio, sr = speak("tell me a fun fact", voice="en-us+m7", wpm=150)
    state = JobState()
    played: list[int] = []
    tokens: list[str] = []

    def on_event(e: VoiceEvent) -> None:
        if e.kind == "token":
            tokens.append(e.data)
        if e.kind == "state" and e.data == "speaking":
            state.cancel()  # the user pressed push-to-talk while TARA speaks

    result = run_voice_turn(audio, sr, asr=recognizer, emotion=detector,
                            respond=llama_respond(engine, state, max_tokens=400), tts=offline_tts(),
                            play=software_player(played), state=state, on_event=on_event)
    assert result.cancelled
    assert tokens and result.spoken  # (generation stopping is shown in the next test)
    total = sum(r.audio.size for r in result.spoken)
    assert sum(played) < total  # playback was interrupted


def test_barge_in_while_thinking_stops_generation_within_a_token(
    speak, recognizer, detector, engine  # type: ignore[no-untyped-def]
) -> None:
    audio, sr = speak("what time zone is tokyo in", voice="en-us", wpm=170)
    state = JobState()
    tokens: list[str] = []
    states: list[str] = []

    def on_event(e: VoiceEvent) -> None:
        if e.kind == "token":
            tokens.append(e.data)
            if len(tokens) == 5:
                state.cancel()
        if e.kind == "state":
            states.append(e.data)

    result = run_voice_turn(audio, sr, asr=recognizer, emotion=detector,
                            respond=llama_respond(engine, state, max_tokens=200), tts=offline_tts(),
                            state=state, on_event=on_event)
    assert result.cancelled and len(tokens) == 5
    assert result.reply == "".join(tokens)
    assert states[-1] == "idle"


def test_silence_is_not_sent_to_the_model(recognizer, detector, engine) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []
    state = JobState()
    result = run_voice_turn(np.zeros(32000, dtype=np.float32), 16000, asr=recognizer, emotion=detector,
                            respond=llama_respond(engine, state, calls=calls), tts=offline_tts(), state=state)
    assert result.heard_nothing and result.transcript == "" and calls == []
    assert result.asr_engine == "none"


def test_text_only_turn_and_capture_function(speak, recognizer, detector, engine) -> None:  # type: ignore[no-untyped-def]
    audio, sr = speak("what makes a good manager", voice="en-us+m7", wpm=150, pitch=45)
    state = JobState()
    states: list[str] = []
    result = run_voice_turn(lambda: (audio, sr), 0, asr=recognizer, emotion=detector,
                            respond=llama_respond(engine, state, max_tokens=20), tts=None, state=state,
                            on_event=lambda e: states.append(e.data) if e.kind == "state" else None)
    assert words(result.transcript) == "what makes a good manager".split()
    assert result.reply and result.spoken == []
    assert states == ["listening", "transcribing", "thinking", "idle"]


def test_a_failing_speech_engine_keeps_the_text_answer(speak, recognizer, detector, engine) -> None:  # type: ignore[no-untyped-def]
    from tara_desktop.voice.tts_engines import EspeakTts

    audio, sr = speak("tell me a fun fact", voice="en-us", wpm=160)
    state = JobState()
    errors: list[str] = []
    broken = SpeechSynthesizer(edge=None, fallbacks=[EspeakTts(executables=["no-such-espeak"])])
    result = run_voice_turn(audio, sr, asr=recognizer, emotion=detector,
                            respond=llama_respond(engine, state, max_tokens=20), tts=broken, state=state,
                            on_event=lambda e: errors.append(e.data) if e.kind == "error" else None)
    assert result.reply and result.spoken == [] and not result.cancelled
    assert result.tts_error is not None and errors and errors[0].startswith("speech failed")


def test_the_reply_tone_follows_only_a_confident_emotion(speak, recognizer) -> None:  # type: ignore[no-untyped-def]
    audio, sr = speak("i feel really sad today", voice="en-us", wpm=150)
    seen: list[tuple[str, float]] = []

    def respond(text: str, emotion: str, confidence: float, on_token: Callable[[str], None]) -> str:
        seen.append((emotion, confidence))
        return "I am here for you."

    # The words say "sad" for sure; the voice's prosody adds its share, so the confidence is 0.6..1.0.
    for threshold, expected in ((0.5, "sad"), (0.99, "neutral")):
        detector = EmotionDetector(None, text_emotion=lambda t: ("sad", 1.0), min_confidence=threshold)
        result = run_voice_turn(audio, sr, asr=recognizer, emotion=detector, respond=respond, tts=None,
                                state=JobState())
        assert result.emotion == "sad" and 0.6 <= result.emotion_confidence < 0.99
        assert result.emotion_tone == expected
    assert seen[0][0] == "sad" and seen[0][1] >= 0.6 and seen[1] == ("neutral", 0.0)
