"""Emotion in the voice: a label ("neutral", "happy", "sad", "angry"), a confidence, and the engine that said so.

Primary: a real SpeechBrain speech-emotion model the user downloaded (config ``voice.emotion_model``, by
default ``speechbrain/emotion-recognition-wav2vec2-IEMOCAP`` from ``models/voice_catalog.yaml``), loaded with
SpeechBrain's own interfaces (its ``custom_interface.py`` through ``foreign_class``, or ``EncoderClassifier``).
Without it: prosody (energy, pitch, speaking rate measured on the audio) combined with the transcript's
words (``tara_desktop.routing.emotion_text.detect_text_emotion`` when the router provides it); the engine is
then reported as ``prosody+words`` (or ``prosody`` / ``words`` alone), never as a model.

The reply's tone follows the emotion only when the confidence reaches ``voice.emotion_min_confidence``
(:attr:`EmotionResult.tone`); below it the reply is neutral.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from tara_desktop.errors import TaraError
from tara_desktop.voice.audio import ASR_RATE, Speech, prepare_speech, rms_dbfs
from tara_desktop.voice.engines import EngineChain, resolve_voice_settings
from tara_desktop.voice.speechbrain_model import SpeechBrainModel, load_speechbrain, load_speechbrain_foreign

if TYPE_CHECKING:
    from speechbrain.inference.interfaces import Pretrained

    from tara_desktop.config import VoiceSettings

log = logging.getLogger(__name__)

LABELS = ("neutral", "happy", "sad", "angry")

TextEmotion = Callable[[str], tuple[str, float]]


DEFAULT_MIN_CONFIDENCE = 0.6
# Label names used by SpeechBrain emotion models → TARA's labels.
SPEECHBRAIN_LABELS = {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry",
                      "fru": "angry", "neutral": "neutral", "happy": "happy", "angry": "angry"}


@dataclass(frozen=True)
class EmotionResult:
    label: str
    confidence: float
    engine: str  # "speechbrain", "prosody+words", "prosody", "words" or "none"
    scores: dict[str, float] = field(default_factory=dict)
    fallback_reason: str | None = None
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    model: str | None = None  # the SpeechBrain model id when engine == "speechbrain"

    @property
    def tone(self) -> str:
        """The emotion the reply may adapt to: the label when confident enough, else "neutral"."""
        return self.label if self.confidence >= self.min_confidence else "neutral"


@dataclass(frozen=True)
class Prosody:
    """Measured on 16 kHz speech: level of the voiced part, pitch and a speaking-rate estimate."""

    energy_dbfs: float
    pitch_hz: float  # median F0 of voiced frames, 0 when none was found
    pitch_spread: float  # interquartile range of F0 / median (0 when none)
    syllables_per_s: float
    voiced_seconds: float


def measure_prosody(audio: npt.NDArray[np.float32], sr: int = ASR_RATE) -> Prosody:
    frame, hop = int(0.04 * sr), int(0.01 * sr)
    if audio.size < frame:
        return Prosody(-120.0, 0.0, 0.0, 0.0, 0.0)
    n = 1 + (audio.size - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
    frames = audio[idx].astype(np.float64)
    rms = np.sqrt(np.mean(frames**2, axis=1) + 1e-12)
    db = 20 * np.log10(rms)
    active = db > max(db.max() - 30.0, -60.0)
    energy = rms_dbfs(frames[active]) if active.any() else -120.0
    # Pitch by autocorrelation on active frames (60-400 Hz).
    lo, hi = int(sr / 400), int(sr / 60)
    window = np.hanning(frame)
    f0: list[float] = []
    for i in np.flatnonzero(active)[::2]:
        x = frames[i] - frames[i].mean()
        x = x * window
        ac = np.fft.irfft(np.abs(np.fft.rfft(x, 2 * frame)) ** 2)[: hi + 1]
        if ac[0] <= 0:
            continue
        lag = lo + int(np.argmax(ac[lo : hi + 1]))
        if ac[lag] / ac[0] > 0.4:
            f0.append(sr / lag)
    pitch = float(np.median(f0)) if f0 else 0.0
    spread = float((np.percentile(f0, 75) - np.percentile(f0, 25)) / pitch) if len(f0) > 3 and pitch else 0.0
    # Speaking rate: peaks of the smoothed energy envelope (syllable nuclei) per voiced second.
    env = np.convolve(db, np.ones(5) / 5, mode="same")
    peaks = (env[1:-1] > env[:-2]) & (env[1:-1] >= env[2:]) & (env[1:-1] > env.max() - 20) & active[1:-1]
    count, last = 0, -100
    for i in np.flatnonzero(peaks).tolist():
        if i - last >= 8:  # at least 80 ms between nuclei
            count += 1
            last = int(i)
    voiced_s = float(active.sum()) * hop / sr
    rate = count / voiced_s if voiced_s > 0.2 else 0.0
    return Prosody(energy, pitch, spread, rate, voiced_s)


def prosody_scores(p: Prosody) -> dict[str, float]:
    """Heuristic scores from prosody: fast + high = happy, fast/loud + low = angry, slow/low/quiet = sad."""
    if p.voiced_seconds <= 0.2:
        return {"neutral": 1.0, "happy": 0.0, "sad": 0.0, "angry": 0.0}
    fast = np.clip((p.syllables_per_s - 4.0) / 2.0, -1, 1)  # ~4 syllables/s is a calm pace
    high = np.clip((p.pitch_hz - 150.0) / 80.0, -1, 1) if p.pitch_hz else 0.0
    loud = np.clip((p.energy_dbfs + 20.0) / 10.0, -1, 1)  # about -20 dBFS is a normal close-mic level
    lively = np.clip((p.pitch_spread - 0.15) / 0.15, -1, 1)
    raw = {
        "neutral": 0.6 - 0.4 * (abs(fast) + abs(high) + abs(loud)) / 3,
        "happy": 0.5 * fast + 0.5 * high + 0.2 * lively,
        "sad": -0.5 * fast - 0.3 * high - 0.4 * loud - 0.2 * lively,
        "angry": 0.4 * fast + 0.6 * loud - 0.3 * high,
    }
    vals = np.array([raw[k] for k in LABELS]) * 3.0
    e = np.exp(vals - vals.max())
    probs = e / e.sum()
    return {k: float(v) for k, v in zip(LABELS, probs, strict=True)}


def default_text_emotion() -> TextEmotion:
    """The router's text-emotion detector (emotion from the words)."""
    from tara_desktop.routing.emotion_text import detect_text_emotion

    return detect_text_emotion


