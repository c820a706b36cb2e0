"""Installer benchmark: the bundle's size (total and by part) and the start-up time of the bundled programs
against the same programs run from the development venv (the baseline, measured in the same run).

    .venv/bin/python benchmarks/bench_installer.py [--runs N] [--no-build]

Builds the bundle first through installer/build.py (reused when nothing changed since the last build).
The first run of each program is the cold start (files not yet in the page cache after a build); the
median of the next runs is the warm start.

Targets: bundle (app + models) under 1,600 MB installed; `tara --help` and `tara-desktop --smoke` from
the bundle no slower than 1.5x the venv.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZE_TARGET_MB = 1600
RATIO_TARGET = 1.5


def _version() -> str:
    m = re.search(r'__version__\s*=\s*"([^"]+)"', (ROOT / "tara_desktop" / "__init__.py").read_text())
    assert m
    return m.group(1)


def _time(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    took = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="warm runs of `tara --help` (default 3)")
    ap.add_argument("--no-build", action="store_true", help="measure the bundle already in build/")
    args = ap.parse_args()

    if not args.no_build:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run([sys.executable, str(ROOT / "installer" / "build.py"), "--no-nsis"], cwd=ROOT, env=env,
                       check=True, stdout=subprocess.DEVNULL)
    sizes_file = ROOT / "build" / "bundle-sizes.json"
    if not sizes_file.is_file():
        print("error: no bundle measured yet; run scripts/build-installer first", file=sys.stderr)
        return 2
    sizes = json.loads(sizes_file.read_text())
    tree = Path(sizes["tree"])
    total_mb = sizes["total_bytes"] / 1e6

    print("== bundle size")
    for name, size in sorted(sizes["parts"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:<42} {size / 1e6:>9,.1f} MB")
    print(f"  {'total installed':<42} {total_mb:>9,.1f} MB   (target < {SIZE_TARGET_MB:,} MB: "
          f"{'met' if total_mb < SIZE_TARGET_MB else 'MISSED'})")
    if "tarball_bytes" in sizes:
        print(f"  {'tarball (gzip -1)':<42} {sizes['tarball_bytes'] / 1e6:>9,.1f} MB   "
              f"({sizes['tarball_bytes'] / sizes['total_bytes']:.2f}x of installed)")

    venv_bin = ROOT / ".venv" / "bin"
    with tempfile.TemporaryDirectory(prefix="tara-bench-inst-") as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
        env.update({"TARA_HOME": str(work / "home"), "TARA_PASSPHRASE": "bench", "QT_QPA_PLATFORM": "offscreen",
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
        rows = []
        for label, argv, warm_runs in (("tara --help", ["--help"], args.runs),
                                       ("tara-desktop --smoke", ["--smoke"], 1)):
            prog = label.split()[0]
            result = {}
            for where, exe in (("bundle", tree / prog), ("venv", venv_bin / prog)):
                cold = _time([str(exe), *argv], env, work)
                warm = [_time([str(exe), *argv], env, work) for _ in range(warm_runs)]
                result[where] = (cold, statistics.median(warm))
            rows.append((label, result))

    print("\n== start-up time (s): first run, then median of the next runs; ratio = bundle / venv")
    print(f"  {'command':<22} {'bundle 1st':>10} {'venv 1st':>9} {'ratio':>6}  {'bundle':>7} {'venv':>7} {'ratio':>6}")
    missed = []
    for label, r in rows:
        (bc, bw), (vc, vw) = r["bundle"], r["venv"]
        print(f"  {label:<22} {bc:>10.2f} {vc:>9.2f} {bc / vc:>6.2f}  {bw:>7.2f} {vw:>7.2f} {bw / vw:>6.2f}")
        if bw / vw > RATIO_TARGET:
            missed.append(f"{label}: bundle {bw / vw:.2f}x the venv (target <= {RATIO_TARGET}x)")
    if total_mb >= SIZE_TARGET_MB:
        missed.append(f"bundle size {total_mb:,.0f} MB (target < {SIZE_TARGET_MB:,} MB)")
    print()
    if missed:
        print("TARGET MISSED: " + "; ".join(missed))
    else:
        print(f"all targets met (size < {SIZE_TARGET_MB:,} MB, start-up <= {RATIO_TARGET}x the venv)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
