"""Batches, losses and evaluation for the training job: padding encoded samples into tensors, the
validation loss, the sample answers before/after training, and the seeded order of each epoch's samples
(what makes a resumed run continue the same curve)."""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any, Protocol

from tara_desktop.training import datasets as ds

if TYPE_CHECKING:
    import torch


class StateLike(Protocol):
    """What a job needs of its state (:class:`tara_desktop.jobs.JobState` is one): progress out, cancel in."""

    def report(self, fraction: float | None, message: str = "") -> None: ...
    def check(self) -> None: ...


def collate(items: list[ds.Encoded], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids, attention mask, labels) for a batch, padded to its longest sample; padding is not learned."""
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


def token_loss(model: Any, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
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
            ids, mask, labels = collate(encoded[i : i + batch_size], pad_id)
            loss, n = token_loss(model, ids, mask, labels)
            total += float(loss)
            count += n
    if was_training:
        model.train()
    return total / max(1, count)


def perplexity(loss: float | None) -> float | None:
    if loss is None:
        return None
    return math.exp(min(loss, 50.0))


def sample_prompts(tokenizer: Any, examples: list[ds.Example], n: int) -> list[str]:
    prompts: list[str] = []
    for ex in examples[:n]:
        if ex.text is not None:
            prompts.append(" ".join(ex.text.split()[:8]))
        else:
            msgs = ex.as_messages()
            last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
            prompts.append(ds.render_chat(tokenizer, msgs[:last], add_generation_prompt=True))
    return prompts


def generate(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int) -> str:
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
