"""Plain helpers for the Models page (no Qt): which GGUF files are installed and whether they fit here."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tara_desktop import paths
from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState


@dataclass(frozen=True)
class InstalledModel:
    path: Path
    size_bytes: int
    bundled: bool

    @property
    def name(self) -> str:
        return self.path.name


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def installed_models(profile_dir: Path) -> list[InstalledModel]:
    """GGUF files in the install's models/ and the user's models folder (adapters included)."""
    found: list[InstalledModel] = []
    for folder, bundled in ((paths.bundled_models_dir(), True), (paths.user_models_dir(profile_dir), False)):
        if not folder.is_dir():
            continue
        for p in sorted(folder.rglob("*.gguf")):
            try:
                found.append(InstalledModel(p, p.stat().st_size, bundled))
            except OSError:
                continue
    return found


def fit_label(need_mb: float, available_mb: float, budget_mb: float | None = None) -> str:
    """"fits", "may be slow" or "won't fit" for a model needing ``need_mb`` on this machine."""
    limit = available_mb if budget_mb is None else min(available_mb, max(budget_mb, 0.0) or available_mb)
    if need_mb <= 0.6 * limit:
        return "fits"
    if need_mb <= 0.95 * available_mb:
        return "may be slow"
    return "won't fit"


def estimate_need_mb(path: Path, n_ctx: int) -> float:
    """Memory a model needs loaded (weights + KV cache); falls back to the file size."""
    try:
        from tara_desktop.llm.engine import estimate_memory_mb

        return float(estimate_memory_mb(path, n_ctx))
    except Exception:
        try:
            return path.stat().st_size / (1024 * 1024) * 1.2
        except OSError:
            return 0.0


def available_mb() -> float:
    import psutil

    return float(psutil.virtual_memory().available) / (1024 * 1024)


def validate_model(path: Path, state: JobState) -> Any:
    """Validate a GGUF file (raises InvalidGguf with one clear line)."""
    from tara_desktop.llm import gguf_file

    state.report(None, f"checking {path.name}")
    return gguf_file.validate(path)


def add_model(path: Path, profile_dir: Path, state: JobState) -> Path:
    """Validate ``path`` and copy it into the user's models folder (atomically, with progress)."""
    path = Path(path)
    if not path.is_file():
        raise TaraError(f"{path} is not a file; choose a .gguf model file")
    info = validate_model(path, state)
    target_dir = paths.user_models_dir(profile_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / path.name
    if target.resolve() == path.resolve():
        return target
    if target.exists():
        raise TaraError(f"a model called {path.name} is already installed; rename the file or remove the old one")
    tmp = target.with_name(f".{target.name}.part")
    total = max(1, info.size_bytes if getattr(info, "size_bytes", 0) else path.stat().st_size)
    copied = 0
    try:
        with path.open("rb") as src, tmp.open("wb") as dst:
            while chunk := src.read(4 * 1024 * 1024):
                state.check()
                dst.write(chunk)
                copied += len(chunk)
                state.report(copied / total, f"copying {path.name}")
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def remove_model(model: InstalledModel) -> None:
    if model.bundled:
        raise TaraError(f"{model.name} comes with TARA and cannot be removed; choose another model instead")
    try:
        model.path.unlink()
    except OSError as exc:
        raise TaraError(f"{model.name} could not be removed ({exc.strerror}); close programs using it") from None


def disk_free_mb(folder: Path) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(folder).free / (1024 * 1024)
