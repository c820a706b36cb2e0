"""The LoRA training job: a plain function ``run(spec, state, data)``.

An explicit loop over transformers + PEFT, so checkpointing and resuming are exact:

- the data order of epoch ``e`` is a permutation seeded by ``(seed, e)``, so the step number alone says
  which samples come next;
- a checkpoint (every ``save_every`` steps, and when stopped) holds the adapter weights, the AdamW and
  scheduler state and the RNG states; resuming from it continues the same loss curve;
- ``state.check()`` runs before every step, so a cancel stops within one step (and saves a checkpoint);
- metrics (numbers only, no text) are appended to ``DIR/metrics.jsonl`` and sent as events.

Events (dicts passed to ``on_event``; the worker forwards them as JSON lines) — ``type`` is one of:
``started`` (total_steps, steps_per_epoch, train_samples, validation_samples, duplicates, resumed_from,
threads, setup_seconds, restore_seconds), ``log`` (message), ``metrics`` (step, epoch, loss, lr, tokens,
tokens_per_s, elapsed, eta, cpu_percent, rss_mb, total_steps, and val_loss when evaluated), ``eval``
(when: before|after, step, val_loss, perplexity), ``checkpoint`` (step, path, seconds), ``samples``
(list of prompt/before/after — user content: kept in memory, never written to disk), ``done`` (result:
the numbers of :class:`TrainingResult`), ``cancelled`` (step, checkpoint); the worker adds ``error``
(message). The same metrics lines are appended to ``DIR/metrics.jsonl`` for a curve after a restart.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tara_desktop.errors import TaraError
from tara_desktop.jobs import Cancelled
from tara_desktop.training import checkpoints as ck
from tara_desktop.training import datasets as ds
from tara_desktop.training import recovery
from tara_desktop.training.base_model import TARGET_MODULES, attach_lora, load_base, resolve_base
from tara_desktop.training.job_checkpointing import (
    restore_checkpoint,
    save_adapter,
    save_checkpoint,
    truncate_metrics,
)
from tara_desktop.training.job_data import (
    StateLike,
    collate,
    epoch_order,
    evaluate,
    generate,
    perplexity,
    sample_prompts,
)
from tara_desktop.training.spec import TrainingSpec

if TYPE_CHECKING:
    import psutil
    import torch

__all__ = [
    "TARGET_MODULES",
    "EventSink",
    "StateLike",
    "TrainingResult",
    "attach_lora",
    "epoch_order",
    "evaluate",
    "load_base",
    "resolve_base",
    "run",
]

log = logging.getLogger(__name__)

EventSink = Callable[[dict[str, Any]], None]
_collate = collate  # the name benchmarks/bench_training.py uses


@dataclass
class TrainingResult:
    status: str  # done | cancelled
    step: int
    total_steps: int
    adapter_dir: str | None = None
    val_loss_before: float | None = None
    val_loss_after: float | None = None
    perplexity_before: float | None = None
    perplexity_after: float | None = None
    train_samples: int = 0
    validation_samples: int = 0
    elapsed_s: float = 0.0
    resumed_from: int | None = None
    samples: list[dict[str, str]] = field(default_factory=list)  # user content: memory only

    def summary(self) -> dict[str, Any]:
        """The numbers (no text) — safe to write to disk."""
        d = dict(self.__dict__)
        d.pop("samples")
        return d




# ------------------------------------------------------------------------------------------------
# The job (loading: base_model.py; batches and evaluation: job_data.py; what goes to disk:
# job_checkpointing.py)


def run(
    spec: TrainingSpec,
    state: StateLike,
    data: bytes,
    *,
    on_event: EventSink | None = None,
    resume: bool = True,
) -> TrainingResult:
    """Train a LoRA adapter for ``spec`` on ``data`` (the dataset bytes). Resumes from the newest
    complete checkpoint in ``spec.out_dir`` when ``resume``. Raises :class:`Cancelled` after saving
    a checkpoint when the state is cancelled; :class:`TaraError` for bad input."""
    import torch

    emit: EventSink = on_event or (lambda _e: None)
    spec.validate()
    job_dir = spec.job_dir
    job_dir.mkdir(parents=True, exist_ok=True)
    if not (job_dir / recovery.JOB_FILE).is_file():
        recovery.write_job(recovery.JobRecord(spec=spec))
    record = recovery.read_job(job_dir)
    recovery.claim(record)

    import torch.utils.deterministic

    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_fill = torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined,unused-ignore]
    torch.set_num_threads(spec.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Filling every new tensor with NaN (a debugging aid of deterministic mode) costs ~10% CPU per step.
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined,unused-ignore]
    try:
        result = _run(spec, state, data, emit=emit, resume=resume, record=record)
    except Cancelled:
        recovery.update_job(job_dir, status="cancelled", message="stopped by the user")
        raise
    except TaraError as exc:
        recovery.update_job(job_dir, status="failed", message=str(exc))
        raise
    except Exception as exc:
        recovery.update_job(job_dir, status="failed", message=f"{exc.__class__.__name__}: {exc}"[:300])
        raise
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)
        torch.utils.deterministic.fill_uninitialized_memory = prev_fill  # type: ignore[attr-defined,unused-ignore]
    return result


@dataclass
class _Prepared:
    """The run's fixed parts, from preparing the data and the model: the encoded samples, the model with
    its LoRA layers, and the optimizer and learning-rate schedule over ``total_steps``."""

    dataset: ds.PreparedDataset
    tokenizer: Any
    model: Any
    pad_id: int
    train_enc: list[ds.Encoded]
    val_enc: list[ds.Encoded]
    steps_per_epoch: int
    total_steps: int
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR


@dataclass
class _Progress:
    """The loop's running state: where the run is, and what a checkpoint and the result record of it."""

    step: int = 0
    elapsed_before: float = 0.0  # training time of the runs before this one (from the checkpoint)
    val_before: float | None = None
    resumed_from: int | None = None
    restore_seconds: float = 0.0
    session_start: float = 0.0
    session_steps: int = 0
    last_saved: int = 0

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.session_start


