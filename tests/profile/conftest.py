"""Fixtures for the encrypted-profile tests: real SQLite files, real encryption, real keyring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tara_desktop.profile import Profile


@pytest.fixture
def profile_dir(tmp_path: Path) -> Path:
    return tmp_path / "profile"


@pytest.fixture
def profile(profile_dir: Path) -> Iterator[Profile]:
    """A passphrase profile (TARA_PASSPHRASE is set by the top-level conftest)."""
    p = Profile.open(profile_dir)
    yield p
    p.close()
