"""Speech recognition behind one interface: ``transcribe(audio, sr) -> AsrResult``.

The primary engine is SpeechBrain's own inference class (:class:`speechbrain.inference.ASR.EncoderASR`)
loading a pretrained model folder from disk (config ``voice.asr_model_dir``, relative to the install's
``models/``); nothing is fetched from a model hub. When that folder is missing or broken, pocketsphinx
(whose English model ships inside its wheel) takes over and the reason is logged — never what was said.
The result names the engine that produced it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from tara_desktop.errors import TaraError
from tara_desktop.voice.audio import ASR_RATE, Speech, prepare_speech

log = logging.getLogger(__name__)

CHUNK_SECONDS = 20.0  # long recordings are decoded in windows of this length


class AsrError(TaraError):
    """No speech recogniser could run."""


@dataclass(frozen=True)
class AsrResult:
    text: str
    engine: str  # "speechbrain", "pocketsphinx" or "none" (silence)
    confidence: float  # 0..1
    seconds: float = 0.0  # length of the audio
    fallback_reason: str | None = None  # why the primary engine was not used (no user content)


class AsrEngine(Protocol):
    name: str

    def recognize(self, speech: Speech) -> tuple[str, float]: ...


def resolve_model_dir(configured: str | Path, base: Path | None = None) -> Path:
    """A model folder from config: absolute, or relative to the install's ``models/``."""
    p = Path(configured).expanduser()
    if p.is_absolute():
        return p
    from tara_desktop import paths

    return (base or paths.bundled_models_dir()) / p


def load_speechbrain(model_cls: Any, folder: Path) -> Any:
    """Load a SpeechBrain pretrained interface from a local folder (no hub access, no copies)."""
    folder = Path(folder)
    if not (folder / "hyperparams.yaml").is_file():
        raise AsrError(f"{folder}: no hyperparams.yaml; the model folder is missing or incomplete")
    from speechbrain.utils.fetching import LocalStrategy

    model = model_cls.from_hparams(
        source=str(folder), savedir=str(folder), run_opts={"device": "cpu"},
        local_strategy=LocalStrategy.NO_LINK,
    )
    for name in ("tokenizer", "label_encoder"):
        encoder: Any = getattr(model.hparams, name, None)
        lab2ind = getattr(encoder, "lab2ind", None)
        if lab2ind and hasattr(encoder, "expect_len"):
            encoder.expect_len(len(lab2ind))  # the loaded labels are the model's: say so, no warning
    return model


class SpeechBrainAsr:
    """SpeechBrain ``EncoderASR`` (a CTC model) from a pretrained folder."""

    name = "speechbrain"

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = Path(model_dir)
        self._model: Any = None
        self._lock = threading.Lock()

    def load(self) -> Any:
        with self._lock:
            if self._model is None:
                from speechbrain.inference.ASR import EncoderASR

                self._model = load_speechbrain(EncoderASR, self.model_dir)
            return self._model

    def recognize(self, speech: Speech) -> tuple[str, float]:
        import torch

        model = self.load()
        step = int(CHUNK_SECONDS * ASR_RATE)
        texts: list[str] = []
        confidences: list[float] = []
        for start in range(0, speech.audio.size, step):
            chunk = speech.audio[start : start + step]
            if chunk.size < ASR_RATE // 10:
                continue
            wavs = torch.from_numpy(np.ascontiguousarray(chunk))[None]
            lens = torch.ones(1)
            with torch.no_grad():
                enc = model.encode_batch(wavs, lens)
                hyps = model.decoding_function(enc, lens)
            tokens = hyps[0]
            text = "".join(model.tokenizer.decode_ndim(tokens)) if tokens else ""
            probs = enc[0].exp()
            best = probs.max(dim=-1)
            speech_frames = best.indices != 0  # frames not on the CTC blank
            conf = float(best.values[speech_frames].mean()) if bool(speech_frames.any()) else 0.0
            if text.strip():
                texts.append(" ".join(text.split()))
                confidences.append(conf)
        if not texts:
            return "", 0.0
        return " ".join(texts), float(np.mean(confidences))


