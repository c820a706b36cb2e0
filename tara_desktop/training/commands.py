"""``tara train DOMAIN --base PATH --data FILE --out DIR [...]``: LoRA training with a progress bar.

The job runs in a child process (see :mod:`tara_desktop.training.supervisor`); checkpoints go under
``DIR/checkpoints/``, the adapter (PEFT format) to ``DIR/adapter/``. Ctrl-C stops after the current step
with a checkpoint; ``--resume`` continues from the newest complete one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from tara_desktop.cli import interrupts_call
from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a LoRA adapter for a domain on your data",
        description="Train a LoRA adapter for DOMAIN. Checkpoints go under DIR/checkpoints/, the adapter "
        "(PEFT format) to DIR/adapter/. Ctrl-C stops with a checkpoint; --resume continues.",
    )
    p.add_argument("domain", metavar="DOMAIN", help="the domain the adapter is for (see configs/universal_domains.yaml)")
    p.add_argument("--base", metavar="PATH", help="base model: a Hugging Face model folder or a .gguf file")
    p.add_argument("--data", metavar="JSONL", help="dataset: JSONL chats or prompt/response pairs, or plain text")
    p.add_argument("--out", metavar="DIR", required=True, help="job folder (checkpoints/, adapter/, metrics.jsonl)")
    p.add_argument("--epochs", type=int, help="passes over the data (default from config)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps, 1 or more (overrides --epochs)")
    p.add_argument("--save-every", type=int, help="checkpoint every N steps (default from config)")
    p.add_argument("--seed", type=int, help="random seed (same seed, same result; default 0)")
    p.add_argument("--rank", type=int, help="LoRA rank (default from config)")
    p.add_argument("--alpha", type=int, help="LoRA alpha (default from config)")
    p.add_argument("--dropout", type=float, help="LoRA dropout (default from config)")
    p.add_argument("--lr", type=float, help="learning rate (default from config)")
    p.add_argument("--max-samples", type=int, help="use at most this many unique samples (default from config)")
    p.add_argument("--batch-size", type=int, help="samples per step (default 4)")
    p.add_argument("--threads", type=int, help="CPU threads, 1 to this machine's count (default: cores - 1)")
    p.add_argument("--resume", action="store_true", help="continue the job in DIR from its newest complete checkpoint")
    p.set_defaults(handler=_train)


def _positive(value: int | None, flag: str, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise TaraError(f"{flag} must be at least {minimum}; got {value}")


class _ProgressBar:
    """One self-overwriting line on stderr (a plain line per update when stderr is not a terminal)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.total = 0
        self.last_val: float | None = None
        self._last_plain = 0.0

    def line(self, text: str) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def event(self, e: dict[str, Any]) -> None:
        kind = e.get("type")
        if kind == "started":
            self.total = int(e["total_steps"])
            resumed = e.get("resumed_from")
            self.line(
                f"training on {e['train_samples']} samples ({e['validation_samples']} held out), "
                f"{self.total} steps, {e['threads']} thread(s)" + (f", resumed at step {resumed}" if resumed else "")
            )
        elif kind == "log":
            self.line(str(e.get("message", "")))
        elif kind == "eval" and e.get("when") in ("before", "after"):
            self.line(f"validation loss {e['when']}: {e['val_loss']:.4f} (perplexity {e['perplexity']:.2f})")
        elif kind == "metrics":
            if "val_loss" in e:
                self.last_val = float(e["val_loss"])
            self._bar(e)

    def _bar(self, e: dict[str, Any]) -> None:
        step, total = int(e["step"]), max(1, int(e.get("total_steps") or self.total or 1))
        width = 24
        filled = int(width * step / total)
        eta = int(e.get("eta", 0))
        val = f" val {self.last_val:.3f}" if self.last_val is not None else ""
        text = (
            f"step {step}/{total} [{'#' * filled}{'.' * (width - filled)}] loss {e['loss']:.3f}{val} "
            f"lr {e['lr']:.2e} {e['tokens_per_s']:.0f} tok/s eta {eta // 60}:{eta % 60:02d}"
        )
        if self.tty:
            sys.stderr.write("\r\033[K" + text)
            sys.stderr.flush()
        else:
            now = time.monotonic()
            if now - self._last_plain >= 2.0 or step == total:
                self._last_plain = now
                sys.stderr.write(text + "\n")
                sys.stderr.flush()


