"""Whole-process measurements for the benchmarks: wall time and peak resident memory of one command.

Each command runs in a fresh process. On POSIX a small wrapper process starts it, times it and reads the
child's peak RSS from ``getrusage(RUSAGE_CHILDREN)`` (the kernel's high-water mark: nothing is missed
between samples); elsewhere psutil samples the child's memory every 5 ms.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_WRAPPER = r"""
import json, resource, subprocess, sys, time
cmd = json.loads(sys.argv[1])
t0 = time.perf_counter()
run = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
peak_mb = peak / 2**20 if sys.platform == "darwin" else peak / 1024
print(json.dumps({"wall_s": wall, "peak_mb": peak_mb, "rc": run.returncode,
                  "stdout": run.stdout.decode("utf-8", "replace")[-4000:],
                  "stderr": run.stderr.decode("utf-8", "replace")[-2000:]}))
"""


@dataclass(frozen=True)
class Run:
    wall_s: float
    peak_mb: float
    rc: int
    stdout: str
    stderr: str


def run_once(cmd: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Run:
    if os.name == "posix":
        out = subprocess.run([sys.executable, "-c", _WRAPPER, json.dumps(list(cmd))], env=dict(env or os.environ),
                             cwd=cwd, capture_output=True, text=True, timeout=600, check=True)
        return Run(**json.loads(out.stdout.strip().splitlines()[-1]))
    import psutil  # pragma: no cover - Windows/macOS without the wrapper

    t0 = time.perf_counter()
    proc = psutil.Popen(list(cmd), env=dict(env or os.environ), cwd=cwd, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        try:
            info = proc.memory_info()
            peak = max(peak, getattr(info, "peak_wset", 0) or info.rss)
        except psutil.Error:
            pass
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.communicate()
    return Run(wall, peak / 2**20, proc.returncode, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"))


def median_runs(cmd: Sequence[str], runs: int, env: Mapping[str, str] | None = None,
                cwd: Path | None = None) -> tuple[float, float, list[Run]]:
    """(median wall seconds, highest peak MB, the runs); raises if a run failed."""
    done = [run_once(cmd, env, cwd) for _ in range(runs)]
    for r in done:
        if r.rc != 0:
            raise SystemExit(f"error: {' '.join(cmd[:4])}... exited {r.rc}: {r.stderr.strip()[-600:]}")
    return statistics.median(r.wall_s for r in done), max(r.peak_mb for r in done), done


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISSED"


def load_note() -> str:
    if not hasattr(os, "getloadavg"):
        return ""
    busy = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    note = f"load average {busy:.1f} on {cpus} CPUs"
    return note + (" (busy: absolute times are inflated; the ratios are the fairer figure)" if busy > cpus else "")
