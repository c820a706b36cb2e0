"""The voices TARA can speak with besides Piper, and what every voice engine promises.

An engine's :meth:`~TtsEngine.synthesize` gives mono float32 audio and its sample rate, or raises
:class:`TtsUnavailable` (no network, timeout, missing driver) so that the synthesizer
(:class:`tara_desktop.voice.tts.SpeechSynthesizer`) tries the next one.

* Edge TTS (:class:`EdgeTts`) sends the text to Microsoft's speech service; the synthesizer uses it only with
  the ``online_voice`` consent, behind a :class:`CircuitBreaker`.
* The system voice: pyttsx3 (SAPI5 on Windows, espeak-ng on Linux) and espeak-ng as a subprocess
  (:func:`default_fallbacks` orders them for this OS).

Piper, the offline neural voice, is :mod:`tara_desktop.voice.piper`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from tara_desktop.files import PRIVATE_DIR, restrict
from tara_desktop.voice.audio import Audio, AudioError, read_wav_bytes

DEFAULT_EDGE_VOICE = "en-US-AvaNeural"


class TtsUnavailable(Exception):
    """One engine failed (no network, timeout, missing driver); the next engine is tried."""


class TtsEngine(Protocol):
    """A voice: :meth:`synthesize` gives mono audio and its sample rate, or raises :class:`TtsUnavailable`."""

    @property
    def name(self) -> str: ...

    def synthesize(self, text: str, voice: str | None) -> tuple[Audio, int]: ...


@runtime_checkable
class WarmableEngine(TtsEngine, Protocol):
    """An engine with a slow first sentence that :meth:`warm_up` pays in advance (Piper)."""

    def warm_up(self) -> None: ...


@runtime_checkable
class ClosableEngine(TtsEngine, Protocol):
    """An engine holding a process or files until :meth:`close`."""

    def close(self) -> None: ...


def decode_audio(data: bytes, unreadable: str) -> tuple[Audio, int]:
    """Audio an engine produced, or :class:`TtsUnavailable` saying ``unreadable`` when it cannot be read."""
    try:
        return read_wav_bytes(data)
    except AudioError as exc:
        raise TtsUnavailable(unreadable) from exc


def private_temp_dir(prefix: str) -> Path:
    """A fresh temp folder only this user can enter (0700), for engines that write audio to files."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    restrict(folder, PRIVATE_DIR)
    return folder


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


# ---- Edge TTS (online, only with consent) -----------------------------------------------------------------
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

        fetched: list[bytes] = []
        failed: list[BaseException] = []

        def worker() -> None:
            # Own thread and event loop: a DNS lookup that hangs cannot hold the caller past the timeout.
            try:
                fetched.append(asyncio.run(fetch()))
            except BaseException as exc:
                failed.append(exc)

        thread = threading.Thread(target=worker, name="tara-edge-tts", daemon=True)
        thread.start()
        thread.join(self.timeout_s)
        if thread.is_alive():
            raise TtsUnavailable(f"no answer within {self.timeout_s:g} s")
        if failed:
            if isinstance(failed[0], ImportError):
                raise TtsUnavailable("edge-tts is not installed")
            raise TtsUnavailable(f"{failed[0].__class__.__name__}")
        data = fetched[0] if fetched else b""
        if not data:
            raise TtsUnavailable("the service returned no audio")
        return decode_audio(data, "the service's MP3 audio could not be decoded")


# ---- the system voice ---------------------------------------------------------------------------------------
class _PrivateFile:
    """A file in a fresh 0700 temp folder, removed on exit (engines that can only write to a path)."""

    def __enter__(self) -> Path:
        self._dir = private_temp_dir("tara-tts-")
        return self._dir / "speech.wav"

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
            _wait_until_written(out, 5.0)  # the espeak driver may return before it has written the file
            if not out.exists() or out.stat().st_size <= 44:
                raise TtsUnavailable("pyttsx3 wrote no audio")
            return decode_audio(out.read_bytes(), "pyttsx3 wrote unreadable audio")


def _wait_until_written(path: Path, timeout_s: float) -> None:
    """Wait until ``path`` exists and its size has not changed for 0.1 s (at most ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    last = -1
    while time.monotonic() < deadline:
        size = path.stat().st_size if path.exists() else -1
        if size > 44 and size == last:
            return
        last = size
        time.sleep(0.1)


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
