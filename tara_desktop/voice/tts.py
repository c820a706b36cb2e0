"""Text to speech: Edge TTS first, the offline system voice (pyttsx3 / espeak-ng) when it is unreachable.

Edge TTS (Microsoft's online neural voices, a voice per domain from config) needs a network. When it cannot
connect or does not answer within ``voice.edge_tts_timeout_s``, the same sentence is spoken by pyttsx3 (SAPI5
on Windows; espeak-ng on Linux, see :func:`default_fallbacks`) and a circuit breaker stops trying Edge TTS for ``voice.edge_tts_retry_after_s``
so an offline laptop does not wait for the timeout on every sentence. Every result names its engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tara_desktop.errors import TaraError
from tara_desktop.voice.audio import Audio, AudioError, read_wav_bytes, wav_bytes

log = logging.getLogger(__name__)

DEFAULT_EDGE_VOICE = "en-US-AvaNeural"


class TtsError(TaraError):
    """No speech engine could speak the text."""


class TtsUnavailable(Exception):
    """One engine failed (no network, timeout, missing driver); the next engine is tried."""


@dataclass(frozen=True)
class TtsResult:
    audio: Audio
    sample_rate: int
    engine: str  # "edge-tts", "pyttsx3" or "espeak-ng"
    fallback_reason: str | None = None

    @property
    def seconds(self) -> float:
        return self.audio.size / float(self.sample_rate) if self.sample_rate else 0.0

    def wav(self) -> bytes:
        return wav_bytes(self.audio, self.sample_rate)


class TtsEngine(Protocol):
    name: str

    def synthesize(self, text: str, voice: str | None) -> tuple[Audio, int]: ...


class CircuitBreaker:
    """After a failure, refuse attempts for ``retry_after_s`` (by ``clock``), then allow one trial."""

    def __init__(self, retry_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._opened_at: float | None = None
        self._lock = threading.Lock()
        self.failures = 0

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._opened_at is not None and self._clock() - self._opened_at < self.retry_after_s

    def allow(self) -> bool:
        return not self.is_open

    def record_failure(self) -> None:
        with self._lock:
            self._opened_at = self._clock()
            self.failures += 1

    def record_success(self) -> None:
        with self._lock:
            self._opened_at = None


# ---- engines ----------------------------------------------------------------------------------------------
class EdgeTts:
    """Microsoft Edge's online TTS through ``edge-tts`` (MP3 from the service, decoded to an array)."""

    name = "edge-tts"

    def __init__(self, timeout_s: float = 4.0, *, proxy: str | None = None) -> None:
        self.timeout_s = timeout_s
        self.proxy = proxy

    def synthesize(self, text: str, voice: str | None) -> tuple[Audio, int]:
        async def fetch() -> bytes:
            import edge_tts

            communicate = edge_tts.Communicate(text, voice or DEFAULT_EDGE_VOICE, proxy=self.proxy)
            chunks: list[bytes] = []
            async for chunk in communicate.stream():
                if chunk.get("type") == "audio" and chunk.get("data"):
                    chunks.append(chunk["data"])
            return b"".join(chunks)

        box: dict[str, Any] = {}

        def worker() -> None:
            # Own thread and event loop: a DNS lookup that hangs cannot hold the caller past the timeout.
            try:
                box["data"] = asyncio.run(fetch())
            except BaseException as exc:
                box["error"] = exc

        thread = threading.Thread(target=worker, name="tara-edge-tts", daemon=True)
        thread.start()
        thread.join(self.timeout_s)
        if thread.is_alive():
            raise TtsUnavailable(f"no answer within {self.timeout_s:g} s")
        if "error" in box:
            error = box["error"]
            if isinstance(error, ImportError):
                raise TtsUnavailable("edge-tts is not installed")
            raise TtsUnavailable(f"{error.__class__.__name__}")
        data = box.get("data", b"")
        if not data:
            raise TtsUnavailable("the service returned no audio")
        try:
            return read_wav_bytes(data)
        except AudioError as exc:
            raise TtsUnavailable("the service's MP3 audio could not be decoded") from exc


class _PrivateFile:
    """A file in a fresh 0700 temp folder, removed on exit (engines that can only write to a path)."""

    def __enter__(self) -> Path:
        self._dir = tempfile.mkdtemp(prefix="tara-tts-")
        os.chmod(self._dir, 0o700)
        return Path(self._dir) / "speech.wav"

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