def _train(args: argparse.Namespace) -> int:
    from tara_desktop.config import load_configs
    from tara_desktop.training import datasets as ds
    from tara_desktop.training import recovery
    from tara_desktop.training.job import resolve_base
    from tara_desktop.training.spec import TrainingSpec
    from tara_desktop.training.supervisor import load_data, run_supervised

    configs = load_configs()
    if args.domain not in configs.domains:
        raise TaraError(f"unknown domain {args.domain!r}; choose one of {', '.join(sorted(configs.domains))}")
    for flag, value in (("--epochs", args.epochs), ("--save-every", args.save_every), ("--rank", args.rank),
                        ("--alpha", args.alpha), ("--batch-size", args.batch_size), ("--threads", args.threads),
                        ("--max-samples", args.max_samples)):
        _positive(value, flag)
    if args.max_steps is not None and args.max_steps < 1:
        raise TaraError(f"--max-steps must be at least 1; got {args.max_steps} (leave it out to train for --epochs)")
    cpus = os.cpu_count() or 1
    if args.threads is not None and args.threads > cpus:
        raise TaraError(f"--threads {args.threads} is more than this machine's {cpus} CPU threads; use 1 to {cpus}")
    if args.dropout is not None and not 0.0 <= args.dropout < 1.0:
        raise TaraError(f"--dropout must be from 0 up to (not including) 1; got {args.dropout}")
    if args.lr is not None and not 0.0 < args.lr <= 1.0:
        raise TaraError(f"--lr must be more than 0 and at most 1; got {args.lr}")
    out = Path(args.out).expanduser().resolve()

    if args.resume:
        record = recovery.read_job(out) if (out / recovery.JOB_FILE).is_file() else None
        if record is None:
            raise TaraError(f"{out} holds no training job to resume; start one without --resume")
        if record.spec.domain != args.domain:
            raise TaraError(f"the job in {out} trains domain {record.spec.domain!r}, not {args.domain!r}")
        spec = record.spec
        if args.data:
            spec.data_path, spec.data_blob_id = str(Path(args.data).expanduser().resolve()), None
        data = load_data(spec)
    else:
        if not args.base:
            raise TaraError("--base is required: a Hugging Face model folder or a .gguf file")
        if not args.data:
            raise TaraError("--data is required: a JSONL or text dataset file")
        base = str(Path(args.base).expanduser().resolve())
        resolve_base(base)
        data_path = Path(args.data).expanduser().resolve()
        data = ds.read_dataset_file(data_path)
        ds.prepare(data, name=data_path.name, max_samples=args.max_samples or configs.app.training.max_samples,
                   seed=args.seed or 0)
        spec = TrainingSpec.from_settings(
            configs.app.training,
            domain=args.domain,
            base=base,
            out_dir=str(out),
            data_path=str(data_path),
            data_name=data_path.name,
            epochs=args.epochs,
            max_steps=args.max_steps,
            save_every=args.save_every,
            seed=args.seed,
            lora_rank=args.rank,
            lora_alpha=args.alpha,
            lora_dropout=args.dropout,
            learning_rate=args.lr,
            max_samples=args.max_samples,
            batch_size=args.batch_size,
            threads=args.threads,
        )
        spec.validate()

    bar = _ProgressBar()
    state = JobState()
    interrupted = {"n": 0}

    def on_interrupt() -> None:
        interrupted["n"] += 1
        if interrupted["n"] == 1:
            sys.stderr.write("\nstopping after this step (a checkpoint is saved)...\n")
        state.cancel()

    with interrupts_call(on_interrupt):
        outcome = run_supervised(spec, state, data, resume=args.resume, on_event=bar.event)

    if outcome.status == "done":
        r = outcome.result or {}
        print(f"adapter: {r.get('adapter_dir')}")
        if r.get("val_loss_before") is not None and r.get("val_loss_after") is not None:
            print(
                f"validation loss {r['val_loss_before']:.4f} -> {r['val_loss_after']:.4f}, "
                f"perplexity {r['perplexity_before']:.2f} -> {r['perplexity_after']:.2f}"
            )
        for s in outcome.samples:
            print(f"--- sample\nbefore: {s['before'].strip()}\nafter:  {s['after'].strip()}")
        return 0
    if outcome.status == "cancelled":
        sys.stderr.write(f"stopped at step {outcome.last_step}; continue with: tara train {spec.domain} --out {out} --resume\n")
        return 130
    if outcome.status == "failed" and outcome.returncode == 2:
        raise TaraError(outcome.message)
    sys.stderr.write(f"error: {outcome.message}\n")
    return 1