class SpeechBrainEmotion(SpeechBrainModel):
    """A SpeechBrain emotion model folder: its own ``custom_interface.py`` (as on the model hub, through
    ``foreign_class``) or SpeechBrain's ``EncoderClassifier``."""

    def __init__(self, model_dir: Path, *, interface: str | None = None, labels: dict[str, str] | None = None,
                 model: str | None = None) -> None:
        super().__init__(model_dir, interface=interface, model=model)
        self.labels = {**SPEECHBRAIN_LABELS, **(labels or {})}

    def _guess_interface(self) -> str:
        if (self.model_dir / "custom_interface.py").is_file():
            return "foreign:custom_interface.py:CustomEncoderWav2vec2Classifier"
        return "EncoderClassifier"

    def _load(self, interface: str) -> Pretrained:
        if interface.startswith("foreign:"):
            _, module_file, class_name = interface.split(":", 2)
            return load_speechbrain_foreign(self.model_dir, module_file, class_name)
        from speechbrain.inference.classifiers import EncoderClassifier

        return load_speechbrain(EncoderClassifier, self.model_dir)

    def classify(self, speech: Speech) -> tuple[str, float, dict[str, float]]:
        import torch

        model = self.load()
        wavs = torch.from_numpy(np.ascontiguousarray(speech.audio[: 30 * ASR_RATE]))[None]
        with torch.no_grad():
            out_prob, _score, _index, _labels = model.classify_batch(wavs, torch.ones(1))
        probs = out_prob[0].reshape(-1).float()
        if float(probs.min()) < 0 or float(probs.sum()) > 1.0001:  # log-probabilities
            probs = probs.exp()
        probs = probs / probs.sum()
        encoder = model.hparams.label_encoder
        scores: dict[str, float] = {}
        for i in range(probs.shape[0]):
            raw = str(encoder.decode_ndim(i))
            label = self.labels.get(raw, raw)
            scores[label] = scores.get(label, 0.0) + float(probs[i])
        label = max(scores, key=lambda k: scores[k])
        return label, scores[label], scores


