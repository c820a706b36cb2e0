"""Fixtures for the training tests: a tiny real base model and small real datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import make_pairs


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real llama-architecture Hugging Face model folder (built once per test session)."""
    from tests.support.tiny_base import build_tiny_base

    return build_tiny_base(tmp_path_factory.mktemp("tiny-base") / "llama", arch="llama", seed=0)


@pytest.fixture(scope="session")
def dataset_bytes() -> bytes:
    return "".join(json.dumps(r) + "\n" for r in make_pairs(40)).encode("utf-8")
