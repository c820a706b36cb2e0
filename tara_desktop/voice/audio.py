"""Audio in and out: WAV and array I/O, resampling, levels, microphone capture and interruptible playback.

Audio inside TARA is a mono float32 numpy array in -1..1 plus its sample rate. ASR and emotion work at
16 kHz (:data:`ASR_RATE`); :func:`prepare_speech` turns any readable recording (stereo, 8 kHz, clipped,
int16...) into that, or raises :class:`AudioError` with one sentence saying what was wrong.

``sounddevice`` (PortAudio) is imported only when a microphone or speaker is used, so a machine without
PortAudio still transcribes files and writes speech to files.
"""

from __future__ import annotations

import io
import logging
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal, TypedDict

import numpy as np
import numpy.typing as npt

from tara_desktop.errors import TaraError

if TYPE_CHECKING:
    from sounddevice import CallbackFlags, InputStream

log = logging.getLogger(__name__)

ASR_RATE = 16_000
MAX_SPEECH_SECONDS = 300.0  # one push-to-talk turn; longer files are refused with a clear error
SILENCE_DBFS = -55.0

Audio = npt.NDArray[np.float32]


class AudioError(TaraError):
    """A recording cannot be read or used (missing, empty, corrupt, unsupported format, too long)."""


class AudioDeviceError(TaraError):
    """No microphone/speaker, the device is busy, or PortAudio is not available."""


# ---- arrays -----------------------------------------------------------------------------------------------
def to_mono(audio: npt.ArrayLike) -> Audio:
    """Float32 mono in -1..1 from an array of shape (n,) or (n, channels); integer PCM is scaled."""
    arr = np.asarray(audio)
    if arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        scale = float(max(abs(info.min), info.max))
        arr = arr.astype(np.float64)
        if info.min == 0:  # unsigned PCM (8-bit WAV) is centred on the midpoint
            arr = arr - (info.max + 1) / 2
            scale = (info.max + 1) / 2
        arr = arr / scale
    elif arr.dtype.kind != "f":
        raise AudioError(f"audio samples of type {arr.dtype} are not supported; use 16-bit PCM or float WAV")
    if arr.ndim == 2:
        arr = arr.mean(axis=1) if arr.shape[1] > 0 else arr.reshape(-1)
    elif arr.ndim != 1:
        raise AudioError(f"audio with shape {arr.shape} is not supported; use mono or stereo audio")
    out = np.nan_to_num(arr.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(out, -1.0, 1.0)


def resample(audio: Audio, sr_from: int, sr_to: int) -> Audio:
    """Resample mono audio (polyphase filter; exact for integer ratios such as 8 k → 16 k, 48 k → 16 k)."""
    if sr_from <= 0 or sr_to <= 0:
        raise AudioError(f"sample rate {sr_from} Hz is not valid; the recording's header is damaged")
    if sr_from == sr_to or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = math.gcd(sr_from, sr_to)
    out = resample_poly(audio.astype(np.float64), sr_to // g, sr_from // g)
    return np.asarray(out, dtype=np.float32)


def rms_dbfs(audio: npt.ArrayLike) -> float:
    """Level in dB relative to full scale (a full-scale sine is about -3 dBFS; silence is -120)."""
    arr = np.asarray(audio, dtype=np.float64)
    if arr.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(arr))))
    return max(-120.0, 20.0 * math.log10(rms)) if rms > 0 else -120.0


def clipped_fraction(audio: Audio) -> float:
    return float(np.mean(np.abs(audio) >= 0.999)) if audio.size else 0.0


@dataclass(frozen=True)
class Speech:
    """A recording ready for ASR/emotion: 16 kHz mono float32, with what was noticed about it."""

    audio: Audio
    sample_rate: int
    seconds: float
    level_dbfs: float
    silent: bool
    clipped: bool


def prepare_speech(audio: npt.ArrayLike, sr: int, *, max_seconds: float = MAX_SPEECH_SECONDS) -> Speech:
    """Mono, 16 kHz, checked: empty → error, too long → error, silence and clipping noted (not errors)."""
    mono = to_mono(audio)
    if mono.size == 0:
        raise AudioError("the recording is empty; record again and hold the button while speaking")
    seconds = mono.size / float(sr) if sr > 0 else 0.0
    if sr < 4000 or sr > 384_000:
        raise AudioError(f"a sample rate of {sr} Hz is not supported; use 8 to 192 kHz audio")
    if seconds > max_seconds:
        raise AudioError(
            f"the recording is {seconds:.0f} s long; TARA listens to at most {max_seconds:.0f} s "
            "at a time, so split it into shorter parts"
        )
    clipped = clipped_fraction(mono) > 0.01
    mono16 = resample(mono, sr, ASR_RATE)
    level = rms_dbfs(mono16)
    return Speech(mono16, ASR_RATE, seconds, level, level < SILENCE_DBFS, clipped)


