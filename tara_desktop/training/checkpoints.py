"""Checkpoints on disk: written atomically, verified before use.

A checkpoint is a folder ``DIR/checkpoints/step-000050/`` holding the LoRA adapter (PEFT format),
``training_state.pt`` (optimizer, scheduler, RNG states, position in the data) and ``manifest.json``
(step, sizes and SHA-256 of every file). It is written as ``step-000050.tmp/`` — files first, fsynced,
the manifest last — and only then renamed into place, so a folder without ``.tmp`` and with a manifest
whose checksums match is complete. Anything else is skipped with a message, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tara_desktop.files import atomic_dir, atomic_write

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
STATE_FILE = "training_state.pt"
FORMAT_VERSION = 1
_NAME = re.compile(r"^step-(\d{6,})$")


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path
    manifest: dict[str, Any]


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON atomically (:func:`tara_desktop.files.atomic_write`: temp file, fsync, os.replace)."""
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True).encode("utf-8"))


def write_checkpoint(
    root: Path,
    step: int,
    write_files: Callable[[Path], None],
    info: dict[str, Any],
) -> Checkpoint:
    """Create ``root/step-NNNNNN`` atomically. ``write_files(tmp_dir)`` writes the payload; the manifest
    (``info`` plus checksums) is written last, then the folder is fsynced and renamed into place
    (:func:`tara_desktop.files.atomic_dir`; the same step saved again, e.g. a cancel right after a periodic
    save, replaces the old one through ``step-NNNNNN.old``)."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    with atomic_dir(final, temp=root / f"{checkpoint_name(step)}.tmp") as tmp:
        write_files(tmp)
        files: dict[str, dict[str, Any]] = {}
        for p in sorted(tmp.rglob("*")):
            if p.is_file():
                rel = p.relative_to(tmp).as_posix()
                files[rel] = {"sha256": sha256_file(p), "size": p.stat().st_size}
        manifest = {"format": FORMAT_VERSION, "step": step, "created_at": time.time(), "files": files, **info}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    return Checkpoint(step, final, manifest)


def verify_checkpoint(path: Path) -> tuple[Checkpoint | None, str]:
    """(checkpoint, "") when complete and intact, else (None, why it was skipped)."""
    m = _NAME.match(path.name)
    if not m or not path.is_dir():
        return None, f"{path.name}: not a checkpoint folder"
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return None, f"{path.name}: incomplete (no manifest), skipped"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
        step = int(manifest["step"])
        if not isinstance(files, dict) or step != int(m.group(1)):
            raise ValueError("manifest does not match the folder")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"{path.name}: unreadable manifest ({exc.__class__.__name__}), skipped"
    if STATE_FILE not in files:
        return None, f"{path.name}: manifest lists no training state, skipped"
    for rel, meta in files.items():
        f = path / rel
        if not f.is_file():
            return None, f"{path.name}: {rel} is missing, skipped"
        if f.stat().st_size != meta.get("size") or sha256_file(f) != meta.get("sha256"):
            return None, f"{path.name}: {rel} is corrupt (checksum mismatch), skipped"
    return Checkpoint(step, path, manifest), ""


def list_checkpoint_dirs(root: Path) -> list[Path]:
    """Checkpoint-looking folders, newest step first (``.tmp`` leftovers excluded)."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found, reverse=True)]


def newest_complete(root: Path, on_skip: Callable[[str], None] | None = None) -> Checkpoint | None:
    """The newest intact checkpoint; each one skipped on the way is reported through ``on_skip``."""
    for path in list_checkpoint_dirs(root):
        ckpt, why = verify_checkpoint(path)
        if ckpt is not None:
            return ckpt
        log.warning("checkpoint %s", why)
        if on_skip is not None:
            on_skip(f"checkpoint {why}")
    return None


def clean_leftovers(root: Path) -> list[str]:
    """Remove ``.tmp``/``.old`` folders an interrupted save left behind; return their names."""
    removed: list[str] = []
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and (p.name.endswith(".tmp") or p.name.endswith(".old")):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
    return removed


def prune(root: Path, keep: int) -> None:
    """Keep the newest ``keep`` intact checkpoints; remove older ones (never the only good one)."""
    good = 0
    for path in list_checkpoint_dirs(root):
        if good >= keep:
            shutil.rmtree(path, ignore_errors=True)
            continue
        ckpt, _ = verify_checkpoint(path)
        if ckpt is not None:
            good += 1
