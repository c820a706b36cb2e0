"""House rules that keep the codebase easy to live in."""

from __future__ import annotations

import ast
from pathlib import Path

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
