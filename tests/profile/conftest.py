"""Fixtures for the encrypted-profile tests: real SQLite files, real encryption, real keyring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tara_desktop.profile import Profile


@pytest.fixture(autouse=True)
def _anchors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Profile anchors (kept outside profile folders) go to this test's own folder."""
    folder = tmp_path / "anchors"
    monkeypatch.setenv("TARA_ANCHOR_DIR", str(folder))
    return folder


@pytest.fixture
def profile_dir(tmp_path: Path) -> Path:
    return tmp_path / "profile"


@pytest.fixture
def profile(profile_dir: Path) -> Iterator[Profile]:
    """A passphrase profile (TARA_PASSPHRASE is set by the top-level conftest)."""
    p = Profile.open(profile_dir)
    yield p
    p.close()
