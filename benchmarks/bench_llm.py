"""LLM engine benchmark: TARA's engine against bare llama-cpp-python, in one run, same GGUF/prompt/seed.

1. Streaming: time to first token and tokens/s of ``Engine.stream_chat`` vs a bare
   ``Llama.create_chat_completion(stream=True)`` on the same model file (targets: TTFT ratio <= 1.10,
   tokens/s ratio >= 0.95). Runs alternate between the two and the medians are compared.
2. Adapter swap (``Engine.set_adapter`` with an adapter not used before) vs a full model reload
   (target: swap >= 20x faster).
3. RSS over a 2,000-turn conversation through the context window, with background summaries
   (target: flat, i.e. growth after warm-up under 10% and under 32 MB).
4. The whole ``tara chat`` pipeline (``Assistant.run_turn``: router, text emotion, context window, engine,
   encrypted profile writes) vs a bare ``create_chat_completion(stream=True)`` with the same final messages
   (targets: TTFT ratio <= 1.10, tokens/s ratio >= 0.95).

Models are built here (random weights, so the text is gibberish; timings are what matter).
Run: .venv/bin/python benchmarks/bench_llm.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tara_desktop.jobs import JobState
from tara_desktop.llm.context_window import ContextWindow, SummaryWorker
from tara_desktop.llm.engine import Engine, GenerationSettings
from tests.support.tiny_model import build_tiny_gguf, build_tiny_lora

SYSTEM = "You are TARA, a local assistant. Answer clearly and briefly, and ask when something is unclear."
USER = (
    "I am planning a small business that sells handmade furniture. Could you help me write a short plan "
    "with a budget for the first year, the market I should study, and the first three steps to take?"
)
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
SEED = 1234
RESULTS: list[tuple[str, bool]] = []


def verdict(name: str, ok: bool, detail: str) -> None:
    RESULTS.append((name, ok))
    print(f"  {'PASS' if ok else 'MISSED'}: {name}: {detail}")


def rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def bench_streaming(model: Path, reps: int, max_tokens: int, threads: int) -> None:
    import llama_cpp

    print(f"\n[1] streaming: {reps} runs each, {max_tokens} tokens, greedy, seed {SEED}, {threads} threads")
    n_ctx, n_batch = 2048, 256
    engine = Engine.load(model, n_ctx=n_ctx, n_threads=threads, n_batch=n_batch)
    bare = llama_cpp.Llama(
        model_path=str(model), n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch, n_threads=threads,
        n_threads_batch=threads, verbose=False,
    )
    settings = GenerationSettings(max_tokens=max_tokens, temperature=0.0, seed=SEED)

    def measure(pieces: Iterator[str]) -> tuple[tuple[float, float], tuple[float, float], str]:
        """((ttft wall, ttft CPU), (tokens/s wall, tokens/s CPU), text), measured the same way for both."""
        t0, c0 = time.perf_counter(), time.process_time()
        first = last = (0.0, 0.0)
        n = 0
        parts: list[str] = []
        for piece in pieces:
            now = (time.perf_counter(), time.process_time())
            first = first if n else now
            last = now
            n += 1
            parts.append(piece)
        ttft = (first[0] - t0, first[1] - c0)
        tps = tuple((n - 1) / (b - a) if n > 1 and b > a else 0.0 for a, b in zip(first, last, strict=True))
        return ttft, (tps[0], tps[1]), "".join(parts)

    def run_engine() -> tuple[tuple[float, float], tuple[float, float], str]:
        engine.reset()
        return measure(engine.stream_chat(MESSAGES, settings, JobState()))

    def bare_pieces() -> Iterator[str]:
        for chunk in bare.create_chat_completion(
            messages=MESSAGES, temperature=0.0, max_tokens=max_tokens, seed=SEED, stream=True  # type: ignore[arg-type]
        ):
            content = chunk["choices"][0]["delta"].get("content")  # type: ignore[index, union-attr]
            if content:
                yield content

    def run_bare() -> tuple[tuple[float, float], tuple[float, float], str]:
        bare.reset()
        return measure(bare_pieces())

    run_engine(), run_bare()  # warm-up (page cache, thread pools)
    runs: dict[str, list[tuple[tuple[float, float], tuple[float, float], str]]] = {"engine": [], "bare": []}
    for i in range(reps):
        order = (("engine", run_engine), ("bare", run_bare))
        for name, fn in order if i % 2 == 0 else order[::-1]:
            runs[name].append(fn())
    e_text, b_text = runs["engine"][-1][2], runs["bare"][-1][2]
    for k, label in ((0, "wall"), (1, "CPU")):
        e_ttft = [r[0][k] for r in runs["engine"]]
        b_ttft = [r[0][k] for r in runs["bare"]]
        e_tps = [r[1][k] for r in runs["engine"]]
        b_tps = [r[1][k] for r in runs["bare"]]
        # each engine run is paired with the bare run next to it in time (same machine load): median of ratios
        r_ttft = statistics.median(e / b for e, b in zip(e_ttft, b_ttft, strict=True))
        r_tps = statistics.median(e / b for e, b in zip(e_tps, b_tps, strict=True))
        print(f"  {label:4}: engine ttft {statistics.median(e_ttft) * 1000:.1f} ms, {statistics.median(e_tps):.1f} "
              f"tokens/s | bare ttft {statistics.median(b_ttft) * 1000:.1f} ms, {statistics.median(b_tps):.1f} tokens/s")
        verdict(f"TTFT ratio engine/bare <= 1.10 ({label})", r_ttft <= 1.10, f"{r_ttft:.3f} (median of paired runs)")
        verdict(f"tokens/s ratio engine/bare >= 0.95 ({label})", r_tps >= 0.95, f"{r_tps:.3f} (median of paired runs)")
    print(f"  prompt {engine.last_stats.prompt_tokens} tokens; same text from both: {e_text == b_text} "
          "(CPU time is what wall time would be on an unloaded machine)")
    engine.close()
    bare.close()


def bench_pipeline(model: Path, work: Path, reps: int, max_tokens: int, threads: int) -> None:
    import llama_cpp

    from tara_desktop.assistant import Assistant, TurnRequest
    from tara_desktop.routing.emotion_text import detect_text_emotion

    print(f"\n[4] tara chat pipeline vs bare: {reps} runs each, {max_tokens} tokens, greedy, {threads} threads")
    n_ctx, n_batch = 2048, 256
    assistant = Assistant.open(work / "profile", passphrase="bench")
    assistant.save_settings({"llm": {"threads": threads, "temperature": 0.0, "max_tokens": max_tokens,
                                     "seed": SEED, "context_size": n_ctx, "batch_size": n_batch}})
    bare = llama_cpp.Llama(
        model_path=str(model), n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch, n_threads=threads,
        n_threads_batch=threads, verbose=False,
    )

    def run_pipeline() -> tuple[float, float, str]:
        t0 = time.perf_counter()
        stamps: list[float] = []
        result = assistant.run_turn(
            TurnRequest(USER, model_path=model), JobState(), on_token=lambda _p: stamps.append(time.perf_counter())
        )
        tps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0
        return stamps[0] - t0, tps, f"{result.domain} ({len(stamps)} pieces)"

    domain = run_pipeline()[2].split()[0]  # warm-up: router model, engine load, page cache
    emotion, _ = detect_text_emotion(USER)
    messages = [{"role": "system", "content": assistant.router.system_prompt(domain, emotion)},
                {"role": "user", "content": USER}]

    def run_bare() -> tuple[float, float, str]:
        bare.reset()
        t0 = time.perf_counter()
        stamps: list[float] = []
        for chunk in bare.create_chat_completion(
            messages=messages, temperature=0.0, max_tokens=max_tokens, seed=SEED, stream=True  # type: ignore[arg-type]
        ):
            if chunk["choices"][0]["delta"].get("content"):  # type: ignore[index, union-attr]
                stamps.append(time.perf_counter())
        tps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0
        return stamps[0] - t0, tps, f"({len(stamps)} pieces)"

    run_bare()
    pipe: list[tuple[float, float, str]] = []
    plain: list[tuple[float, float, str]] = []
    for i in range(reps):
        if i % 2 == 0:
            pipe.append(run_pipeline()), plain.append(run_bare())
        else:
            plain.append(run_bare()), pipe.append(run_pipeline())
    r_ttft = statistics.median(a[0] / b[0] for a, b in zip(pipe, plain, strict=True))
    r_tps = statistics.median(a[1] / b[1] for a, b in zip(pipe, plain, strict=True) if b[1] > 0)
    print(f"  pipeline ttft {statistics.median(p[0] for p in pipe) * 1000:.1f} ms, "
          f"{statistics.median(p[1] for p in pipe):.1f} tokens/s | bare ttft "
          f"{statistics.median(p[0] for p in plain) * 1000:.1f} ms, {statistics.median(p[1] for p in plain):.1f} tokens/s"
          f" (domain {domain}; pipeline {pipe[-1][2]}, bare {plain[-1][2]})")
    verdict("TTFT ratio tara chat pipeline/bare <= 1.10", r_ttft <= 1.10, f"{r_ttft:.3f} (median of paired runs)")
    verdict("tokens/s ratio tara chat pipeline/bare >= 0.95", r_tps >= 0.95, f"{r_tps:.3f} (median of paired runs)")
    bare.close()
    assistant.close()


def bench_adapter_swap(work: Path, reps: int, threads: int) -> None:
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs and turns (a smoke run)")
    ap.add_argument("--only", type=int, choices=(1, 2, 3, 4), help="run one section")
    # one thread by default: on a shared, oversubscribed machine OpenMP's spinning threads make
    # multi-threaded timings meaningless (both sides of each comparison always use the same count)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    reps = 3 if args.quick else 7
    turns = 200 if args.quick else 2000
    with tempfile.TemporaryDirectory(prefix="bench-llm-") as tmp:
        work = Path(tmp)
        if args.only in (None, 1, 4):
            t = time.perf_counter()
            model = build_tiny_gguf(work / "bench.gguf", seed=42, n_embd=512, n_layer=6, n_head=8, n_head_kv=4,
                                    n_ff=1408, f16=True)
            print(f"benchmark model: {model.stat().st_size / 2**20:.1f} MB f16 llama GGUF "
                  f"(512 wide, 6 layers), built in {time.perf_counter() - t:.1f} s")
            if args.only in (None, 1):
                bench_streaming(model, reps, 64 if args.quick else 96, args.threads)
            if args.only in (None, 4):
                bench_pipeline(model, work, reps, 64 if args.quick else 96, args.threads)
        if args.only in (None, 2):
            bench_adapter_swap(work, reps, args.threads)
        if args.only in (None, 3):
            bench_long_conversation(work, turns, args.threads)
    missed = [n for n, ok in RESULTS if not ok]
    print("\nSUMMARY: " + ("all targets met" if not missed else "MISSED: " + "; ".join(missed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
