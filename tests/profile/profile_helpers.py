"""Helpers shared by the profile tests."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

ENCODINGS = ("utf-8", "utf-16-le", "utf-16-be")


def files_containing(directory: Path, text: str) -> list[str]:
    """Every file under ``directory`` whose bytes contain ``text`` in UTF-8 or UTF-16 (LE/BE)."""
    needles = [text.encode(e) for e in ENCODINGS]
    hits = []
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.name} ({enc})" for enc, n in zip(ENCODINGS, needles, strict=True) if n in data]
    return hits


def raw(profile_dir: Path) -> closing[sqlite3.Connection]:
    """A plain SQLite connection to the profile file (autocommit), as an attacker with file access would
    have; closed at the end of the ``with`` block."""
    return closing(sqlite3.connect(profile_dir / "profile.db", isolation_level=None))
