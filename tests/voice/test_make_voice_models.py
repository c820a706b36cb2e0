"""scripts/make_voice_models.py really builds SpeechBrain pretrained folders, deterministically."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from .conftest import PROJECT_ROOT


def load_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("make_voice_models", PROJECT_ROOT / "scripts" / "make_voice_models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_voice_models"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_asr_builds_from_scratch_deterministically_and_loads_with_encoder_asr(tmp_path: Path) -> None:
    import torch
    from speechbrain.inference.ASR import EncoderASR

    m = load_script()
    phrases, voices = m.PHRASES[:3], m.ASR_TRAIN_VOICES[:2]
    a = m.build_asr(tmp_path / "a", epochs=2, log=False, phrases=phrases, voices=voices)
    b = m.build_asr(tmp_path / "b", epochs=2, log=False, phrases=phrases, voices=voices)
    assert sorted(p.name for p in a.iterdir()) == ["encoder.ckpt", "hyperparams.yaml", "phrases.json", "tokenizer.ckpt"]
    sa, sb = torch.load(a / "encoder.ckpt"), torch.load(b / "encoder.ckpt")
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert json.loads((a / "phrases.json").read_text())["phrases"] == list(phrases)

    from tara_desktop.voice.asr import load_speechbrain

    asr = load_speechbrain(EncoderASR, a)
    wav = torch.from_numpy(m.espeak(phrases[0], "en-us", 150, 50))[None]
    words, _ = asr.transcribe_batch(wav, torch.ones(1))
    assert isinstance(words[0], str) and set(words[0]) <= set(m.CHARS)


def test_shipped_models_are_small_and_complete() -> None:
    shipped = PROJECT_ROOT / "models" / "voice"
    for name, files in {"asr": {"hyperparams.yaml", "encoder.ckpt", "tokenizer.ckpt", "phrases.json"},
                        "emotion": {"hyperparams.yaml", "embedding_model.ckpt", "classifier.ckpt",
                                    "label_encoder.ckpt", "labels.json"}}.items():
        folder = shipped / name
        assert {p.name for p in folder.iterdir()} == files
        assert sum(p.stat().st_size for p in folder.iterdir()) < 3_000_000
    assert "DEMO" in (shipped / "emotion" / "hyperparams.yaml").read_text()
