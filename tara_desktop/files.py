"""Small file-system helpers shared by every area that writes atomically."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """fsync a file, or a folder (so a rename inside it is durable) where the OS allows it; Windows cannot
    open folders for fsync, and a failure here only weakens durability, so it is ignored."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
