"""The training job itself, run in-process on the tiny real base model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tara_desktop.errors import TaraError
from tara_desktop.jobs import Cancelled, JobState
from tara_desktop.training import checkpoints as ck
from tara_desktop.training import job, recovery

from .helpers import small_spec


def _adapter_tensors(adapter_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(adapter_dir / "adapter_model.safetensors"))


def _losses(metrics: Path) -> list[tuple[int, float]]:
    return [(e["step"], e["loss"]) for e in map(json.loads, metrics.read_text().splitlines())]


def _assert_same_adapter(a: Path, b: Path) -> None:
    import torch

    ta, tb = _adapter_tensors(a), _adapter_tensors(b)
    assert ta.keys() == tb.keys() and ta
    for k in ta:
        assert torch.allclose(ta[k], tb[k], rtol=0, atol=1e-6), k


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, dataset_bytes: bytes) -> tuple[Path, job.TrainingResult]:
    """An uninterrupted run of the shared spec: 24 steps, checkpoints every 6."""
    out = tmp_path_factory.mktemp("reference") / "job"
    events: list[dict[str, Any]] = []
    result = job.run(small_spec(tiny_base, out), JobState(), dataset_bytes, on_event=events.append)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "done" and "samples" in kinds
    return out, result


def test_loss_falls_and_the_adapter_is_written(reference: tuple[Path, job.TrainingResult], tiny_base: Path) -> None:
    out, result = reference
    assert result.status == "done" and result.step == 24 and result.total_steps == 24
    assert result.val_loss_before is not None and result.val_loss_after is not None
    assert result.val_loss_after < result.val_loss_before - 0.3
    assert result.perplexity_after is not None and result.perplexity_before is not None
    assert result.perplexity_after < result.perplexity_before
    losses = [loss for _, loss in _losses(out / "metrics.jsonl")]
    assert len(losses) == 24
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.3
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert {"step", "epoch", "loss", "lr", "tokens_per_s", "elapsed", "eta", "cpu_percent", "rss_mb"} <= first.keys()
    assert len(result.samples) == 1 and {"prompt", "before", "after"} == result.samples[0].keys()
    # No user text on disk: the job's own files hold numbers only.
    for name in ("metrics.jsonl", "result.json", "job.json"):
        assert "colour" not in (out / name).read_text()
    assert recovery.read_job(out).status == "done"
    # The adapter is a real PEFT adapter that loads onto the base.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), str(out / "adapter"))
    assert model.peft_config["default"].r == 8
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000012", "step-000018", "step-000024"]
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(tiny_base.resolve())
    info = json.loads((out / "adapter" / "tara_training.json").read_text())
    assert info["domain"] == "general" and info["val_loss_after"] == result.val_loss_after


def test_trains_on_a_gguf_base(tmp_path: Path, dataset_bytes: bytes) -> None:
    """A .gguf base (transformers de-quantizes it into a torch model) trains like a folder."""
    from tests.support.tiny_model import build_tiny_gguf

    gguf = build_tiny_gguf(tmp_path / "tiny.gguf", seed=0)
    result = job.run(small_spec(gguf, tmp_path / "job", target_modules=None, max_steps=6, save_every=3,
                                sample_count=0), JobState(), dataset_bytes)
    assert result.status == "done" and result.val_loss_after is not None and result.val_loss_before is not None
    assert result.val_loss_after < result.val_loss_before
    adapter_config = json.loads((tmp_path / "job" / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(gguf.resolve())
    assert sorted(adapter_config["target_modules"]) == ["q_proj", "v_proj"]  # the llama default


def test_same_seed_same_losses(reference: tuple[Path, job.TrainingResult], tiny_base: Path,
                               dataset_bytes: bytes, tmp_path: Path) -> None:
    out_ref, _ = reference
    job.run(small_spec(tiny_base, tmp_path / "again", max_steps=8), JobState(), dataset_bytes)
    assert _losses(tmp_path / "again" / "metrics.jsonl") != []
    # A shorter run has another LR schedule, so compare with a run of the same length.
    job.run(small_spec(tiny_base, tmp_path / "twice", max_steps=8), JobState(), dataset_bytes)
    assert _losses(tmp_path / "again" / "metrics.jsonl") == _losses(tmp_path / "twice" / "metrics.jsonl")
    _assert_same_adapter(tmp_path / "again" / "adapter", tmp_path / "twice" / "adapter")
    other = tmp_path / "seed1"
    job.run(small_spec(tiny_base, other, max_steps=8, seed=1), JobState(), dataset_bytes)
    assert _losses(other / "metrics.jsonl") != _losses(tmp_path / "twice" / "metrics.jsonl")
    assert out_ref.exists()


class _CancelAt(JobState):
    """Cancels as soon as the job reports the given step (like a user pressing Stop)."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step
        self.seen: list[int] = []

    def on_event(self, event: dict[str, Any]) -> None:
        if event["type"] == "metrics":
            self.seen.append(event["step"])
            if event["step"] == self.step:
                self.cancel()


