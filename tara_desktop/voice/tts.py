"""Text to speech: Piper (offline neural voice) first, the system voice (pyttsx3 / espeak-ng) as fallback;
Edge TTS (online) only when the user turned on the "online voice" consent.

:class:`SpeechSynthesizer` is the one the app uses; the engines are :mod:`tara_desktop.voice.piper` and
:mod:`tara_desktop.voice.tts_engines`.

* Piper runs in its own process (GPL-3.0: never imported); :meth:`SpeechSynthesizer.warm_up` starts it in
  the background so the first reply does not wait for its cold start.
* pyttsx3 (SAPI5 on Windows; espeak-ng on Linux, see :func:`~tara_desktop.voice.tts_engines.default_fallbacks`)
  when Piper is missing.
* Edge TTS sends the reply text to Microsoft's speech service: it is used only while ``online_allowed()``
  (the ``online_voice`` consent, off by default) is true, checked before every sentence, so withdrawing the
  consent takes effect on the next sentence; ``voice.tts_engine: piper`` or ``system`` never uses it. A
  circuit breaker stops trying it for ``voice.edge_tts_retry_after_s`` after a failure.

Every result names its engine.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tara_desktop.errors import TaraError
from tara_desktop.voice.audio import Audio, wav_bytes
from tara_desktop.voice.engines import resolve_voice_settings
from tara_desktop.voice.piper import PiperTts
from tara_desktop.voice.tts_engines import (
    CircuitBreaker,
    ClosableEngine,
    EdgeTts,
    TtsEngine,
    TtsUnavailable,
    WarmableEngine,
    default_fallbacks,
)

if TYPE_CHECKING:
    from tara_desktop.config import VoiceSettings

log = logging.getLogger(__name__)


class TtsError(TaraError):
    """No speech engine could speak the text."""


@dataclass(frozen=True)
class TtsResult:
    audio: Audio
    sample_rate: int
    engine: str  # "piper", "edge-tts", "pyttsx3" or "espeak-ng"
    fallback_reason: str | None = None

    @property
    def seconds(self) -> float:
        return self.audio.size / float(self.sample_rate) if self.sample_rate else 0.0

    def wav(self) -> bytes:
        return wav_bytes(self.audio, self.sample_rate)


def _never() -> bool:
    return False


class SpeechSynthesizer:
    """Edge TTS (only with consent, behind a circuit breaker), then the offline engines, per sentence."""

    def __init__(self, *, edge: TtsEngine | None = None, fallbacks: Sequence[TtsEngine] | None = None,
                 breaker: CircuitBreaker | None = None, online_allowed: Callable[[], bool] | None = None) -> None:
        self.edge = edge
        self.fallbacks: list[TtsEngine] = list(fallbacks) if fallbacks is not None else default_fallbacks()
        self.breaker = breaker or CircuitBreaker(300.0)
        # No consent callback: the online voice is never used, whatever ``edge`` is.
        self.online_allowed: Callable[[], bool] = online_allowed or _never
        self._warming: threading.Thread | None = None
        self._warm_lock = threading.Lock()

    @classmethod
    def from_config(cls, voice_settings: VoiceSettings | None = None, *, clock: Callable[[], float] = time.monotonic,
                    online_allowed: Callable[[], bool] | None = None, use_edge: bool = True) -> SpeechSynthesizer:
        """Engines for ``voice.tts_engine``: ``auto``/``edge`` = Edge TTS while ``online_allowed()`` (the
        "online_voice" consent) is true, else Piper, then the system voice; ``piper`` = Piper, then the system
        voice, never online; ``system`` = the system voice only."""
        voice_settings = resolve_voice_settings(voice_settings)
        choice = voice_settings.tts_engine or "auto"
        fallbacks: list[TtsEngine] = []
        if choice != "system":
            piper = PiperTts.default()
            if piper is not None:
                fallbacks.append(piper)
        fallbacks.extend(default_fallbacks())
        edge = EdgeTts(voice_settings.edge_tts_timeout_s) if use_edge and choice in ("auto", "edge") else None
        return cls(edge=edge, fallbacks=fallbacks, online_allowed=online_allowed,
                   breaker=CircuitBreaker(voice_settings.edge_tts_retry_after_s, clock))

    @property
    def offline_engine(self) -> str:
        """The name of the first offline engine (what speaks when the online voice is not used)."""
        return self.fallbacks[0].name if self.fallbacks else "none"

    def warm_up(self) -> threading.Thread:
        """Get the offline voice ready without blocking the caller: a background thread starts Piper and has
        it speak a throwaway word, so the first spoken reply does not wait for Piper's cold start. Returns
        at once with that thread (join it to wait). Calling it again does nothing more and returns the same
        thread. A missing or broken Piper is logged (its engine name and why, never any text) and is dealt
        with as usual when a reply is spoken; the system voices have nothing to warm."""
        with self._warm_lock:
            if self._warming is None:
                self._warming = threading.Thread(target=self._warm_offline_voice, name="tara-tts-warm-up",
                                                 daemon=True)
                self._warming.start()
            return self._warming

    def _warm_offline_voice(self) -> None:
        for engine in self.fallbacks:
            if not isinstance(engine, WarmableEngine):
                return  # the first engine that speaks needs no warming
            try:
                engine.warm_up()
            except TtsUnavailable as exc:
                log.warning("TTS engine %s unavailable (%s)", engine.name, exc)
                continue
            except Exception as exc:  # a background thread must not die with a traceback
                log.warning("TTS engine %s did not warm up (%s)", engine.name, exc.__class__.__name__)
                continue
            return

    def close(self) -> None:
        for engine in self.fallbacks:
            if isinstance(engine, ClosableEngine):
                engine.close()

    def _online_ok(self) -> bool:
        try:
            return bool(self.online_allowed())
        except Exception:  # the consent cannot be read (profile locked/closed): treat as "no"
            log.warning("online voice consent could not be read; staying offline")
            return False

    def speak(self, text: str, voice: str | None = None) -> TtsResult:
        """Speech for ``text`` (one sentence or a short paragraph) as a mono array."""
        text = " ".join(text.split())
        if not text:
            raise TtsError("there is no text to speak; give some words")
        reason: str | None = None
        if self.edge is not None:
            if not self._online_ok():
                reason = f"{self.edge.name}: the online voice is off (no consent)"
            elif self.breaker.allow():
                try:
                    audio, sr = self.edge.synthesize(text, voice)
                except TtsUnavailable as exc:
                    self.breaker.record_failure()
                    reason = f"{self.edge.name}: {exc}"
                    log.info("Edge TTS unavailable (%s); offline voice for %.0f s", exc, self.breaker.retry_after_s)
                else:
                    self.breaker.record_success()
                    return TtsResult(audio, sr, self.edge.name)
            else:
                reason = f"{self.edge.name}: skipped after a recent failure"
        for engine in self.fallbacks:
            try:
                audio, sr = engine.synthesize(text, None)
            except TtsUnavailable as exc:
                reason = f"{engine.name}: {exc}"
                log.warning("TTS engine %s failed (%s)", engine.name, exc)
                continue
            if audio.size == 0:
                reason = f"{engine.name}: no audio"
                continue
            return TtsResult(audio, sr, engine.name, reason)
        raise TtsError(f"no speech engine could speak ({reason}); install espeak-ng (Linux) or check SAPI5 voices")


SENTENCE_GAP_S = 0.15  # the pause between two spoken sentences


@dataclass(frozen=True)
class SpokenText:
    """A text of any length spoken sentence by sentence: the joined audio and the engines that spoke."""

    audio: Audio
    sample_rate: int
    engines: list[str]

    @property
    def seconds(self) -> float:
        return self.audio.size / float(self.sample_rate) if self.sample_rate else 0.0

    @property
    def engine(self) -> str:
        """The engine name(s) used, e.g. "piper" or "edge-tts, piper"."""
        return ", ".join(dict.fromkeys(self.engines))


def speak_text(synth: SpeechSynthesizer, text: str, voice: str | None = None) -> SpokenText:
    """Speak ``text`` (any length) sentence by sentence, resampled to the first sentence's rate and joined
    with short pauses."""
    from tara_desktop.voice.audio import resample
    from tara_desktop.voice.sentences import split_sentences

    parts: list[Audio] = []
    engines: list[str] = []
    sr = 0
    for sentence in split_sentences([text]):
        spoken = synth.speak(sentence, voice)
        sr = sr or spoken.sample_rate
        parts.append(resample(spoken.audio, spoken.sample_rate, sr))
        parts.append(np.zeros(int(sr * SENTENCE_GAP_S), dtype=np.float32))
        engines.append(spoken.engine)
    if not parts:
        raise TtsError("there is no text to speak; give some words")
    return SpokenText(np.concatenate(parts[:-1]), sr, engines)


def synthesize_to_wav(text: str, path: str | os.PathLike[str], *, voice: str | None = None,
                      synthesizer: SpeechSynthesizer | None = None) -> str:
    """Speak ``text`` (any length: sentence by sentence) into a 16-bit WAV at ``path`` (written atomically);
    return the engine name(s) used, e.g. "piper". Offline unless the given synthesizer allows otherwise."""
    from tara_desktop.voice.audio import write_wav

    spoken = speak_text(synthesizer or SpeechSynthesizer.from_config(), text, voice)
    write_wav(path, spoken.audio, spoken.sample_rate)
    return spoken.engine


