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
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tara_desktop.errors import TaraError
from tara_desktop.jobs import Cancelled
from tara_desktop.training import checkpoints as ck
from tara_desktop.training import datasets as ds
from tara_desktop.training import recovery
from tara_desktop.training.spec import TrainingSpec

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

EventSink = Callable[[dict[str, Any]], None]

TARGET_MODULES = {
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
    "phi3": ["qkv_proj"],
    "gpt2": ["c_attn"],
    "gpt_neox": ["query_key_value"],
}


class StateLike(Protocol):
    def report(self, fraction: float | None, message: str = "") -> None: ...
    def check(self) -> None: ...


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
# Loading


def resolve_base(base: str) -> tuple[str, str | None]:
    p = Path(base)
    if p.is_file() and p.suffix.lower() == ".gguf":
        return str(p.parent), p.name
    if p.is_dir() and (p / "config.json").is_file():
        return str(p), None
    if not p.exists():
        raise TaraError(f"base model {base} not found; give a Hugging Face model folder or a .gguf file")
    raise TaraError(
        f"{base} is not a base model; give a Hugging Face model folder (with config.json) or a .gguf file"
    )


def load_base(base: str) -> tuple[Any, Any]:
    """(tokenizer, model) in float32 from a Hugging Face folder or a GGUF file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf_file = resolve_base(base)
    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
    except Exception as exc:
        raise TaraError(
            f"cannot load base model {base} ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
            "check that it is a complete causal language model"
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def attach_lora(model: Any, spec: TrainingSpec) -> Any:
    from peft import LoraConfig, get_peft_model

    model_type = str(getattr(model.config, "model_type", ""))
    targets = spec.target_modules or TARGET_MODULES.get(model_type)
    config = LoraConfig(
        r=spec.lora_rank,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=targets,
        fan_in_fan_out=model_type == "gpt2",
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise TaraError(
            f"cannot attach LoRA to this {model_type or 'unknown'} model ({str(exc).splitlines()[0][:160]}); "
            "set the target modules for it"
        ) from None


# ------------------------------------------------------------------------------------------------
# Batches and evaluation


def _collate(items: list[ds.Encoded], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(e.input_ids) for e in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), -100, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for i, e in enumerate(items):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids, dtype=torch.long)
        labels[i, :n] = torch.tensor(e.labels, dtype=torch.long)
        mask[i, :n] = 1
    return ids, mask, labels


def _token_loss(model: Any, ids: Any, mask: Any, labels: Any) -> tuple[torch.Tensor, int]:
    """(sum of next-token cross-entropy over labelled positions, number of those positions)."""
    import torch.nn.functional as F

    logits = model(input_ids=ids, attention_mask=mask).logits
    shift_logits = logits[:, :-1, :].reshape(-1, logits.size(-1))
    shift_labels = labels[:, 1:].reshape(-1)
    n = int((shift_labels != -100).sum())
    loss = F.cross_entropy(shift_logits.float(), shift_labels, ignore_index=-100, reduction="sum")
    return loss, n


def evaluate(model: Any, encoded: list[ds.Encoded], pad_id: int, batch_size: int, state: StateLike) -> float:
    """Mean validation loss per predicted token."""
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(encoded), batch_size):
            state.check()
            ids, mask, labels = _collate(encoded[i : i + batch_size], pad_id)
            loss, n = _token_loss(model, ids, mask, labels)
            total += float(loss)
            count += n
    if was_training:
        model.train()
    return total / max(1, count)


def _perplexity(loss: float | None) -> float | None:
    if loss is None:
        return None
    return math.exp(min(loss, 50.0))


def _sample_prompts(tokenizer: Any, examples: list[ds.Example], n: int) -> list[str]:
    prompts: list[str] = []
    for ex in examples[:n]:
        if ex.text is not None:
            prompts.append(" ".join(ex.text.split()[:8]))
        else:
            msgs = ex.as_messages()
            last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
            prompts.append(ds.render_chat(tokenizer, msgs[:last], add_generation_prompt=True))
    return prompts


def _generate(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int) -> str:
    import torch

    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(
            **ids,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    return str(tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The order of the training samples in ``epoch``: fixed by (seed, epoch), so a step number alone
    says which samples it trains on — what makes a resumed run continue the same curve."""
    order = list(range(n))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


# ------------------------------------------------------------------------------------------------
# Checkpoint payloads


def _rng_state() -> dict[str, Any]:
    import torch

    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def _set_rng_state(saved: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(saved["torch"])
    random.setstate(_to_tuple(saved["python"]))


def _to_tuple(x: Any) -> Any:
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list | tuple) else x


