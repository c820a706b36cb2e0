"""bench_ui: time to the first shown TARA window (median of several launches) and peak RSS.

Baseline, measured in the same run: a bare PySide6 QMainWindow shown by a fresh Python process (the
floor any Qt app pays here). Each TARA launch runs ``tara-desktop --bench-startup`` on a fresh profile,
which prints when the window was first painted and when the profile and services were open.

Target: window shown within 1.5 s of the process starting.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

RUNS = int(os.environ.get("BENCH_UI_RUNS", "5"))
TARGET_SHOWN_S = 1.5
ROOT = Path(__file__).resolve().parent.parent

BASELINE = r"""
import json, resource, time, psutil
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
started = psutil.Process().create_time()
app = QApplication([])
w = QMainWindow(); w.resize(1180, 760); w.show()
def done():
    print(json.dumps({"shown_s": time.time() - started,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    app.quit()
QTimer.singleShot(0, done)
app.exec()
"""


def _run(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            data = json.loads(line)
            if "error" in data:
                raise SystemExit(f"error: the app did not open: {data['error']}")
            return data
    raise SystemExit(f"error: no timing from {cmd[-1]}: {out.stderr.strip()[-400:]}")


def main() -> int:
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
    base, app = [], []
    for _ in range(RUNS):  # interleaved, so both see the same machine load
        base.append(_run([sys.executable, "-c", BASELINE], env))
        with tempfile.TemporaryDirectory(prefix="tara-bench-ui-") as home:
            run_env = {**env, "TARA_HOME": home, "TARA_PASSPHRASE": env.get("TARA_PASSPHRASE", "bench")}
            app.append(_run([sys.executable, "-m", "tara_desktop.ui.app", "--bench-startup", "--no-welcome"],
                            run_env))
    b_shown = statistics.median(r["shown_s"] for r in base)
    a_shown = statistics.median(r["shown_s"] for r in app)
    a_ready = statistics.median(r["ready_s"] for r in app)
    b_rss = max(r["peak_rss_mb"] for r in base)
    a_rss = max(r["peak_rss_mb"] for r in app)
    print(f"bench_ui ({RUNS} launches each, medians; load average {os.getloadavg()[0]:.1f})")
    print(f"  bare PySide6 window shown:   {b_shown:6.2f} s   peak RSS {b_rss:6.0f} MB   (baseline)")
    print(f"  TARA window shown:           {a_shown:6.2f} s   ratio {a_shown / b_shown:4.2f}x baseline")
    print(f"  TARA profile + services open:{a_ready:6.2f} s")
    print(f"  TARA peak RSS (until ready): {a_rss:6.0f} MB   ratio {a_rss / b_rss:4.2f}x baseline")
    if a_shown <= TARGET_SHOWN_S:
        print(f"  target met: window shown in {a_shown:.2f} s <= {TARGET_SHOWN_S} s")
    else:
        print(f"  TARGET MISSED: window shown in {a_shown:.2f} s > {TARGET_SHOWN_S} s "
              f"(the bare Qt window alone took {b_shown:.2f} s on this machine now)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
