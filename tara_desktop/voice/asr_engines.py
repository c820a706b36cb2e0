"""The speech recognisers :class:`tara_desktop.voice.asr.SpeechRecognizer` chains: faster-whisper with a
local Whisper model (CTranslate2 int8, Silero VAD), a SpeechBrain ASR model folder, and pocketsphinx with
the US-English model inside its wheel. Each loads its model once (:meth:`load`) and turns 16 kHz speech into
(text, confidence 0..1, language); none logs what was said.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.voice.audio import ASR_RATE, Speech, trim_silence
from tara_desktop.voice.engines import Engine
from tara_desktop.voice.speechbrain_model import SpeechBrainModel, load_speechbrain

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from pocketsphinx import Decoder
    from speechbrain.inference.interfaces import Pretrained


class AsrError(TaraError):
    """No speech recogniser could run."""


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
                 threads: int | None = None, beam_size: int = 5) -> None:
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
