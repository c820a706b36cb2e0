"""installer/tara.nsi compiles with makensis, warnings treated as errors, with and without the optional
larger-models component. makensis runs on Linux but can only package a Windows bundle on Windows, so the
script is compiled against a placeholder tree with the bundle's layout (empty files)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "installer" / "tara.nsi"

pytestmark = pytest.mark.skipif(
    shutil.which("makensis") is None,
    reason="makensis is not installed (Debian package nsis; scripts/setup installs it as root)",
)


def _placeholder_tree(base: Path) -> tuple[Path, Path, Path]:
    app, models, extra = base / "app", base / "models", base / "extra"
    for rel in ("tara.exe", "tara-desktop.exe", "_internal/python311.dll", "_internal/base_library.zip",
                "_internal/configs/config.yaml", "_internal/models/catalog.yaml",
                "_internal/llama_cpp/lib/llama.dll", "_internal/PySide6/plugins/platforms/qwindows.dll",
                "_internal/transformers/models/bert/modeling_bert.py", "_internal/NOTICES.txt"):
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).write_bytes(b"placeholder")
    for rel in ("SmolLM2-135M-Instruct.Q4_1.gguf", "router/all-MiniLM-L6-v2/manifest.json",
                "router/all-MiniLM-L6-v2/model.int8.opt.onnx", "router/all-MiniLM-L6-v2/tokenizer.json",
                "router/all-MiniLM-L6-v2/examples.npz", "voice/whisper-tiny.en/model.bin",
                "voice/whisper-tiny.en/config.json", "voice/whisper-tiny.en/tokenizer.json",
                "voice/whisper-tiny.en/vocabulary.txt", "voice/piper/en_US-joe-medium.onnx",
                "voice/piper/en_US-joe-medium.onnx.json", "voice/piper/MODEL_CARD"):
        (models / rel).parent.mkdir(parents=True, exist_ok=True)
        (models / rel).write_bytes(b"placeholder")
    extra.mkdir()
    (extra / "Llama-3.2-1B-Instruct-Q4_0.gguf").write_bytes(b"placeholder")
    return app, models, extra


def _makensis(*defines: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["makensis", "-WX", "-V2", "-DCOMPRESSION=zlib", *defines, str(SCRIPT)], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("with_extra", [False, True], ids=["bundled-models", "with-larger-models"])
def test_nsis_script_compiles_without_warnings(tmp_path: Path, with_extra: bool) -> None:
    app, models, extra = _placeholder_tree(tmp_path)
    out = tmp_path / "TARA-0.1.0-Setup.exe"
    defines = ["-DVERSION=0.1.0", f"-DBUNDLE_DIR={app}", f"-DMODELS_DIR={models}", f"-DOUTFILE={out}"]
    if with_extra:
        defines.append(f"-DEXTRA_MODELS_DIR={extra}")
    r = _makensis(*defines)
    assert r.returncode == 0, f"makensis -WX failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert "warning" not in (r.stdout + r.stderr).lower()
    assert out.read_bytes()[:2] == b"MZ", "makensis did not write a Windows executable"


def test_nsis_script_names_a_missing_bundle(tmp_path: Path) -> None:
    r = _makensis(f"-DOUTFILE={tmp_path / 'x.exe'}")
    assert r.returncode != 0
    assert "BUNDLE_DIR" in r.stdout + r.stderr


def test_nsis_script_fails_on_an_empty_models_folder(tmp_path: Path) -> None:
    """A build without the models must not silently produce an installer that lacks them."""
    app, _models, _extra = _placeholder_tree(tmp_path)
    empty = tmp_path / "no-models"
    empty.mkdir()
    r = _makensis("-DVERSION=0.1.0", f"-DBUNDLE_DIR={app}", f"-DMODELS_DIR={empty}",
                  f"-DOUTFILE={tmp_path / 'x.exe'}")
    assert r.returncode != 0


def test_nsis_script_installs_the_third_party_notices(tmp_path: Path) -> None:
    """NOTICES.txt (licences of Piper, Whisper, Qt, ...) is installed next to the programs: a bundle
    without it does not compile into an installer."""
    app, models, _extra = _placeholder_tree(tmp_path)
    defines = ["-DVERSION=0.1.0", f"-DBUNDLE_DIR={app}", f"-DMODELS_DIR={models}"]
    ok = _makensis(*defines, f"-DOUTFILE={tmp_path / 'ok.exe'}")
    assert ok.returncode == 0, ok.stdout[-3000:]
    (app / "_internal" / "NOTICES.txt").unlink()
    r = _makensis(*defines, f"-DOUTFILE={tmp_path / 'x.exe'}")
    assert r.returncode != 0
    assert "NOTICES.txt" in r.stdout + r.stderr
