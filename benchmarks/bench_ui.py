"""bench_ui: the GUI's start as a user sees it, and its memory with every model loaded.

    .venv/bin/python benchmarks/bench_ui.py        (BENCH_UI_RUNS=N launches each, default 3)

Each TARA launch is a fresh process that opens the real main window exactly as ``tara-desktop`` does
(offscreen, a fresh profile) and records, in seconds since the process was created:
  shown  - the first frame painted;
  open   - the profile and services open (``assistant_ready``);
  ready  - the router warmed up and the default model loaded (the session's warm-up job finished);
then, in the same process, loads the voice stack the push-to-talk turn uses (ASR warmed up, speech
emotion warmed up, the offline TTS speaking one sentence) and reports the peak RSS of the app process
and of its children (the Piper voice runs as a separate process), from the kernel's high-water marks.

Baselines measured in the same run, interleaved: a bare PySide6 QMainWindow shown by a fresh Python (the
floor of any Qt app here), and the same bare window plus a bare llama-cpp-python load of the same default
model (the floor of "window + model ready").

Targets (issue 16): window shown <= 1.5 s; services ready (router + default model) <= 2.5 s after launch;
peak RSS with the default model, router, ASR and voice loaded <= 1 GB (app process plus children).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

RUNS = int(os.environ.get("BENCH_UI_RUNS", "3"))
TARGET_SHOWN_S = 1.5
TARGET_READY_S = 2.5
TARGET_PEAK_MB = 1024.0
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BASELINE = r"""
import json, resource, sys, time, psutil
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
started = psutil.Process().create_time()
app = QApplication([])
w = QMainWindow(); w.resize(1180, 760); w.show()
marks = {}
def done():
    marks["shown_s"] = time.time() - started
    if len(sys.argv) > 1:  # and the same default model, loaded bare
        import llama_cpp
        llama_cpp.Llama(model_path=sys.argv[1], n_ctx=2048, n_batch=256, verbose=False)
        marks["ready_s"] = time.time() - started
    marks["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(marks)); app.quit()
QTimer.singleShot(0, done)
app.exec()
"""

APP = r"""
import json, os, resource, sys, time
import psutil
started = psutil.Process().create_time()
from tara_desktop.ui.app import create_application
app = create_application()
from PySide6.QtCore import QTimer
from tara_desktop.ui import theme
from tara_desktop.ui.main_window import MainWindow
theme.apply_theme(app, "system")
window = MainWindow(None, show_welcome=False)
window.show()
window.open_session()
marks = {}
def now(): return time.time() - started
QTimer.singleShot(0, lambda: marks.setdefault("shown_s", now()))
window.assistant_ready.connect(lambda _a: marks.setdefault("open_s", now()))
def finish(error=None):
    if error:
        marks["error"] = error
    marks["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    waited = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # children that ended
    running = 0.0
    for child in psutil.Process().children(recursive=True):  # a voice process still running
        try:
            running += child.memory_info().rss / 2**20
        except psutil.Error:
            pass
    marks["children_peak_rss_mb"] = max(waited, running)
    print(json.dumps(marks), flush=True)
    window.close(); app.quit()
def voice():
    settings = window.session.assistant.configs.app.voice
    steps = []
    try:
        from tara_desktop.voice.asr import SpeechRecognizer
        asr = SpeechRecognizer.from_config(settings); steps.append("asr " + str(asr.warm_up()))
    except Exception as exc:
        steps.append(f"asr failed: {exc.__class__.__name__}: {exc}")
    marks["rss_with_asr_mb"] = psutil.Process().memory_info().rss / 2**20
    try:
        from tara_desktop.voice.emotion import EmotionDetector
        emo = EmotionDetector.from_config(settings); steps.append("emotion " + str(emo.warm_up()))
    except Exception as exc:
        steps.append(f"emotion failed: {exc.__class__.__name__}: {exc}")
    marks["rss_with_emotion_mb"] = psutil.Process().memory_info().rss / 2**20
    try:
        from tara_desktop.voice.tts import SpeechSynthesizer
        tts = SpeechSynthesizer.from_config(settings, online_allowed=lambda: False)
        tts.warm_up().join()  # warm_up returns at once with its thread
        spoken = tts.speak("Hello, I am ready.")
        steps.append(f"tts {getattr(spoken, 'engine', '?')}")
    except Exception as exc:
        steps.append(f"tts failed: {exc.__class__.__name__}: {exc}")
    marks["voice"] = steps
    marks["heavy_with_voice"] = sorted({"torch", "transformers", "speechbrain"} & set(sys.modules))
    marks["voice_loaded_s"] = now()
    finish()
def status(text):
    marks.setdefault("statuses", []).append(text)
    if "ready" in text and "Preparing" not in text or "did not load" in text or "not found" in text:
        if "ready_s" not in marks:
            marks["ready_s"] = now()
            marks["rss_ready_mb"] = psutil.Process().memory_info().rss / 2**20
            marks["ready_status"] = text
            marks["heavy_at_ready"] = sorted({"torch", "transformers", "speechbrain"} & set(sys.modules))
            QTimer.singleShot(0, voice)
window.session.model_status.connect(status)
window.session.failed.connect(lambda m: finish(m))
QTimer.singleShot(300_000, lambda: finish("no ready status within 5 minutes"))
app.exec()
"""


def _run(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            data: dict[str, Any] = json.loads(line)
            return data
    raise SystemExit(f"error: no timing from the launch: {out.stderr.strip()[-800:]}")


def _default_model() -> Path | None:
    """The GGUF the app loads at start (the mapping's default), resolved as the app resolves it."""
    try:
        from tara_desktop import paths
        from tara_desktop.config import load_configs
        from tara_desktop.llm.catalog import load_catalog
        from tara_desktop.llm.library import resolve_model

        name = load_configs().mapping.default.model
        return Path(resolve_model(name, None, load_catalog(), models_dir=paths.bundled_models_dir()))  # type: ignore[arg-type]
    except Exception as exc:
        print(f"  (default model not resolved for the bare baseline: {exc.__class__.__name__}: {exc})")
        return None


def main() -> int:
    from _process import load_note, verdict

    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
    model = _default_model()
    base, base_model, app = [], [], []
    for _ in range(RUNS):  # interleaved, so all see the same machine load
        base.append(_run([sys.executable, "-c", BASELINE], env))
        if model is not None:
            base_model.append(_run([sys.executable, "-c", BASELINE, str(model)], env))
        with tempfile.TemporaryDirectory(prefix="tara-bench-ui-") as home:
            run_env = {**env, "TARA_HOME": home, "TARA_PASSPHRASE": env.get("TARA_PASSPHRASE", "bench")}
            app.append(_run([sys.executable, "-c", APP], run_env))
    errors = [a["error"] for a in app if "error" in a]
    if errors:
        print(f"MISSED: the app did not get ready: {errors[0]}")
        return 1
    med = lambda rows, key: statistics.median(r[key] for r in rows)  # noqa: E731
    b_shown, a_shown = med(base, "shown_s"), med(app, "shown_s")
    a_open, a_ready = med(app, "open_s"), med(app, "ready_s")
    b_rss = max(r["peak_rss_mb"] for r in base)
    a_peak = max(r["peak_rss_mb"] for r in app)
    a_children = max(r["children_peak_rss_mb"] for r in app)
    print(f"bench_ui ({RUNS} launches each, medians; {load_note()})")
    print(f"  default model: {model.name if model else '?'}; last launch: {app[-1].get('ready_status')}; "
          f"voice: {'; '.join(app[-1].get('voice', []))}")
    print(f"  torch/transformers/speechbrain imported: at ready {app[-1].get('heavy_at_ready')}, "
          f"with voice loaded {app[-1].get('heavy_with_voice')}")
    print(f"  bare PySide6 window shown:        {b_shown:6.2f} s   peak RSS {b_rss:6.0f} MB   (baseline)")
    if base_model:
        bm_ready = med(base_model, "ready_s")
        bm_rss = max(r["peak_rss_mb"] for r in base_model)
        print(f"  bare window + bare model loaded:  {bm_ready:6.2f} s   peak RSS {bm_rss:6.0f} MB   (baseline)")
    print(f"  TARA window shown:                {a_shown:6.2f} s   ratio {a_shown / b_shown:4.2f}x bare window")
    print(f"  TARA profile + services open:     {a_open:6.2f} s")
    print(f"  TARA router + default model ready:{a_ready:6.2f} s"
          + (f"   ratio {a_ready / bm_ready:4.2f}x bare window + model" if base_model else ""))
    print(f"  TARA RSS when ready:              {med(app, 'rss_ready_mb'):6.0f} MB; + ASR "
          f"{med(app, 'rss_with_asr_mb'):6.0f} MB; + speech emotion {med(app, 'rss_with_emotion_mb'):6.0f} MB")
    total = a_peak + a_children
    print(f"  TARA peak RSS, all loaded:        {a_peak:6.0f} MB app + {a_children:4.0f} MB voice process "
          f"= {total:6.0f} MB   ratio {a_peak / b_rss:4.2f}x bare window"
          + (f", {a_peak / bm_rss:4.2f}x bare window + model" if base_model else ""))
    print(f"target window shown <= {TARGET_SHOWN_S} s: {a_shown:.2f} s  {verdict(a_shown <= TARGET_SHOWN_S)}")
    print(f"target services ready <= {TARGET_READY_S} s: {a_ready:.2f} s  {verdict(a_ready <= TARGET_READY_S)}")
    print(f"target peak RSS <= {TARGET_PEAK_MB:.0f} MB (app + voice process): {total:.0f} MB  "
          f"{verdict(total <= TARGET_PEAK_MB)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
