"""What the training job keeps on disk besides its metrics stream: checkpoints (the adapter weights, the
optimizer, scheduler and RNG states, written through :mod:`tara_desktop.training.checkpoints`), restoring
one on resume, trimming metrics a resumed run will write again, and the finished adapter folder, all
written atomically (:mod:`tara_desktop.files`)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from tara_desktop.files import atomic_dir, atomic_write
from tara_desktop.training import checkpoints as ck
from tara_desktop.training.spec import TrainingSpec


def _rng_state() -> dict[str, Any]:
    import torch

    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def _set_rng_state(saved: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(saved["torch"])
    random.setstate(_to_tuple(saved["python"]))


def _to_tuple(x: Any) -> Any:
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list | tuple) else x


def save_checkpoint(
    spec: TrainingSpec, step: int, model: Any, *, optimizer: Any, scheduler: Any, info: dict[str, Any]
) -> ck.Checkpoint:
    """Save step ``step`` (adapter in PEFT's layout, optimizer, scheduler, RNG) as a verified checkpoint
    and prune the older ones beyond ``spec.keep_checkpoints``."""
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


def restore_checkpoint(ckpt: ck.Checkpoint, model: Any, optimizer: Any, scheduler: Any) -> None:
    """Put the adapter weights, optimizer, scheduler and RNG states of ``ckpt`` back in place."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(ckpt.path / "adapter_model.safetensors"))
    set_peft_model_state_dict(model, weights)
    saved = torch.load(ckpt.path / ck.STATE_FILE, weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    _set_rng_state(saved["rng"])


def truncate_metrics(path: Path, step: int) -> None:
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
    atomic_write(path, "".join(f"{line}\n" for line in kept).encode("utf-8"))


def save_adapter(model: Any, spec: TrainingSpec, summary: dict[str, Any]) -> Path:
    """Write ``DIR/adapter/`` (PEFT format; ``base_model_name_or_path`` names the base folder or .gguf
    file) plus ``tara_training.json`` (domain, base, numbers), atomically."""
    final = spec.adapter_dir
    for cfg in model.peft_config.values():
        cfg.base_model_name_or_path = str(Path(spec.base).resolve())
    info = {"domain": spec.domain, "base": str(Path(spec.base).resolve()), "seed": spec.seed,
            "lora_rank": spec.lora_rank, "lora_alpha": spec.lora_alpha, **summary}
    with atomic_dir(final) as tmp:
        model.save_pretrained(str(tmp))
        (tmp / "tara_training.json").write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")
    return final