class PocketSphinxAsr:
    """CMU PocketSphinx with the US-English model that ships inside the ``pocketsphinx`` wheel."""

    name = "pocketsphinx"

    def __init__(self) -> None:
        self._decoder: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
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

    def recognize(self, speech: Speech) -> tuple[str, float]:
        with self._lock:
            decoder = self._load()
            pcm = (np.clip(speech.audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
            decoder.start_utt()
            decoder.process_raw(pcm, no_search=False, full_utt=True)
            decoder.end_utt()
            hyp = decoder.hyp()
            if hyp is None:
                return "", 0.0
            text = " ".join(w for w in hyp.hypstr.split() if not w.startswith("<"))
            try:
                prob = float(hyp.prob)  # the hypothesis posterior, 0..1
            except (TypeError, ValueError):
                prob = 0.0
            if not text:
                return "", 0.0
            # The posterior is not always computed (0, or 1 exactly); then report an honest "unknown" 0.5.
            return text, prob if 0.0 < prob < 1.0 else 0.5


class SpeechRecognizer:
    """The ASR the app uses: SpeechBrain when its model folder loads, else pocketsphinx."""

    def __init__(self, model_dir: Path | None, *, fallback: AsrEngine | None = None,
                 use_fallback: bool = True) -> None:
        self.primary: SpeechBrainAsr | None = SpeechBrainAsr(model_dir) if model_dir is not None else None
        self.fallback: AsrEngine | None = (fallback or PocketSphinxAsr()) if use_fallback else None
        self._primary_error: str | None = None if model_dir is not None else "no SpeechBrain model configured"

    @classmethod
    def from_config(cls, voice_settings: Any | None = None) -> SpeechRecognizer:
        if voice_settings is None:
            from tara_desktop.config import load_configs

            voice_settings = load_configs().app.voice
        return cls(resolve_model_dir(voice_settings.asr_model_dir))

    @property
    def primary_error(self) -> str | None:
        """Why SpeechBrain is not in use (None while it works)."""
        return self._primary_error

    def warm_up(self) -> str:
        """Load the primary model now (so the first push-to-talk is fast); return the engine name in use."""
        if self.primary is not None and self._primary_error is None:
            try:
                self.primary.load()
                return self.primary.name
            except Exception as exc:
                self._disable_primary(exc)
        return self.fallback.name if self.fallback is not None else "none"

    def _disable_primary(self, exc: BaseException) -> None:
        where = self.primary.model_dir if self.primary is not None else "?"
        reason = f"{exc.__class__.__name__} loading {where}"
        if isinstance(exc, TaraError):
            reason = str(exc)
        self._primary_error = reason
        log.warning("SpeechBrain ASR unavailable, using the fallback: %s", reason)

    def transcribe(self, audio: npt.ArrayLike | Speech, sr: int = ASR_RATE) -> AsrResult:
        speech = audio if isinstance(audio, Speech) else prepare_speech(audio, sr)
        if speech.silent:
            return AsrResult("", "none", 0.0, speech.seconds, self._primary_error)
        if self.primary is not None and self._primary_error is None:
            try:
                text, conf = self.primary.recognize(speech)
                return AsrResult(text, self.primary.name, conf, speech.seconds)
            except TaraError as exc:
                self._disable_primary(exc)
            except Exception as exc:  # a broken model file must not cost the user their turn
                self._disable_primary(exc)
        if self.fallback is None:
            raise AsrError(f"speech recognition is unavailable ({self._primary_error}); reinstall TARA's voice models")
        text, conf = self.fallback.recognize(speech)
        return AsrResult(text, self.fallback.name, conf, speech.seconds, self._primary_error)


def transcribe(audio: npt.ArrayLike | Speech, sr: int = ASR_RATE, *,
               recognizer: SpeechRecognizer | None = None) -> AsrResult:
    """Transcribe audio with the configured recogniser (built from config when not given)."""
    return (recognizer or SpeechRecognizer.from_config()).transcribe(audio, sr)