def _run(
    spec: TrainingSpec,
    state: StateLike,
    data: bytes,
    *,
    emit: EventSink,
    resume: bool,
    record: recovery.JobRecord,
) -> TrainingResult:
    def say(message: str) -> None:
        log.info("%s", message)
        emit({"type": "log", "message": message})

    t_setup = time.perf_counter()
    prep = _prepare(spec, state, data, say)
    progress = _resume(spec, prep, say, resume=resume)
    truncate_metrics(spec.metrics_path, progress.step)
    record.total_steps, record.step = prep.total_steps, progress.step
    recovery.write_job(record)

    emit(
        {
            "type": "started",
            "total_steps": prep.total_steps,
            "steps_per_epoch": prep.steps_per_epoch,
            "train_samples": len(prep.train_enc),
            "validation_samples": len(prep.val_enc),
            "duplicates": prep.dataset.duplicates,
            "resumed_from": progress.resumed_from,
            "threads": spec.threads,
            "setup_seconds": time.perf_counter() - t_setup,
            "restore_seconds": progress.restore_seconds,
        }
    )

    if progress.val_before is None:
        state.report(0.0, "measuring the validation loss before training")
        progress.val_before = evaluate(prep.model, prep.val_enc, prep.pad_id, spec.batch_size, state)
        emit({"type": "eval", "when": "before", "step": 0, "val_loss": progress.val_before,
              "perplexity": perplexity(progress.val_before)})

    _train(spec, state, prep, progress, emit)
    return _finish(spec, state, prep, progress, emit)


