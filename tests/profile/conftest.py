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


@pytest.fixture(autouse=True)
def _fast_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """New passphrase keys at scrypt N=2**14 (the product uses 2**17, ~2 s on a busy core): the tests make
    hundreds. test_profile_keys checks the real cost and the upgrade."""
    monkeypatch.setenv("TARA_SCRYPT_N", str(2**14))


@pytest.fixture
def profile_dir(tmp_path: Path) -> Path:
    return tmp_path / "profile"


@pytest.fixture
def profile(profile_dir: Path) -> Iterator[Profile]:
    """A passphrase profile (TARA_PASSPHRASE is set by the top-level conftest)."""
    p = Profile.open(profile_dir)
    yield p
    p.close()
