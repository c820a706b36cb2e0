"""Training benchmark: the TARA LoRA job against a plain transformers + PEFT loop, on the same tiny base
model, the same data, the same batches and the same thread count, measured in the same run.

Prints steps/s and tokens/s of both (target: TARA >= 0.95 x plain), checkpoint write time, and the
resume overhead (time from start to the first step when resuming vs starting fresh).

    .venv/bin/python benchmarks/bench_training.py [--steps N] [--hidden 128] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tara_desktop.jobs import Cancelled, JobState
from tara_desktop.training import datasets as ds
from tara_desktop.training import job
from tara_desktop.training.spec import TrainingSpec
from tests.support.tiny_base import build_tiny_base

TARGET_RATIO = 0.95


def make_data(n: int = 200) -> bytes:
    rows = []
    words = "the assistant answers questions about health business education writing and technology".split()
    for i in range(n):
        rnd = random.Random(i)
        prompt = " ".join(rnd.choice(words) for _ in range(8 + i % 9))
        answer = " ".join(rnd.choice(words) for _ in range(12 + i % 17))
        rows.append(json.dumps({"prompt": f"{prompt} {i}?", "response": f"{answer}."}))
    return ("\n".join(rows) + "\n").encode()


class Timed(JobState):
    """Records when each step's metrics arrive; can cancel at a step."""

    def __init__(self, cancel_at: int | None = None) -> None:
        super().__init__()
        self.cancel_at = cancel_at
        self.t0 = time.perf_counter()
        self.step_times: dict[int, float] = {}
        self.cpu_times: dict[int, float] = {}
        self.tokens: dict[int, int] = {}
        self.ckpt_seconds: list[float] = []
        self.started: dict[str, Any] = {}

    def on_event(self, e: dict[str, Any]) -> None:
        if e["type"] == "metrics":
            self.step_times[e["step"]] = time.perf_counter()
            self.cpu_times[e["step"]] = time.process_time()
            self.tokens[e["step"]] = e["tokens"]
            if e["step"] == self.cancel_at:
                self.cancel()
        elif e["type"] == "started":
            self.started = e
        elif e["type"] == "checkpoint":
            self.ckpt_seconds.append(e["seconds"])


def tara_run(spec: TrainingSpec, data: bytes, cancel_at: int | None = None) -> Timed:
    st = Timed(cancel_at)
    try:
        job.run(spec, st, data, on_event=st.on_event)
    except Cancelled:
        pass
    return st


def throughput(st: Timed, first: int, last: int) -> tuple[float, float, float]:
    """(steps/s, tokens/s, tokens per CPU-second) between the metrics of step ``first`` and ``last``."""
    seconds = st.step_times[last] - st.step_times[first]
    cpu = st.cpu_times[last] - st.cpu_times[first]
    tokens = sum(st.tokens[s] for s in range(first + 1, last + 1))
    return (last - first) / seconds, tokens / seconds, tokens / cpu


