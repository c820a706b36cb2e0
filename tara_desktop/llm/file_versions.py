"""What was worked out about one version of a file (its validation, its memory shape), kept until the file
changes: a version is the file's size, modification time and inode, so a rewritten or replaced file is
read again while an unchanged one is not parsed twice."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

Version = tuple[int, int, int]  # size, modification time (ns), inode


def version_of(path: Path) -> Version | None:
    """The version of ``path`` on disk, or None when it cannot be read (then nothing is cached)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class PerFileVersion(Generic[T]):
    """A thread-safe cache of one value per file version (at most ``limit`` files, then it starts over)."""

    def __init__(self, limit: int = 256) -> None:
        self._limit = limit
        self._items: dict[Path, tuple[Version, T]] = {}
        self._lock = threading.Lock()

    def get(self, key: Path, version: Version | None) -> T | None:
        """The value kept for this version of ``key``, or None."""
        if version is None:
            return None
        with self._lock:
            hit = self._items.get(key)
        return hit[1] if hit is not None and hit[0] == version else None

    def put(self, key: Path, version: Version | None, value: T) -> None:
        if version is None:
            return
        with self._lock:
            if len(self._items) > self._limit:
                self._items.clear()
            self._items[key] = (version, value)


__all__ = ["PerFileVersion", "Version", "version_of"]
