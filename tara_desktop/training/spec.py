"""What a training job is asked to do: :class:`TrainingSpec`, a plain JSON-serialisable record.

The spec names where the data comes from (a file path or an encrypted profile blob id), never the data
itself, so it can sit in ``DIR/job.json`` and a job can be resumed after the app or machine died.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tara_desktop.errors import TaraError

if TYPE_CHECKING:
    from tara_desktop.config import TrainingSettings


def default_threads() -> int:
    """Training threads: the physical cores minus one (the window and the rest of the app keep one)."""
    try:
        import psutil

        cores = psutil.cpu_count(logical=False) or os.cpu_count() or 2
    except Exception:  # pragma: no cover - psutil is a dependency
        cores = os.cpu_count() or 2
    return max(1, int(cores) - 1)


@dataclass
class TrainingSpec:
    """One LoRA training job. ``out_dir`` holds job.json, metrics.jsonl, checkpoints/ and adapter/."""

    domain: str
    base: str  # a Hugging Face model folder, or a .gguf file
    out_dir: str
    data_path: str | None = None  # a dataset file the user picked ...
    data_blob_id: int | None = None  # ... or a dataset imported into the encrypted profile
    data_name: str = ""  # file name, used to detect the format (.jsonl / .txt)
    data_format: str = "auto"  # auto | jsonl | text
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: list[str] | None = None  # None: chosen from the model's architecture
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    epochs: int = 1
    max_steps: int = 0  # > 0 overrides epochs
    max_samples: int = 2000
    batch_size: int = 4
    max_length: int = 256
    warmup_steps: int = -1  # -1: 5% of the steps
    seed: int = 0
    save_every: int = 50
    eval_every: int = 0  # 0: at every checkpoint
    keep_checkpoints: int = 3
    threads: int = 0  # 0: default_threads()
    validation_fraction: float = 0.1
    sample_count: int = 3
    sample_max_new_tokens: int = 32

    def __post_init__(self) -> None:
        if self.threads <= 0:
            self.threads = default_threads()

    # -- checks -----------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`TaraError` for a value no job can run with."""
        checks: list[tuple[bool, str]] = [
            (self.lora_rank >= 1, "LoRA rank must be at least 1"),
            (self.lora_alpha >= 1, "LoRA alpha must be at least 1"),
            (0.0 <= self.lora_dropout < 1.0, "LoRA dropout must be between 0 and 1"),
            (self.learning_rate > 0, "the learning rate must be above 0"),
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.max_steps >= 0, "max steps must be 0 (use epochs) or more"),
            (self.max_samples >= 2, "max samples must be at least 2"),
            (self.batch_size >= 1, "batch size must be at least 1"),
            (self.max_length >= 8, "max length must be at least 8 tokens"),
            (self.save_every >= 1, "save every must be at least 1 step"),
            (self.keep_checkpoints >= 1, "keep at least 1 checkpoint"),
            (0.0 < self.validation_fraction < 1.0, "the validation fraction must be between 0 and 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise TaraError(f"{message}; change the training setting and start again")
        if self.data_path is None and self.data_blob_id is None:
            raise TaraError("no dataset was chosen; pick a dataset file or an imported dataset")

    # -- paths ------------------------------------------------------------------------------------
    @property
    def job_dir(self) -> Path:
        return Path(self.out_dir)

    @property
    def checkpoints_dir(self) -> Path:
        return self.job_dir / "checkpoints"

    @property
    def adapter_dir(self) -> Path:
        return self.job_dir / "adapter"

    @property
    def metrics_path(self) -> Path:
        return self.job_dir / "metrics.jsonl"

    # -- (de)serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainingSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})

    @classmethod
    def from_settings(cls, settings: TrainingSettings, **fields: Any) -> TrainingSpec:
        """A spec with defaults from ``configs/config.yaml``'s ``training`` section (``TrainingSettings``);
        ``fields`` (domain, base, out_dir, data_path, ...) win."""
        defaults: dict[str, Any] = {
            "max_samples": settings.max_samples,
            "lora_rank": settings.lora_rank,
            "lora_alpha": settings.lora_alpha,
            "lora_dropout": settings.lora_dropout,
            "learning_rate": settings.learning_rate,
            "epochs": settings.epochs,
            "save_every": settings.save_every,
        }
        defaults.update({k: v for k, v in fields.items() if v is not None})
        return cls(**defaults)
