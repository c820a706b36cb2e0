"""The two voice calls the API makes, in one place, so a change in ``tara_desktop.voice`` is one edit here.

Both run offline: transcription with TARA's configured recogniser, speech with the offline voices only
(the API never sends text to an online TTS service).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from tara_desktop.config import VoiceSettings
    from tara_desktop.voice.asr import SpeechRecognizer
    from tara_desktop.voice.tts import SpeechSynthesizer

_lock = threading.Lock()
_recognizers: dict[int, SpeechRecognizer] = {}
_synths: dict[int, SpeechSynthesizer] = {}


def transcribe_wav(data: bytes, voice_settings: VoiceSettings) -> tuple[str, str]:
    """Text heard in a WAV file's bytes, and the engine's name. Raises TaraError for audio it cannot read."""
    from tara_desktop.voice.asr import SpeechRecognizer
    from tara_desktop.voice.audio import prepare_speech, read_wav_bytes

    audio, sr = read_wav_bytes(data)
    speech = prepare_speech(audio, sr)
    with _lock:
        recognizer = _recognizers.get(id(voice_settings))
        if recognizer is None:
            recognizer = _recognizers[id(voice_settings)] = SpeechRecognizer.from_config(voice_settings)
    heard = recognizer.transcribe(speech)
    return str(heard.text), str(heard.engine)


def speak_wav(text: str, voice_settings: VoiceSettings, voice: str | None = None) -> tuple[bytes, str]:
    """WAV bytes of ``text`` spoken by the offline voice, and the engine's name."""
    import numpy as np

    from tara_desktop.voice.audio import resample, wav_bytes
    from tara_desktop.voice.sentences import split_sentences
    from tara_desktop.voice.tts import SpeechSynthesizer

    with _lock:
        synth = _synths.get(id(voice_settings))
        if synth is None:
            synth = _synths[id(voice_settings)] = SpeechSynthesizer.from_config(voice_settings, use_edge=False)
    parts: list[np.ndarray] = []
    engines: list[str] = []
    sr = 0
    for sentence in split_sentences([text]) or [text]:
        spoken = synth.speak(sentence, voice)
        sr = sr or int(spoken.sample_rate)
        parts.append(resample(spoken.audio, spoken.sample_rate, sr))
        parts.append(np.zeros(int(sr * 0.15), dtype=np.float32))
        engines.append(str(spoken.engine))
    audio = np.concatenate(parts[:-1]) if len(parts) > 1 else parts[0]
    return wav_bytes(audio, sr), ", ".join(dict.fromkeys(engines))
