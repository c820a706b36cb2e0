"""One spoken turn as a plain function (no Qt): audio in → transcript + emotion → streamed reply → speech.

States, reported through ``on_event``: idle → listening → transcribing → thinking → speaking → idle.
The reply is spoken sentence by sentence: as soon as the streaming splitter sees a complete sentence it is
handed to a synthesis worker (and, when ``play`` is given, a playback worker) while generation continues.
``state.cancel()`` (barge-in) stops generation within a token and playback within a block.

The reply comes from an injected ``respond(text, emotion_label, emotion_confidence, on_token) -> reply``;
the app wires it to ``Assistant.run_turn``. The label passed is the emotion only when its confidence reached
the threshold (else "neutral"). A recording with no speech ends the turn with ``heard_nothing`` (the caller
says :data:`HEARD_NOTHING_MESSAGE`) and no turn is sent. Nothing here writes the transcript or audio anywhere.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from tara_desktop.jobs import Cancelled, JobState
from tara_desktop.voice.asr import AsrResult
from tara_desktop.voice.audio import Audio, Speech, prepare_speech, resample
from tara_desktop.voice.emotion import EmotionResult
from tara_desktop.voice.sentences import SentenceSplitter
from tara_desktop.voice.tts import TtsResult

log = logging.getLogger(__name__)

STATES = ("idle", "listening", "transcribing", "thinking", "speaking")
HEARD_NOTHING_MESSAGE = "I heard nothing — hold the button while you speak, a little closer to the microphone."

Respond = Callable[[str, str, float, Callable[[str], None]], str]
Play = Callable[[Audio, int, threading.Event], bool]  # returns False when interrupted
Capture = Callable[[], tuple[npt.ArrayLike, int]]
VoiceEventData = str | AsrResult | EmotionResult | TtsResult


class Recognizer(Protocol):
    """What the turn needs of :class:`tara_desktop.voice.asr.SpeechRecognizer`."""

    def transcribe(self, audio: Speech, sr: int = ...) -> AsrResult: ...


class Emotions(Protocol):
    """What the turn needs of :class:`tara_desktop.voice.emotion.EmotionDetector`."""

    def detect(self, audio: Speech, sr: int = ..., transcript: str = ...) -> EmotionResult: ...


class Synthesizer(Protocol):
    """What the turn needs of :class:`tara_desktop.voice.tts.SpeechSynthesizer`."""

    def speak(self, text: str, voice: str | None = ...) -> TtsResult: ...


@dataclass(frozen=True)
class VoiceEvent:
    """``kind`` is "state" (data: the state name), "transcript" (AsrResult), "emotion" (EmotionResult),
    "token" (str), "sentence" (str), "audio" (TtsResult), "error" (str: what failed, no user content)."""

    kind: str
    data: VoiceEventData


@dataclass
class VoiceTurnResult:
    transcript: str = ""
    asr_engine: str = "none"
    asr_confidence: float = 0.0
    emotion: str = "neutral"
    emotion_confidence: float = 0.0
    emotion_engine: str = "none"
    emotion_tone: str = "neutral"  # what the reply adapted to ("neutral" below the confidence threshold)
    asr_model: str | None = None
    reply: str = ""
    sentences: list[str] = field(default_factory=list)
    spoken: list[TtsResult] = field(default_factory=list)
    cancelled: bool = False
    heard_nothing: bool = False
    tts_error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def tts_engines(self) -> list[str]:
        return sorted({r.engine for r in self.spoken})

    def reply_audio(self, sample_rate: int | None = None, gap_s: float = 0.15) -> tuple[Audio, int]:
        """All spoken sentences joined (resampled to one rate) with short pauses between them."""
        if not self.spoken:
            return np.zeros(0, dtype=np.float32), sample_rate or 16_000
        sr = sample_rate or self.spoken[0].sample_rate
        gap = np.zeros(int(sr * gap_s), dtype=np.float32)
        parts: list[Audio] = []
        for r in self.spoken:
            parts.append(resample(r.audio, r.sample_rate, sr))
            parts.append(gap)
        return np.concatenate(parts[:-1]).astype(np.float32), sr


class _Speaker:
    """Synthesis worker (+ playback worker) fed sentences from a queue."""

    _DONE = object()

    def __init__(self, tts: Synthesizer, play: Play | None, voice: str | Callable[[], str | None] | None, *,
                 emit: Callable[[str, VoiceEventData], None], result: VoiceTurnResult, t0: float) -> None:
        self.tts, self.play, self.voice, self.emit = tts, play, voice, emit
        self.result, self.t0 = result, t0
        self.stop = threading.Event()
        self.sentences: queue.Queue[object] = queue.Queue()
        self.audio: queue.Queue[object] = queue.Queue()
        self.speaking = threading.Event()
        self._synth = threading.Thread(target=self._synth_loop, name="tara-tts", daemon=True)
        self._player = threading.Thread(target=self._play_loop, name="tara-play", daemon=True) if play else None

    def start(self) -> None:
        self._synth.start()
        if self._player is not None:
            self._player.start()

    def say(self, sentence: str) -> None:
        self.sentences.put(sentence)

    def finish(self) -> None:
        self.sentences.put(self._DONE)

    def interrupt(self) -> None:
        self.stop.set()
        self.sentences.put(self._DONE)
        self.audio.put(self._DONE)

    def join(self, state: JobState) -> None:
        """Wait for speech to finish; a cancel on ``state`` interrupts it."""
        for thread in (self._synth, self._player):
            while thread is not None and thread.is_alive():
                thread.join(0.05)
                if state.cancelled and not self.stop.is_set():
                    self.interrupt()

    def _voice(self) -> str | None:
        return self.voice() if callable(self.voice) else self.voice

    def _synth_loop(self) -> None:
        try:
            while not self.stop.is_set():
                item = self.sentences.get()
                if item is self._DONE or self.stop.is_set():
                    break
                try:
                    spoken = self.tts.speak(str(item), self._voice())
                except Exception as exc:  # TtsError: keep the text answer, say why there is no speech
                    self.result.tts_error = str(exc) or exc.__class__.__name__
                    self.emit("error", f"speech failed: {self.result.tts_error}")
                    continue
                if self.stop.is_set():
                    break
                self.result.spoken.append(spoken)
                self.result.timings.setdefault("first_audio_s", time.perf_counter() - self.t0)
                self.emit("audio", spoken)
                if self.play is None:
                    self._mark_speaking()
                else:
                    self.audio.put(spoken)
        finally:
            self.audio.put(self._DONE)

    def _play_loop(self) -> None:
        assert self.play is not None
        while not self.stop.is_set():
            item = self.audio.get()
            if item is self._DONE or self.stop.is_set():
                break
            assert isinstance(item, TtsResult)
            self._mark_speaking()
            try:
                finished = self.play(item.audio, item.sample_rate, self.stop)
            except Exception as exc:  # no speaker: the text answer still stands
                self.result.tts_error = str(exc) or exc.__class__.__name__
                self.emit("error", f"playback failed: {self.result.tts_error}")
                break
            if not finished:
                break

    def _mark_speaking(self) -> None:
        if not self.speaking.is_set():
            self.speaking.set()
            self.emit("state", "speaking")


def run_voice_turn(
    audio: npt.ArrayLike | Speech | Capture,
    sr: int,
    *,
    asr: Recognizer,
    emotion: Emotions,
    respond: Respond,
    tts: Synthesizer | None,
    play: Play | None = None,
    state: JobState,
    on_event: Callable[[VoiceEvent], None] | None = None,
    voice: str | Callable[[], str | None] | None = None,
) -> VoiceTurnResult:
    """Run one spoken turn. ``audio`` is the recording (or a capture function that blocks until the
    push-to-talk key is released and returns ``(audio, sr)``). ``tts=None`` answers in text only."""
    result = VoiceTurnResult()

    def emit(kind: str, data: VoiceEventData) -> None:
        if on_event is not None:
            try:
                on_event(VoiceEvent(kind, data))
            except Exception:  # a broken listener must not break the turn
                log.exception("voice event listener failed")

    speaker: _Speaker | None = None
    parts: list[str] = []
    try:
        if callable(audio):
            emit("state", "listening")
            audio, sr = audio()
        state.check()
        t0 = time.perf_counter()
        emit("state", "transcribing")
        speech = audio if isinstance(audio, Speech) else prepare_speech(audio, sr)
        heard = asr.transcribe(speech)
        result.timings["asr_s"] = time.perf_counter() - t0
        result.transcript, result.asr_engine, result.asr_confidence = heard.text, heard.engine, heard.confidence
        emit("transcript", heard)
        state.check()
        felt = emotion.detect(speech, transcript=heard.text)
        result.timings["emotion_s"] = time.perf_counter() - t0 - result.timings["asr_s"]
        result.emotion, result.emotion_confidence, result.emotion_engine = felt.label, felt.confidence, felt.engine
        result.emotion_tone = felt.tone
        result.asr_model = heard.model
        emit("emotion", felt)
        if not heard.text.strip():
            result.heard_nothing = True
            return result
        state.check()

        emit("state", "thinking")
        splitter = SentenceSplitter()
        if tts is not None:
            speaker = _Speaker(tts, play, voice, emit=emit, result=result, t0=t0)
            speaker.start()

        def deliver(sentences: list[str]) -> None:
            for s in sentences:
                result.sentences.append(s)
                result.timings.setdefault("first_sentence_s", time.perf_counter() - t0)
                emit("sentence", s)
                if speaker is not None:
                    speaker.say(s)

        def on_token(token: str) -> None:
            state.check()  # barge-in: stop generation within a token
            if not token:
                return
            result.timings.setdefault("first_token_s", time.perf_counter() - t0)
            parts.append(token)
            emit("token", token)
            deliver(splitter.feed(token))

        # The reply adapts its tone only to a confident emotion (EmotionResult.tone); else it is neutral.
        tone = felt.tone
        reply = respond(heard.text, tone, felt.confidence if tone == felt.label else 0.0, on_token)
        state.check()
        result.reply = reply if reply else "".join(parts)
        if not parts and result.reply:  # a respond that did not stream: speak the whole reply
            deliver(splitter.feed(result.reply))
        deliver(splitter.flush())
        result.timings["generation_s"] = time.perf_counter() - t0
        if speaker is not None:
            speaker.finish()
            speaker.join(state)
            if state.cancelled:
                raise Cancelled()
        result.timings["total_s"] = time.perf_counter() - t0
        return result
    except Cancelled:
        result.cancelled = True
        result.reply = result.reply or "".join(parts)  # what was generated before the barge-in
        return result
    finally:
        if speaker is not None:
            if state.cancelled:
                speaker.interrupt()
            speaker.join(state)
        emit("state", "idle")
