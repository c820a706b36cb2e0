"""The model a fresh install answers with: the mapping resolves every domain to the bundled
SmolLM2-135M-Instruct (no adapter), the file is the one the catalog records, it is a chat model, and
`tara chat` with no --model answers with it. A missing or damaged bundled model is one clear error line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tara_desktop.config import load_configs
from tara_desktop.llm import gguf_file
from tara_desktop.llm.catalog import load_catalog
from tara_desktop.llm.library import default_chat_model

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_every_domain_answers_with_the_bundled_model_and_no_adapter() -> None:
    configs = load_configs()
    assert configs.mapping.default.model == BUNDLED and configs.mapping.default.adapter is None
    for domain in configs.domains:
        choice = configs.mapping.for_domain(domain)
        assert (choice.model, choice.adapter) == (BUNDLED, None), domain
    assert not (ROOT / "models" / "tara-demo.gguf").exists()
    assert not list((ROOT / "models").glob("adapters/*.gguf")), "adapters trained on the old demo model"


def test_the_bundled_file_is_the_one_the_catalog_records() -> None:
    entry = load_catalog().get("smollm2-135m-instruct")
    path = default_chat_model()
    assert path.name == BUNDLED
    info = gguf_file.validate(path, expected_sha256=entry.sha256)
    assert info.size_bytes == entry.size_bytes
    assert info.architecture == entry.architecture and info.chat_template
    assert info.n_layers == entry.n_layers and info.n_head_kv == entry.n_head_kv
    assert info.context_length == entry.context_length


def _tara(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "tara_desktop.cli", *args], capture_output=True, text=True,
                          env=full, timeout=timeout, cwd=ROOT)


@pytest.mark.slow
def test_tara_chat_answers_with_the_bundled_model() -> None:
    r = _tara("chat", "--domain", "general", "--json", "What is the capital of France?")
    assert r.returncode == 0, r.stderr[-2000:]
    assert BUNDLED in r.stderr
    assert len(r.stdout.split()) >= 3 and "<|im_" not in r.stdout


@pytest.mark.slow
def test_an_urgent_health_question_gets_the_safety_notice() -> None:
    from tara_desktop import safety

    r = _tara("chat", "--domain", "healthcare", "I have crushing chest pain and my left arm is numb")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith(safety.EMERGENCY)
    assert r.stdout.rstrip().endswith(safety.DISCLAIMER)


def _install_without_the_model(tmp_path: Path) -> Path:
    """An install folder whose models/ lacks the bundled file and whose catalog names no package."""
    inst = tmp_path / "install"
    shutil.copytree(ROOT / "configs", inst / "configs")
    (inst / "resources").symlink_to(ROOT / "resources")
    (inst / "models").mkdir(parents=True)
    if (ROOT / "models" / "router").is_dir():
        (inst / "models" / "router").symlink_to(ROOT / "models" / "router")
    catalog = yaml.safe_load((ROOT / "models" / "catalog.yaml").read_text(encoding="utf-8"))
    for m in catalog["models"]:
        m.pop("package", None)
    (inst / "models" / "catalog.yaml").write_text(yaml.safe_dump(catalog), encoding="utf-8")
    return inst


def _errors(r: subprocess.CompletedProcess[str]) -> list[str]:
    """The error lines (the last stderr line must be the one error; no traceback)."""
    lines = r.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    return [ln for ln in lines if ln.startswith("error:")]


def test_a_missing_bundled_model_is_one_clear_error(tmp_path: Path) -> None:
    inst = _install_without_the_model(tmp_path)
    env = {"TARA_INSTALL_DIR": str(inst)}
    r = _tara("chat", "--domain", "general", "hello", env=env)
    lines = _errors(r)
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: the bundled chat model {BUNDLED} is missing")
    assert "reinstall TARA" in lines[0] and "tara models download" in lines[0]
    r = subprocess.run([sys.executable, "-m", "tara_desktop.ui.app", "--smoke"], capture_output=True, text=True,
                       env={**os.environ, **env, "QT_QPA_PLATFORM": "offscreen"}, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and _errors(r) == lines, r.stderr


def test_a_damaged_bundled_model_is_one_clear_error(tmp_path: Path) -> None:
    inst = _install_without_the_model(tmp_path)
    with default_chat_model().open("rb") as f:
        (inst / "models" / BUNDLED).write_bytes(f.read(4096))
    r = _tara("chat", "--domain", "general", "hello", env={"TARA_INSTALL_DIR": str(inst)})
    lines = _errors(r)
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("error: the bundled chat model ") and "is damaged (4,096 bytes, expected 98,362,432)" in lines[0]


def test_the_bundled_model_is_offered_first_as_a_training_base(tmp_path: Path) -> None:
    from tara_desktop.llm.library import ModelLibrary, installed_model_files
    from tara_desktop.profile import Profile

    from .gguf_corpus import write_valid_gguf

    mine = write_valid_gguf(tmp_path / "mine.gguf")
    with Profile.open(tmp_path / "profile") as profile:
        library = ModelLibrary(profile)
        library.add(mine, name="mine")
        found = installed_model_files(library, load_catalog())
    assert [label for label, _ in found] == ["SmolLM2 135M Instruct (bundled)", "mine"]
    assert found[0][1] == default_chat_model() and found[1][1] == mine.resolve()
