"""Helpers shared by the training tests: small real datasets and the shared job spec."""

from __future__ import annotations

import json
from pathlib import Path

from tara_desktop.training.spec import TrainingSpec

COLOURS = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple", "pink", "brown"]
THINGS = ["car", "house", "book", "shirt", "cup", "door", "chair", "bag", "pen", "hat"]


def make_pairs(n: int = 40) -> list[dict[str, str]]:
    """Prompt/response pairs with a simple, learnable pattern."""
    pairs = []
    for i in range(n):
        colour, thing = COLOURS[i % len(COLOURS)], THINGS[(i * 3) % len(THINGS)]
        pairs.append({"prompt": f"What colour is the {thing} number {i}?",
                      "response": f"The {thing} is {colour}. Thank you for asking."})
    return pairs


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# A random tiny model learns fastest with LoRA on every linear layer.
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def small_spec(base: Path, out: Path, **overrides: object) -> TrainingSpec:
    """The spec the job tests share: a few dozen steps on the tiny base, one thread."""
    fields: dict[str, object] = dict(
        domain="general", base=str(base), out_dir=str(out), data_path="pairs.jsonl", data_name="pairs.jsonl",
        lora_rank=8, lora_alpha=16, lora_dropout=0.1, learning_rate=2e-2, target_modules=ALL_LINEAR,
        max_steps=24, batch_size=4,
        save_every=6, seed=0, threads=1, sample_count=1, sample_max_new_tokens=8, max_length=64,
    )
    fields.update(overrides)
    return TrainingSpec(**fields)  # type: ignore[arg-type]