def _prepare(spec: TrainingSpec, state: StateLike, data: bytes, say: Callable[[str], None]) -> _Prepared:
    """Prepare the dataset, load the base model with LoRA layers, encode the samples and set up the
    optimizer and the warmup-then-linear learning-rate schedule."""
    import torch

    state.report(None, "preparing the dataset")
    prepared = ds.prepare(
        data,
        name=spec.data_name or (Path(spec.data_path).name if spec.data_path else ""),
        fmt=spec.data_format,  # type: ignore[arg-type]
        max_samples=spec.max_samples,
        seed=spec.seed,
        validation_fraction=spec.validation_fraction,
    )
    for note in prepared.notes:
        say(note)

    state.report(None, "loading the base model")
    torch.manual_seed(spec.seed)
    random.seed(spec.seed)
    tokenizer, base_model = load_base(spec.base)
    model = attach_lora(base_model, spec)
    pad_id = int(tokenizer.pad_token_id)
    train_enc = [ds.encode_example(tokenizer, ex, max_length=spec.max_length) for ex in prepared.train]
    val_enc = [ds.encode_example(tokenizer, ex, max_length=spec.max_length) for ex in prepared.validation]
    train_enc = [e for e in train_enc if any(lab != -100 for lab in e.labels[1:])]
    if not train_enc:
        raise TaraError("no training sample has an answer left after formatting; check max_length and the data")

    steps_per_epoch = math.ceil(len(train_enc) / spec.batch_size)
    total_steps = spec.max_steps if spec.max_steps > 0 else spec.epochs * steps_per_epoch
    warmup = spec.warmup_steps if spec.warmup_steps >= 0 else max(1, round(0.05 * total_steps))

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.learning_rate, weight_decay=spec.weight_decay)

    def lr_lambda(s: int) -> float:
        if s < warmup:
            return (s + 1) / (warmup + 1)
        return max(0.0, (total_steps - s) / max(1, total_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    return _Prepared(
        dataset=prepared, tokenizer=tokenizer, model=model, pad_id=pad_id, train_enc=train_enc,
        val_enc=val_enc, steps_per_epoch=steps_per_epoch, total_steps=total_steps, params=params,
        optimizer=optimizer, scheduler=scheduler,
    )


def _resume(spec: TrainingSpec, prep: _Prepared, say: Callable[[str], None], *, resume: bool) -> _Progress:
    """Remove half-written checkpoints and, when ``resume``, restore the newest complete one: the
    progress the run starts from (step 0 without one)."""
    progress = _Progress()
    removed = ck.clean_leftovers(spec.checkpoints_dir)
    for name in removed:
        say(f"checkpoint {name}: incomplete (interrupted while saving), removed")
    if resume:
        t_restore = time.perf_counter()
        ckpt = ck.newest_complete(spec.checkpoints_dir, on_skip=say)
        if ckpt is not None:
            restore_checkpoint(ckpt, prep.model, prep.optimizer, prep.scheduler)
            progress.restore_seconds = time.perf_counter() - t_restore
            progress.step = ckpt.step
            progress.elapsed_before = float(ckpt.manifest.get("elapsed", 0.0))
            progress.val_before = ckpt.manifest.get("val_loss_before")
            progress.resumed_from = progress.step
            if ckpt.manifest.get("dataset_fingerprint") not in (None, prep.dataset.fingerprint):
                say("the dataset changed since this checkpoint; the result will differ from the original run")
            say(f"resumed from the checkpoint at step {progress.step}")
    return progress


def _checkpoint(spec: TrainingSpec, prep: _Prepared, progress: _Progress, emit: EventSink) -> ck.Checkpoint:
    """Save a checkpoint at the current step, note it in the job record and report it."""
    step = progress.step
    t0 = time.perf_counter()
    info = {
        "epoch": step / prep.steps_per_epoch,
        "elapsed": progress.elapsed(),
        "val_loss_before": progress.val_before,
        "dataset_fingerprint": prep.dataset.fingerprint,
        "total_steps": prep.total_steps,
    }
    saved = save_checkpoint(spec, step, prep.model, optimizer=prep.optimizer, scheduler=prep.scheduler, info=info)
    seconds = time.perf_counter() - t0
    recovery.update_job(spec.job_dir, step=step)
    emit({"type": "checkpoint", "step": step, "path": str(saved.path), "seconds": seconds})
    return saved


def _train(spec: TrainingSpec, state: StateLike, prep: _Prepared, progress: _Progress, emit: EventSink) -> None:
    """The training loop, from ``progress.step`` to the last step: one optimizer step per batch, a metrics
    line (file and event) per step, a checkpoint every ``save_every`` steps. A cancel checks before each
    step, saves a checkpoint (unless the step was just saved), reports ``cancelled`` and raises."""
    import psutil

    eval_every = spec.eval_every or spec.save_every
    proc = psutil.Process()
    proc.cpu_percent(None)
    progress.session_start = time.perf_counter()
    progress.session_steps = 0
    progress.last_saved = progress.step

    prep.model.train()
    order_epoch, order = -1, []
    with spec.metrics_path.open("a", encoding="utf-8") as metrics_file:
        while progress.step < prep.total_steps:
            try:
                state.check()
            except Cancelled:
                saved = _checkpoint(spec, prep, progress, emit) if progress.step > progress.last_saved else None
                emit({"type": "cancelled", "step": progress.step, "checkpoint": str(saved.path) if saved else None})
                raise
            epoch, pos = divmod(progress.step, prep.steps_per_epoch)
            if epoch != order_epoch:
                order_epoch, order = epoch, epoch_order(len(prep.train_enc), spec.seed, epoch)
            batch = [prep.train_enc[i] for i in order[pos * spec.batch_size : (pos + 1) * spec.batch_size]]
            entry = _train_step(prep, progress, batch, proc)

            step = progress.step
            if step % eval_every == 0 or step == prep.total_steps:
                entry["val_loss"] = evaluate(prep.model, prep.val_enc, prep.pad_id, spec.batch_size, state)
            metrics_file.write(json.dumps(entry) + "\n")
            metrics_file.flush()
            emit({"type": "metrics", **entry})
            state.report(step / prep.total_steps, f"step {step}/{prep.total_steps}, loss {entry['loss']:.3f}")
            if step % spec.save_every == 0 and step < prep.total_steps:
                _checkpoint(spec, prep, progress, emit)
                progress.last_saved = step


def _train_step(prep: _Prepared, progress: _Progress, batch: list[ds.Encoded], proc: psutil.Process) -> dict[str, Any]:
    """One optimizer step on ``batch``; advances ``progress`` and returns the step's metrics line."""
    import torch

    ids, mask, labels = collate(batch, prep.pad_id)
    t0 = time.perf_counter()
    # The model's own loss: mean next-token cross-entropy over the labelled positions.
    loss = prep.model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(prep.params, 1.0)
    prep.optimizer.step()
    prep.scheduler.step()
    prep.optimizer.zero_grad(set_to_none=True)
    step_time = time.perf_counter() - t0
    progress.step += 1
    progress.session_steps += 1

    step, total_steps = progress.step, prep.total_steps
    elapsed_session = time.perf_counter() - progress.session_start
    return {
        "step": step,
        "epoch": step / prep.steps_per_epoch,
        "loss": float(loss.detach()),
        "lr": float(prep.scheduler.get_last_lr()[0]),
        "tokens": int(mask.sum()),
        "tokens_per_s": int(mask.sum()) / max(step_time, 1e-9),
        "elapsed": progress.elapsed_before + elapsed_session,
        "eta": elapsed_session / progress.session_steps * (total_steps - step),
        "cpu_percent": proc.cpu_percent(None),
        "rss_mb": proc.memory_info().rss / (1024 * 1024),
        "total_steps": total_steps,
    }


def _finish(
    spec: TrainingSpec, state: StateLike, prep: _Prepared, progress: _Progress, emit: EventSink
) -> TrainingResult:
    """After the last step: a final checkpoint, the validation loss after training, the sample answers,
    then the finished adapter, result.json and the job record (status done)."""
    _checkpoint(spec, prep, progress, emit)
    step = progress.step
    state.report(1.0, "measuring the validation loss after training")
    val_after = evaluate(prep.model, prep.val_enc, prep.pad_id, spec.batch_size, state)
    emit({"type": "eval", "when": "after", "step": step, "val_loss": val_after,
          "perplexity": perplexity(val_after)})

    samples = _sample_answers(spec, state, prep, emit) if spec.sample_count > 0 else []
    result = TrainingResult(
        status="done",
        step=step,
        total_steps=prep.total_steps,
        adapter_dir=str(spec.adapter_dir),
        val_loss_before=progress.val_before,
        val_loss_after=val_after,
        perplexity_before=perplexity(progress.val_before),
        perplexity_after=perplexity(val_after),
        train_samples=len(prep.train_enc),
        validation_samples=len(prep.val_enc),
        elapsed_s=progress.elapsed(),
        resumed_from=progress.resumed_from,
        samples=samples,
    )
    save_adapter(prep.model, spec, result.summary())
    ck.write_json_atomic(spec.job_dir / "result.json", result.summary())
    recovery.update_job(spec.job_dir, status="done", message="", step=step)
    emit({"type": "done", "result": result.summary()})
    return result


def _sample_answers(spec: TrainingSpec, state: StateLike, prep: _Prepared, emit: EventSink) -> list[dict[str, str]]:
    """The answers to a few validation prompts without and with the adapter (user content: the event
    and the result only, never a file)."""
    state.report(1.0, "writing sample answers")
    prep.model.eval()
    samples: list[dict[str, str]] = []
    for prompt in sample_prompts(prep.tokenizer, prep.dataset.validation, spec.sample_count):
        state.check()
        with prep.model.disable_adapter():
            before = generate(prep.model, prep.tokenizer, prompt, spec.sample_max_new_tokens)
        after = generate(prep.model, prep.tokenizer, prompt, spec.sample_max_new_tokens)
        samples.append({"prompt": prompt, "before": before, "after": after})
    emit({"type": "samples", "samples": samples})
    return samples