def trim_silence(audio: Audio, sr: int, *, margin_s: float = 0.2, floor_db: float = 35.0) -> Audio:
    """Drop leading and trailing stretches more than ``floor_db`` below the loudest 30 ms (keeping a margin);
    Whisper has Silero VAD for this, the other engines get this simple energy trim."""
    frame = max(1, int(0.03 * sr))
    if audio.size < 4 * frame:
        return audio
    frames = audio[: audio.size // frame * frame].reshape(-1, frame).astype(np.float64)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.flatnonzero(db > db.max() - floor_db)
    if loud.size == 0:
        return audio
    margin = int(margin_s * sr)
    start = max(0, int(loud[0]) * frame - margin)
    end = min(audio.size, (int(loud[-1]) + 1) * frame + margin)
    return audio[start:end]


# ---- files ------------------------------------------------------------------------------------------------
def read_wav(path: str | os.PathLike[str]) -> tuple[Audio, int]:
    """Read an audio file (WAV, FLAC, OGG...) as mono float32 and its sample rate."""
    import soundfile as sf

    p = Path(path)
    _check_file(p)
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        decoded = _decode_with_av(p)
        if decoded is not None:
            return decoded
        raise AudioError(f"{p}: not a readable audio file ({_short(exc)}); give a 16-bit PCM WAV file") from None
    except OSError as exc:
        raise AudioError(f"{p}: cannot be read ({exc.strerror or exc}); check the file") from None
    if data.shape[0] == 0:
        raise AudioError(f"{p}: the file has no audio samples; record again or give another WAV file")
    return to_mono(data), int(sr)


def _decode_with_av(p: Path) -> tuple[Audio, int] | None:
    """Decode a file libsndfile cannot read (MP3 or AAC under a .wav name...) with PyAV (FFmpeg), which
    faster-whisper brings; None when it cannot either."""
    try:
        from faster_whisper.audio import decode_audio
    except ImportError:
        return None
    try:
        audio = decode_audio(str(p), sampling_rate=ASR_RATE)
    except Exception:  # av.error.InvalidDataError and friends: not audio
        return None
    arr = np.asarray(audio, dtype=np.float32).reshape(-1)
    return (arr, ASR_RATE) if arr.size else None


def _check_file(p: Path) -> None:
    if not p.exists():
        raise AudioError(f"{p}: file not found; check the path")
    if p.is_dir():
        raise AudioError(f"{p}: is a folder, not an audio file; give a WAV file")
    if p.stat().st_size == 0:
        raise AudioError(f"{p}: the file is empty; record again or give another WAV file")


def open_audio_blocks(path: str | os.PathLike[str], block_seconds: float
                      ) -> tuple[Iterator[tuple[Audio, bool]], int, float]:
    """A file read block by block (mono float32 blocks of about ``block_seconds``, each with "is last"),
    its sample rate and its length in seconds; an hour-long file is never held in memory at once."""
    import soundfile as sf

    p = Path(path)
    _check_file(p)
    try:
        info = sf.info(str(p))
        frames, sr = int(info.frames), int(info.samplerate)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        decoded = _decode_with_av(p)
        if decoded is None:
            raise AudioError(f"{p}: not a readable audio file ({_short(exc)}); give a 16-bit PCM WAV file") from None
        audio, sr = decoded
        step = max(1, int(block_seconds * sr))

        def sliced() -> Iterator[tuple[Audio, bool]]:
            for start in range(0, audio.size, step):
                yield audio[start : start + step], start + step >= audio.size

        return sliced(), sr, audio.size / sr
    except OSError as exc:
        raise AudioError(f"{p}: cannot be read ({exc.strerror or exc}); check the file") from None
    if sr < 4000 or sr > 384_000:
        raise AudioError(f"{p}: a sample rate of {sr} Hz is not supported; use 8 to 192 kHz audio")
    if frames <= 0:
        raise AudioError(f"{p}: the file has no audio samples; record again or give another WAV file")
    step = max(1, int(block_seconds * sr))

    def blocks() -> Iterator[tuple[Audio, bool]]:
        read = 0
        try:
            with sf.SoundFile(str(p)) as fh:
                while True:
                    data = fh.read(step, dtype="float32", always_2d=True)
                    if data.shape[0] == 0:
                        break
                    read += data.shape[0]
                    yield to_mono(data), read >= frames
                    if read >= frames:
                        break
        except (sf.LibsndfileError, RuntimeError) as exc:
            if read == 0:
                raise AudioError(f"{p}: the audio data is damaged ({_short(exc)}); give another file") from None
            log.warning("audio file ends early (damaged after %d frames)", read)

    return blocks(), sr, frames / float(sr)


def read_wav_bytes(data: bytes) -> tuple[Audio, int]:
    """Decode audio held in memory (WAV, or MP3 where libsndfile supports it)."""
    import soundfile as sf

    if not data:
        raise AudioError("the audio data is empty")
    try:
        arr, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise AudioError(f"the audio data cannot be decoded ({_short(exc)})") from None
    return to_mono(arr), int(sr)


def wav_bytes(audio: npt.ArrayLike, sr: int) -> bytes:
    """16-bit PCM WAV bytes of mono audio."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, to_mono(audio), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def write_wav(path: str | os.PathLike[str], audio: npt.ArrayLike, sr: int) -> Path:
    """Write a 16-bit PCM WAV atomically (temp file in the same folder, fsync, replace)."""
    p = Path(path)
    if p.is_dir():
        raise AudioError(f"{p}: is a folder; give a file name ending in .wav")
    if not p.parent.exists():
        raise AudioError(f"{p.parent}: folder not found; create it or choose another output path")
    from tara_desktop.files import atomic_write

    atomic_write(p, wav_bytes(audio, sr))
    return p


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return text[:120]


# ---- devices ----------------------------------------------------------------------------------------------
def _sounddevice() -> ModuleType:
    try:
        import sounddevice as sd
    except (OSError, ImportError) as exc:
        raise AudioDeviceError(
            f"audio devices are unavailable ({_short(exc)}); install PortAudio (libportaudio2) "
            "or use `tara voice transcribe` with a WAV file"
        ) from None
    return sd


class InputDevice(TypedDict):
    index: int
    name: str
    channels: int
    default_samplerate: float


def input_devices() -> list[InputDevice]:
    """Microphones PortAudio knows: ``[{"index", "name", "channels", "default_samplerate"}]``."""
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
    except sd.PortAudioError as exc:
        raise AudioDeviceError(f"audio devices cannot be listed ({_short(exc)}); check the sound system") from None
    return [
        InputDevice(index=i, name=str(d["name"]), channels=int(d["max_input_channels"]),
                    default_samplerate=float(d["default_samplerate"]))
        for i, d in enumerate(devices)
        if d.get("max_input_channels", 0) > 0
    ]


def _resolve_device(sd: ModuleType, device: str | int | None, kind: Literal["input", "output"]) -> int:
    what = "microphone" if kind == "input" else "speaker"
    channels_key = "max_input_channels" if kind == "input" else "max_output_channels"
    try:
        devices = list(sd.query_devices())
    except sd.PortAudioError as exc:
        raise AudioDeviceError(f"audio devices cannot be listed ({_short(exc)}); check the sound system") from None
    usable = [i for i, d in enumerate(devices) if d.get(channels_key, 0) > 0]
    if not usable:
        raise AudioDeviceError(f"no {what} was found; connect one and choose it in Settings")
    if device is None or device == "":
        default = sd.default.device
        idx = default[0 if kind == "input" else 1] if isinstance(default, list | tuple) else default
        if isinstance(idx, int) and idx in usable:
            return idx
        return usable[0]
    if isinstance(device, int) or (isinstance(device, str) and device.isdigit()):
        idx = int(device)
        if idx in usable:
            return idx
        raise AudioDeviceError(f"{what} {idx} does not exist; choose one of the devices listed in Settings")
    matches = [i for i in usable if str(device).lower() in str(devices[i]["name"]).lower()]
    if not matches:
        raise AudioDeviceError(f"no {what} named {device!r} was found; choose one listed in Settings")
    return matches[0]


def _open_error(exc: BaseException, what: str) -> AudioDeviceError:
    text = str(exc).lower()
    if "unavailable" in text or "busy" in text or "-9985" in text:
        return AudioDeviceError(f"the {what} is busy (another program is using it); close it or choose another device")
    if "invalid sample rate" in text or "-9997" in text or "format" in text:
        return AudioDeviceError(f"the {what} does not support 16 kHz mono; choose another device in Settings")
    return AudioDeviceError(f"the {what} cannot be opened ({_short(exc)}); choose another device in Settings")


class RingBuffer:
    """A fixed-capacity, thread-safe float32 buffer keeping the most recent samples."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self._data = np.zeros(capacity, dtype=np.float32)
        self._capacity = capacity
        self._write = 0
        self._size = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._size

    @property
    def capacity(self) -> int:
        return self._capacity

    def write(self, samples: npt.ArrayLike) -> None:
        block = np.asarray(samples, dtype=np.float32).reshape(-1)
        with self._lock:
            if block.size >= self._capacity:
                self._data[:] = block[-self._capacity :]
                self._write, self._size = 0, self._capacity
                return
            end = self._write + block.size
            if end <= self._capacity:
                self._data[self._write : end] = block
            else:
                first = self._capacity - self._write
                self._data[self._write :] = block[:first]
                self._data[: block.size - first] = block[first:]
            self._write = end % self._capacity
            self._size = min(self._capacity, self._size + block.size)

    def read_all(self) -> Audio:
        """The buffered samples, oldest first."""
        with self._lock:
            if self._size < self._capacity:
                return self._data[: self._size].copy()
            return np.concatenate([self._data[self._write :], self._data[: self._write]])

    def tail(self, n: int) -> Audio:
        data = self.read_all()
        return data[-n:] if n < data.size else data

    def clear(self) -> None:
        with self._lock:
            self._write = self._size = 0


class Microphone:
    """Push-to-talk capture: :meth:`start` on press, :meth:`stop` on release returns the audio.

    Captures mono at ``sample_rate`` into a ring buffer of ``max_seconds``; :attr:`level_dbfs` is the live
    level of the last ~50 ms for a meter.
    """

    def __init__(self, device: str | int | None = None, *, sample_rate: int = ASR_RATE,
                 max_seconds: float = MAX_SPEECH_SECONDS) -> None:
        self.device = device
        self.sample_rate = sample_rate
        self._ring = RingBuffer(int(sample_rate * max_seconds))
        self._stream: InputStream | None = None
        self._level = -120.0

    @property
    def level_dbfs(self) -> float:
        return self._level

    @property
    def active(self) -> bool:
        return self._stream is not None

    def _callback(self, indata: npt.NDArray[np.float32], frames: int, time: object, status: CallbackFlags) -> None:
        block = np.asarray(indata, dtype=np.float32)
        mono = block.mean(axis=1) if block.ndim == 2 else block
        self._ring.write(mono)
        self._level = rms_dbfs(mono)

    def start(self) -> None:
        if self._stream is not None:
            return
        sd = _sounddevice()
        idx = _resolve_device(sd, self.device, "input")
        self._ring.clear()
        try:
            stream = sd.InputStream(device=idx, channels=1, samplerate=self.sample_rate, dtype="float32",
                                    blocksize=int(self.sample_rate * 0.05), callback=self._callback)
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise _open_error(exc, "microphone") from None
        self._stream = stream

    def stop(self) -> Audio:
        """Stop capturing and return what was heard (mono float32 at :attr:`sample_rate`)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            except Exception:  # a device that vanished mid-recording: keep what we have
                log.warning("microphone did not close cleanly")
        self._level = -120.0
        return self._ring.read_all()


class Player:
    """Plays audio on a speaker; :meth:`stop` (barge-in) interrupts within one block (~20 ms)."""

    def __init__(self, device: str | int | None = None) -> None:
        self.device = device
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def play(self, audio: npt.ArrayLike, sr: int, stop: threading.Event | None = None) -> bool:
        """Block until played; return False when interrupted by :meth:`stop` or ``stop``."""
        sd = _sounddevice()
        idx = _resolve_device(sd, self.device, "output")
        data = to_mono(audio)
        self._stop.clear()
        block = max(1, int(sr * 0.02))
        try:
            with sd.OutputStream(device=idx, channels=1, samplerate=sr, dtype="float32") as out:
                for start in range(0, data.size, block):
                    if self._stop.is_set() or (stop is not None and stop.is_set()):
                        out.abort()
                        return False
                    out.write(data[start : start + block].reshape(-1, 1))
        except (sd.PortAudioError, ValueError) as exc:
            raise _open_error(exc, "speaker") from None
        return True