def test_cancel_stops_within_one_step_with_a_checkpoint_and_resume_matches(
    reference: tuple[Path, job.TrainingResult], tiny_base: Path, dataset_bytes: bytes, tmp_path: Path
) -> None:
    out = tmp_path / "job"
    state = _CancelAt(8)
    with pytest.raises(Cancelled):
        job.run(small_spec(tiny_base, out), state, dataset_bytes, on_event=state.on_event)
    assert state.seen == list(range(1, 9))  # not one step more
    assert (out / "checkpoints" / "step-000008" / ck.MANIFEST).is_file()
    assert recovery.read_job(out).status == "cancelled"
    assert not (out / "adapter").exists()
    [interrupted] = recovery.find_interrupted_jobs(tmp_path)
    assert interrupted.resume_step == 8 and interrupted.reason == "it was stopped"

    events: list[dict[str, Any]] = []
    result = job.run(recovery.read_job(out).spec, JobState(), dataset_bytes, on_event=events.append)
    assert result.resumed_from == 8 and result.step == 24
    ref_out, ref_result = reference
    _assert_same_adapter(out / "adapter", ref_out / "adapter")
    assert result.val_loss_after == pytest.approx(ref_result.val_loss_after, abs=1e-6)
    assert result.val_loss_before == pytest.approx(ref_result.val_loss_before, abs=1e-9)
    # The metrics log continues the same curve, one line per step.
    ref_losses, losses = _losses(ref_out / "metrics.jsonl"), _losses(out / "metrics.jsonl")
    assert [s for s, _ in losses] == list(range(1, 25))
    assert [loss for _, loss in losses] == pytest.approx([loss for _, loss in ref_losses], abs=1e-5)
    assert recovery.find_interrupted_jobs(tmp_path) == []


def test_corrupt_and_incomplete_checkpoints_are_skipped(
    reference: tuple[Path, job.TrainingResult], tiny_base: Path, dataset_bytes: bytes, tmp_path: Path
) -> None:
    ref_out, _ = reference
    out = tmp_path / "job"
    state = _CancelAt(13)
    with pytest.raises(Cancelled):
        job.run(small_spec(tiny_base, out), state, dataset_bytes, on_event=state.on_event)
    ckpts = out / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-000006", "step-000012", "step-000013"]
    # Newest: corrupt one byte of its weights. Next: lose its manifest (as if the save was cut short).
    weights = ckpts / "step-000013" / "adapter_model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF
    weights.write_bytes(bytes(raw))
    (ckpts / "step-000012" / ck.MANIFEST).unlink()
    # A half-written save and a junk folder left behind.
    shutil.copytree(ckpts / "step-000006", ckpts / "step-000018.tmp")
    (ckpts / "step-000020").mkdir()

    messages: list[str] = []
    result = job.run(
        recovery.read_job(out).spec, JobState(), dataset_bytes,
        on_event=lambda e: messages.append(e["message"]) if e["type"] == "log" else None,
    )
    assert result.resumed_from == 6
    text = "\n".join(messages)
    assert "step-000018.tmp: incomplete (interrupted while saving), removed" in text
    assert "step-000020: incomplete (no manifest), skipped" in text
    assert "step-000013: adapter_model.safetensors is corrupt (checksum mismatch), skipped" in text
    assert "step-000012: incomplete (no manifest), skipped" in text
    _assert_same_adapter(out / "adapter", ref_out / "adapter")


def test_bad_base_and_bad_data_are_clear_errors(tiny_base: Path, dataset_bytes: bytes, tmp_path: Path) -> None:
    with pytest.raises(TaraError, match=r"not found; give a Hugging Face model folder or a \.gguf file"):
        job.run(small_spec(tmp_path / "nope", tmp_path / "a"), JobState(), dataset_bytes)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TaraError, match="is not a base model"):
        job.run(small_spec(tmp_path / "empty", tmp_path / "b"), JobState(), dataset_bytes)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(TaraError, match="cannot load base model"):
        job.run(small_spec(broken, tmp_path / "c"), JobState(), dataset_bytes)
    with pytest.raises(TaraError, match="line 2: not valid JSON"):
        job.run(small_spec(tiny_base, tmp_path / "d"), JobState(), b'{"prompt": "a", "response": "b"}\n{oops\n')
    assert recovery.read_job(tmp_path / "d").status == "failed"