class Pyttsx3Tts:
    """The operating system's voice through pyttsx3: SAPI5 on Windows, espeak-ng on Linux.

    pyttsx3 drivers are tied to the thread that created them (COM on Windows, the espeak callback on Linux),
    so every utterance runs on one long-lived worker thread, one at a time.
    """

    name = "pyttsx3"
    _executor: ThreadPoolExecutor | None = None
    _executor_lock = threading.Lock()

    def __init__(self, rate_wpm: int | None = None, timeout_s: float = 60.0) -> None:
        self.rate_wpm = rate_wpm
        self.timeout_s = timeout_s

    @classmethod
    def _worker(cls) -> ThreadPoolExecutor:
        with cls._executor_lock:
            if cls._executor is None:
                cls._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tara-pyttsx3")
            return cls._executor

    def synthesize(self, text: str, voice: str | None) -> tuple[Audio, int]:
        future = self._worker().submit(self._synthesize, text)
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            raise TtsUnavailable(f"pyttsx3 did not finish within {self.timeout_s:g} s") from None

    def _synthesize(self, text: str) -> tuple[Audio, int]:
        try:
            import pyttsx3
        except ImportError as exc:
            raise TtsUnavailable("pyttsx3 is not installed") from exc
        with _PrivateFile() as out:
            try:
                # pyttsx3's espeak driver prints "Audio saved to ..." on stdout: keep stdout for our output.
                with contextlib.redirect_stdout(io.StringIO()):
                    engine = pyttsx3.init()
                    if self.rate_wpm:
                        engine.setProperty("rate", self.rate_wpm)
                    engine.save_to_file(text, str(out))
                    engine.runAndWait()
            except Exception as exc:  # no driver (espeak-ng/SAPI5 missing), driver errors
                raise TtsUnavailable(f"pyttsx3 failed ({exc.__class__.__name__})") from None
            if not out.exists() or out.stat().st_size <= 44:
                raise TtsUnavailable("pyttsx3 wrote no audio")
            try:
                return read_wav_bytes(out.read_bytes())
            except AudioError as exc:
                raise TtsUnavailable("pyttsx3 wrote unreadable audio") from exc


class EspeakTts:
    """espeak-ng as a subprocess, text on stdin and WAV on stdout (nothing on disk, nothing in argv)."""

    name = "espeak-ng"

    def __init__(self, voice: str = "en-us", timeout_s: float = 30.0,
                 executables: Sequence[str] = ("espeak-ng", "espeak")) -> None:
        self.voice = voice
        self.timeout_s = timeout_s
        self.executables = tuple(executables)

    def synthesize(self, text: str, voice: str | None) -> tuple[Audio, int]:
        exe = next((found for name in self.executables if (found := shutil.which(name))), None)
        if exe is None:
            raise TtsUnavailable("espeak-ng is not installed")
        try:
            proc = subprocess.run([exe, "-v", self.voice, "--stdout"], input=text.encode("utf-8"),
                                  capture_output=True, timeout=self.timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TtsUnavailable(f"espeak-ng failed ({exc.__class__.__name__})") from None
        if proc.returncode != 0 or len(proc.stdout) <= 44:
            raise TtsUnavailable(f"espeak-ng exited with {proc.returncode}")
        return _decode_streamed_wav(proc.stdout)


def _decode_streamed_wav(data: bytes) -> tuple[Audio, int]:
    """WAV written to a pipe has placeholder sizes in its header; read the PCM after the header."""
    try:
        return read_wav_bytes(data)
    except AudioError:
        pass
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise TtsUnavailable("espeak-ng wrote something that is not WAV")
    pos, sr, channels = 12, 22050, 1
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if cid == b"fmt ":
            channels = int.from_bytes(data[pos + 10 : pos + 12], "little")
            sr = int.from_bytes(data[pos + 12 : pos + 16], "little")
        if cid == b"data":
            pcm = np.frombuffer(data[pos + 8 : len(data) - (len(data) - pos - 8) % (2 * channels)], dtype="<i2")
            arr = pcm.reshape(-1, channels).mean(axis=1) / 32768.0
            return arr.astype(np.float32), sr
        pos += 8 + size
    raise TtsUnavailable("espeak-ng's WAV has no audio")


# ---- the synthesizer the app uses ---------------------------------------------------------------------------
class SpeechSynthesizer:
    """Edge TTS behind a circuit breaker, then the offline engines, one sentence at a time."""

    def __init__(self, *, edge: TtsEngine | None = None, fallbacks: Sequence[TtsEngine] | None = None,
                 breaker: CircuitBreaker | None = None) -> None:
        self.edge = edge
        self.fallbacks: list[TtsEngine] = list(fallbacks) if fallbacks is not None else default_fallbacks()
        self.breaker = breaker or CircuitBreaker(300.0)

    @classmethod
    def from_config(cls, voice_settings: Any | None = None, *, clock: Callable[[], float] = time.monotonic,
                    use_edge: bool = True) -> SpeechSynthesizer:
        if voice_settings is None:
            from tara_desktop.config import load_configs

            voice_settings = load_configs().app.voice
        edge = EdgeTts(voice_settings.edge_tts_timeout_s) if use_edge else None
        return cls(edge=edge, breaker=CircuitBreaker(voice_settings.edge_tts_retry_after_s, clock))

    def speak(self, text: str, voice: str | None = None) -> TtsResult:
        """Speech for ``text`` (one sentence or a short paragraph) as a mono array."""
        text = " ".join(text.split())
        if not text:
            raise TtsError("there is no text to speak; give some words")
        reason: str | None = None
        if self.edge is not None:
            if self.breaker.allow():
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


def default_fallbacks() -> list[TtsEngine]:
    """Offline voices in order of preference for this OS.

    Windows/macOS: pyttsx3 (SAPI5 / NSSpeechSynthesizer). Linux: espeak-ng as a subprocess first, because
    pyttsx3 2.99's espeak driver returns before it has written sentences longer than about 60 characters
    (and then writes them late, into the next call); pyttsx3 stays as the next choice.
    """
    if sys.platform.startswith("win"):
        return [Pyttsx3Tts()]
    if sys.platform == "darwin":
        return [Pyttsx3Tts(), EspeakTts()]
    return [EspeakTts(), Pyttsx3Tts()]