def plain_loop(spec: TrainingSpec, data: bytes, steps: int) -> tuple[float, float, float]:
    """The textbook transformers + PEFT loop on the same batches, doing the same math as the job (and as
    HF Trainer's defaults): forward with labels, backward, clip to norm 1, AdamW, linear schedule."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    tok = AutoTokenizer.from_pretrained(spec.base)
    model = AutoModelForCausalLM.from_pretrained(spec.base, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=spec.lora_rank, lora_alpha=spec.lora_alpha,
                                             lora_dropout=spec.lora_dropout, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))
    prepared = ds.prepare(data, name="d.jsonl", seed=spec.seed, max_samples=spec.max_samples)
    enc = [ds.encode_example(tok, ex, max_length=spec.max_length) for ex in prepared.train]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec.learning_rate)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / steps))
    per_epoch = math.ceil(len(enc) / spec.batch_size)
    model.train()
    times: list[float] = []
    cpu: list[float] = []
    tokens: list[int] = []
    for step in range(steps):
        epoch, pos = divmod(step, per_epoch)
        order = job.epoch_order(len(enc), spec.seed, epoch)
        batch = [enc[i] for i in order[pos * spec.batch_size:(pos + 1) * spec.batch_size]]
        ids, mask, labels = job._collate(batch, tok.pad_token_id)
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        times.append(time.perf_counter())
        cpu.append(time.process_time())
        tokens.append(int(mask.sum()))
    seconds = times[-2] - times[0]
    n_tokens = sum(tokens[1:-1])
    return (steps - 2) / seconds, n_tokens / seconds, n_tokens / (cpu[-2] - cpu[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    data = make_data()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast  # noqa: F401

        t = time.perf_counter()
        base = build_tiny_base(root / "base", hidden_size=args.hidden, layers=2)
        build_s = time.perf_counter() - t

        def spec(name: str, **kw: Any) -> TrainingSpec:
            fields: dict[str, Any] = dict(domain="general", base=str(base), out_dir=str(root / name),
                                          data_path="d.jsonl", data_name="d.jsonl", max_steps=args.steps,
                                          save_every=10_000, threads=args.threads, batch_size=4,
                                          max_length=128, learning_rate=1e-3, sample_count=0)
            fields.update(kw)
            return TrainingSpec(**fields)

        n = args.steps
        plain_loop(spec("warmup"), data, 5)  # warm the allocator and import caches for both sides
        results_tara, results_plain, ratios = [], [], []
        for rep in range(5):  # interleave so both sides share the machine's load alike
            st = tara_run(spec(f"tara{rep}"), data)
            results_tara.append(throughput(st, 1, n - 1))
            results_plain.append(plain_loop(spec(f"plain{rep}"), data, n))
            ratios.append(results_tara[-1][2] / results_plain[-1][2])
        tara_sps, tara_tps, tara_cpu = (statistics.median(r[i] for r in results_tara) for i in range(3))
        plain_sps, plain_tps, plain_cpu = (statistics.median(r[i] for r in results_plain) for i in range(3))
        # With one thread, tokens per CPU-second does not depend on what else the machine is doing.
        ratio = statistics.median(ratios)

        ck = tara_run(spec("ckpt", save_every=5, max_steps=30, keep_checkpoints=3), data)
        ck_ms = statistics.median(ck.ckpt_seconds) * 1000

        fresh = tara_run(spec("fresh", max_steps=40, save_every=20), data)
        cut = tara_run(spec("resume", max_steps=40, save_every=20), data, cancel_at=21)
        assert cut.step_times
        resumed = tara_run(spec("resume", max_steps=40, save_every=20), data)
        fresh_setup = fresh.started["setup_seconds"]
        resumed_setup = resumed.started["setup_seconds"]
        restore_ms = resumed.started["restore_seconds"] * 1000
        assert resumed.started["resumed_from"] == 21

    print(f"training benchmark: tiny llama base (hidden {args.hidden}, 2 layers), {args.threads} thread(s), "
          f"batch 4, LoRA r=8 on q_proj/v_proj, {n} steps, median of 5 interleaved pairs")
    print(f"  build tiny base            {build_s:8.2f} s (after imports)")
    print(f"  plain transformers + PEFT  {plain_sps:8.1f} steps/s  {plain_tps:8.0f} tokens/s  "
          f"{plain_cpu:8.0f} tokens/CPU-s   (baseline)")
    print(f"  TARA job                   {tara_sps:8.1f} steps/s  {tara_tps:8.0f} tokens/s  "
          f"{tara_cpu:8.0f} tokens/CPU-s   ratio {ratio:.3f} (median of per-pair CPU ratios; target >= {TARGET_RATIO})")
    print(f"  checkpoint write           {ck_ms:8.1f} ms (adapter + optimizer + RNG + manifest, atomic)")
    print(f"  setup before step 1        {fresh_setup:8.2f} s fresh, {resumed_setup:.2f} s resumed "
          f"(checkpoint restore {restore_ms:.1f} ms; overhead {resumed_setup - fresh_setup:+.2f} s)")
    if ratio < TARGET_RATIO:
        print(f"TARGET MISSED: TARA job tokens/s is {ratio:.3f} x the plain loop (target >= {TARGET_RATIO})")
        return 1
    print("all training targets met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
