"""House rules that keep the codebase easy to live in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]

PACKAGE = PROJECT_ROOT / "tara_desktop"
QT_MODULES = {"PySide6", "shiboken6", "pyqtgraph"}
HEAVY_MODULES = {"torch", "torchaudio", "speechbrain", "transformers", "peft", "llama_cpp", "sentence_transformers"}


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(top-level module, line, at module level) for each import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[str, int, bool]] = []
    module_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            found.append((name.split(".")[0], node.lineno, id(node) in module_level))
    return found


def _python_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_qt_only_in_ui_package() -> None:
    offenders = [
        f"{path.relative_to(PROJECT_ROOT)}:{line} imports {name}"
        for path in _python_files()
        if "ui" not in path.relative_to(PACKAGE).parts[:1]
        for name, line, _ in _imports(path)
        if name in QT_MODULES
    ]
    assert not offenders, "Qt must only be imported in tara_desktop/ui/:\n" + "\n".join(offenders)


def test_the_guard_itself_detects_a_qt_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from PySide6.QtCore import QObject\n")
    assert ("PySide6", 2, False) in _imports(bad)


def test_heavy_libraries_are_imported_lazily() -> None:
    offenders = [
        f"{path.relative_to(PROJECT_ROOT)}:{line} imports {name} at module level"
        for path in _python_files()
        for name, line, top in _imports(path)
        if top and name in HEAVY_MODULES
    ]
    assert not offenders, "import heavy libraries inside functions:\n" + "\n".join(offenders)


# -- the command line's imports, in a fresh interpreter -----------------------------------------------------

#: Never imported by `tara chat` or `tara route`: each costs seconds and hundreds of MB to answer one message.
CLI_FORBIDDEN = {"torch", "transformers", "sentence_transformers", "speechbrain", "torchaudio", "peft"}

_PROBE = """
import json, sys
from tara_desktop import cli
code = cli.main(sys.argv[2:])
loaded = sorted({m.split(".")[0] for m in sys.modules})
with open(sys.argv[1], "w", encoding="utf-8") as fh:
    json.dump({"code": code, "loaded": loaded}, fh)
"""


def _modules_after(tmp_path: Path, *argv: str) -> set[str]:
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "modules.json"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "TARA_PASSPHRASE": "architecture test"}
    env["TARA_HOME"] = str(tmp_path / "home")
    run = subprocess.run([sys.executable, "-c", _PROBE, str(out), *argv], env=env, capture_output=True,
                         timeout=300, check=False)
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["code"] == 0, run.stderr.decode(errors="replace")[-2000:]
    return set(result["loaded"])


def test_tara_route_never_imports_torch_or_transformers(tmp_path: Path) -> None:
    loaded = _modules_after(tmp_path, "route", "--json", "my laptop will not boot after the update")
    assert not loaded & CLI_FORBIDDEN, sorted(loaded & CLI_FORBIDDEN)
    assert "numpy" in loaded  # the probe really saw the command's imports (the router needs numpy)
    # only the areas up to the one providing `route` were imported, not profile/training/server code
    assert not {"llama_cpp", "cryptography"} & loaded, sorted({"llama_cpp", "cryptography"} & loaded)


@pytest.mark.slow
def test_tara_chat_imports_only_what_the_turn_needs(tmp_path: Path, tiny_gguf: Path) -> None:
    loaded = _modules_after(tmp_path, "chat", "--model", str(tiny_gguf), "hello there, how are you?")
    assert not loaded & CLI_FORBIDDEN, sorted(loaded & CLI_FORBIDDEN)
    assert "llama_cpp" in loaded  # the turn really ran through the engine


def test_the_cli_probe_would_see_a_forbidden_import(tmp_path: Path) -> None:
    """The guard is not vacuous: a command module that imports torch at the top is caught."""
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "modules.json"
    probe = _PROBE.replace("from tara_desktop import cli", "import torch  # noqa\nfrom tara_desktop import cli")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "TARA_HOME": str(tmp_path / "home")}
    subprocess.run([sys.executable, "-c", probe, str(out), "route", "--keywords", "hi there"], env=env, capture_output=True,
                   timeout=300, check=False)
    assert "torch" in set(json.loads(out.read_text(encoding="utf-8"))["loaded"])