class EmotionDetector:
    """Speech emotion: SpeechBrain when its folder loads, else prosody + transcript wording."""

    def __init__(self, model_dir: Path | SpeechBrainEmotion | None, *, text_emotion: TextEmotion | bool | None = True,
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE, missing_reason: str | None = None) -> None:
        if isinstance(model_dir, SpeechBrainEmotion):
            self.primary: SpeechBrainEmotion | None = model_dir
        else:
            self.primary = SpeechBrainEmotion(model_dir) if model_dir is not None else None
        self.min_confidence = min_confidence
        missing = [] if self.primary is not None else [missing_reason or "no SpeechBrain emotion model is installed"]
        self._chain = EngineChain([self.primary] if self.primary is not None else [], reasons=missing,
                                  what="emotion model", then="prosody+words", logger=log)
        if text_emotion is True:
            self.text_emotion: TextEmotion | None = default_text_emotion()
        elif text_emotion is False:
            self.text_emotion = None
        else:
            self.text_emotion = text_emotion

    @classmethod
    def from_config(cls, voice_settings: VoiceSettings | None = None, *,
                    profile: Path | None = None) -> EmotionDetector:
        from tara_desktop.voice import models as vm

        settings = resolve_voice_settings(voice_settings)
        choice = settings.emotion_model
        threshold = settings.emotion_min_confidence
        if not choice or choice == "none":
            return cls(None, min_confidence=threshold, missing_reason="no emotion model configured")
        try:
            entry = vm.catalog_entry(choice)
        except TaraError:
            folder = vm.resolve_model_dir(choice)
            if not (folder / "hyperparams.yaml").is_file():
                return cls(None, min_confidence=threshold, missing_reason=f"{folder}: no SpeechBrain model there")
            return cls(folder, min_confidence=threshold)
        where = vm.model_location(entry, profile)
        if where is None:
            return cls(None, min_confidence=threshold,
                       missing_reason=f"{entry.id} is not downloaded (`tara voice download {entry.id}`)")
        return cls(SpeechBrainEmotion(where, interface=entry.interface, labels=entry.labels, model=entry.id),
                   min_confidence=threshold)

    @property
    def primary_error(self) -> str | None:
        return self._chain.primary_error

    def warm_up(self) -> str:
        """Load the SpeechBrain model now when there is one; return the engine that will be used. The model
        is loaded once: a second call returns at once."""
        engine = self._chain.warm_up()
        return engine.name if engine is not None else "prosody+words"

    def detect(self, audio: npt.ArrayLike | Speech, sr: int = ASR_RATE, transcript: str = "") -> EmotionResult:
        speech = audio if isinstance(audio, Speech) else prepare_speech(audio, sr)
        if speech.silent:
            return self._fallback(None, transcript)
        done = self._chain.run(lambda engine: engine.classify(speech))
        if done is not None:
            engine, (label, conf, scores) = done
            return EmotionResult(label, conf, engine.name, scores, None, self.min_confidence, engine.model)
        return self._fallback(speech, transcript)

    def _fallback(self, speech: Speech | None, transcript: str) -> EmotionResult:
        scores = prosody_scores(measure_prosody(speech.audio)) if speech is not None else {}
        engine = "prosody" if scores else "none"
        if transcript.strip() and self.text_emotion is not None:
            try:
                t_label, t_conf = self.text_emotion(transcript)
            except Exception as exc:
                log.warning("text emotion failed (%s)", exc.__class__.__name__)
            else:
                if t_label in LABELS:
                    t_conf = float(np.clip(t_conf, 0.0, 1.0))
                    text_scores = {k: (t_conf if k == t_label else (1 - t_conf) / (len(LABELS) - 1))
                                   for k in LABELS}
                    if scores:
                        # Words are a stronger cue than the prosody heuristics.
                        scores = {k: 0.4 * scores[k] + 0.6 * text_scores[k] for k in LABELS}
                        engine = "prosody+words"
                    else:
                        scores, engine = text_scores, "words"
        if not scores:
            return EmotionResult("neutral", 0.0, "none", {}, self.primary_error, self.min_confidence)
        label = max(scores, key=lambda k: scores[k])
        return EmotionResult(label, float(scores[label]), engine, scores, self.primary_error, self.min_confidence)