def _save(
    spec: TrainingSpec, step: int, model: Any, *, optimizer: Any, scheduler: Any, info: dict[str, Any]
) -> ck.Checkpoint:
    import torch

    def write(tmp: Path) -> None:
        # The adapter in PEFT's own layout (loadable with PeftModel.from_pretrained), minus its model card.
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        save_file(get_peft_model_state_dict(model), str(tmp / "adapter_model.safetensors"))
        model.peft_config["default"].save_pretrained(str(tmp))
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state()},
            tmp / ck.STATE_FILE,
        )

    ckpt = ck.write_checkpoint(spec.checkpoints_dir, step, write, info)
    ck.prune(spec.checkpoints_dir, spec.keep_checkpoints)
    return ckpt


def _restore(ckpt: ck.Checkpoint, model: Any, optimizer: Any, scheduler: Any) -> None:
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(ckpt.path / "adapter_model.safetensors"))
    set_peft_model_state_dict(model, weights)
    saved = torch.load(ckpt.path / ck.STATE_FILE, weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    _set_rng_state(saved["rng"])


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines past ``step`` (written after the checkpoint a resumed job starts from)."""
    if not path.is_file():
        return
    kept: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if int(json.loads(line).get("step", 0)) <= step:
                kept.append(line)
        except (ValueError, AttributeError):
            continue
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)


def _save_adapter(model: Any, spec: TrainingSpec, summary: dict[str, Any]) -> Path:
    """Write ``DIR/adapter/`` (PEFT format; ``base_model_name_or_path`` names the base folder or .gguf
    file) plus ``tara_training.json`` (domain, base, numbers), atomically."""
    import shutil

    final = spec.adapter_dir
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    for cfg in model.peft_config.values():
        cfg.base_model_name_or_path = str(Path(spec.base).resolve())
    model.save_pretrained(str(tmp))
    info = {"domain": spec.domain, "base": str(Path(spec.base).resolve()), "seed": spec.seed,
            "lora_rank": spec.lora_rank, "lora_alpha": spec.lora_alpha, **summary}
    (tmp / "tara_training.json").write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")
    for p in tmp.rglob("*"):
        if p.is_file():
            ck.fsync_path(p)
    if final.exists():
        old = final.with_name(final.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    return final


# ------------------------------------------------------------------------------------------------
# The job


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


def _run(
    spec: TrainingSpec,
    state: StateLike,
    data: bytes,
    *,
    emit: EventSink,
    resume: bool,
    record: recovery.JobRecord,
) -> TrainingResult:
    import psutil
    import torch

    def say(message: str) -> None:
        log.info("%s", message)
        emit({"type": "log", "message": message})

    t_setup = time.perf_counter()
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

    # ---- resume -------------------------------------------------------------------------------
    step = 0
    elapsed_before = 0.0
    val_before: float | None = None
    resumed_from: int | None = None
    removed = ck.clean_leftovers(spec.checkpoints_dir)
    for name in removed:
        say(f"checkpoint {name}: incomplete (interrupted while saving), removed")
    restore_seconds = 0.0
    if resume:
        t_restore = time.perf_counter()
        ckpt = ck.newest_complete(spec.checkpoints_dir, on_skip=say)
        if ckpt is not None:
            _restore(ckpt, model, optimizer, scheduler)
            restore_seconds = time.perf_counter() - t_restore
            step = ckpt.step
            elapsed_before = float(ckpt.manifest.get("elapsed", 0.0))
            val_before = ckpt.manifest.get("val_loss_before")
            resumed_from = step
            if ckpt.manifest.get("dataset_fingerprint") not in (None, prepared.fingerprint):
                say("the dataset changed since this checkpoint; the result will differ from the original run")
            say(f"resumed from the checkpoint at step {step}")
    _truncate_metrics(spec.metrics_path, step)
    record.total_steps, record.step = total_steps, step
    recovery.write_job(record)

    emit(
        {
            "type": "started",
            "total_steps": total_steps,
            "steps_per_epoch": steps_per_epoch,
            "train_samples": len(train_enc),
            "validation_samples": len(val_enc),
            "duplicates": prepared.duplicates,
            "resumed_from": resumed_from,
            "threads": spec.threads,
            "setup_seconds": time.perf_counter() - t_setup,
            "restore_seconds": restore_seconds,
        }
    )

    if val_before is None:
        state.report(0.0, "measuring the validation loss before training")
        val_before = evaluate(model, val_enc, pad_id, spec.batch_size, state)
        emit({"type": "eval", "when": "before", "step": 0, "val_loss": val_before,
              "perplexity": _perplexity(val_before)})

    eval_every = spec.eval_every or spec.save_every
    proc = psutil.Process()
    proc.cpu_percent(None)
    session_start = time.perf_counter()
    session_steps = 0
    last_saved = step

    def info() -> dict[str, Any]:
        return {
            "epoch": step / steps_per_epoch,
            "elapsed": elapsed_before + time.perf_counter() - session_start,
            "val_loss_before": val_before,
            "dataset_fingerprint": prepared.fingerprint,
            "total_steps": total_steps,
        }

    def checkpoint() -> ck.Checkpoint:
        t0 = time.perf_counter()
        saved = _save(spec, step, model, optimizer=optimizer, scheduler=scheduler, info=info())
        seconds = time.perf_counter() - t0
        recovery.update_job(spec.job_dir, step=step)
        emit({"type": "checkpoint", "step": step, "path": str(saved.path), "seconds": seconds})
        return saved

    model.train()
    order_epoch, order = -1, []
    metrics_file = spec.metrics_path.open("a", encoding="utf-8")
    try:
        while step < total_steps:
            try:
                state.check()
            except Cancelled:
                path = str(checkpoint().path) if step > last_saved else None
                emit({"type": "cancelled", "step": step, "checkpoint": path})
                raise
            epoch, pos = divmod(step, steps_per_epoch)
            if epoch != order_epoch:
                order_epoch, order = epoch, epoch_order(len(train_enc), spec.seed, epoch)
            batch = [train_enc[i] for i in order[pos * spec.batch_size : (pos + 1) * spec.batch_size]]
            ids, mask, labels = _collate(batch, pad_id)

            t0 = time.perf_counter()
            # The model's own loss: mean next-token cross-entropy over the labelled positions.
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step_time = time.perf_counter() - t0
            step += 1
            session_steps += 1

            elapsed_session = time.perf_counter() - session_start
            entry: dict[str, Any] = {
                "step": step,
                "epoch": step / steps_per_epoch,
                "loss": float(loss.detach()),
                "lr": float(scheduler.get_last_lr()[0]),
                "tokens": int(mask.sum()),
                "tokens_per_s": int(mask.sum()) / max(step_time, 1e-9),
                "elapsed": elapsed_before + elapsed_session,
                "eta": elapsed_session / session_steps * (total_steps - step),
                "cpu_percent": proc.cpu_percent(None),
                "rss_mb": proc.memory_info().rss / (1024 * 1024),
                "total_steps": total_steps,
            }
            if step % eval_every == 0 or step == total_steps:
                entry["val_loss"] = evaluate(model, val_enc, pad_id, spec.batch_size, state)
            metrics_file.write(json.dumps(entry) + "\n")
            metrics_file.flush()
            emit({"type": "metrics", **entry})
            state.report(step / total_steps, f"step {step}/{total_steps}, loss {entry['loss']:.3f}")
            if step % spec.save_every == 0 and step < total_steps:
                checkpoint()
                last_saved = step
    finally:
        metrics_file.close()

    # ---- finish -------------------------------------------------------------------------------
    checkpoint()
    state.report(1.0, "measuring the validation loss after training")
    val_after = evaluate(model, val_enc, pad_id, spec.batch_size, state)
    emit({"type": "eval", "when": "after", "step": step, "val_loss": val_after,
          "perplexity": _perplexity(val_after)})

    samples: list[dict[str, str]] = []
    if spec.sample_count > 0:
        state.report(1.0, "writing sample answers")
        model.eval()
        for prompt in _sample_prompts(tokenizer, prepared.validation, spec.sample_count):
            state.check()
            with model.disable_adapter():
                before = _generate(model, tokenizer, prompt, spec.sample_max_new_tokens)
            after = _generate(model, tokenizer, prompt, spec.sample_max_new_tokens)
            samples.append({"prompt": prompt, "before": before, "after": after})
        emit({"type": "samples", "samples": samples})

    result = TrainingResult(
        status="done",
        step=step,
        total_steps=total_steps,
        adapter_dir=str(spec.adapter_dir),
        val_loss_before=val_before,
        val_loss_after=val_after,
        perplexity_before=_perplexity(val_before),
        perplexity_after=_perplexity(val_after),
        train_samples=len(train_enc),
        validation_samples=len(val_enc),
        elapsed_s=elapsed_before + time.perf_counter() - session_start,
        resumed_from=resumed_from,
        samples=samples,
    )
    _save_adapter(model, spec, result.summary())
    ck.write_json_atomic(spec.job_dir / "result.json", result.summary())
    recovery.update_job(spec.job_dir, status="done", message="", step=step)
    emit({"type": "done", "result": result.summary()})
    return result
