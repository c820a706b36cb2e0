"""The router's caches of derived, content-free data under the user's cache folder: the example
embeddings (per model, the SHA-256 of each example text and its vector; no text, never user content)
and the keyword index (see :mod:`tara_desktop.routing.lexical`)."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from tara_desktop.files import atomic_file

if TYPE_CHECKING:
    from tara_desktop.routing.embedding import Embedder

log = logging.getLogger(__name__)

#: Bumped when the embedding cache's content or layout changes.
_CACHE_VERSION: Final = "1"
_CACHE_MAX_ENTRIES: Final = 20_000


def default_cache_dir() -> Path:
    """Where derived, content-free data (example embeddings) is cached."""
    home = os.environ.get("TARA_HOME")
    if home:
        return Path(home).expanduser() / "cache" / "router"
    import platformdirs

    return Path(platformdirs.user_cache_dir("TARA", appauthor=False)) / "router"


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Save ``arrays`` to ``path`` atomically. The temp name carries the thread too: two routers in one
    process (the GUI's and a server's) may refresh the same cache at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with atomic_file(path, temp=temp) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]


def example_keys(texts: Sequence[str]) -> list[str]:
    """SHA-256 of every example text, in order (what the example-embedding caches are keyed by)."""
    return [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]


def write_example_embeddings(texts: Sequence[str], embedder: Embedder, path: Path) -> None:
    """Embed every example with ``embedder`` into ``path`` (hashes and vectors, no text)."""
    save_npz(path, keys=np.array(example_keys(texts)), vectors=embedder.embed(texts), name=np.array(embedder.name))


def example_embeddings(texts: Sequence[str], embedder: Embedder, cache_dir: Path) -> np.ndarray:
    """Embeddings of the example texts, from the cache in ``cache_dir`` where possible.

    The cache holds, per embedding model, a SHA-256 of each example text and its vector (no text):
    editing the domains file re-embeds only the examples that changed."""
    model_key = hashlib.sha256(f"{_CACHE_VERSION}|{embedder.name}".encode()).hexdigest()[:20]
    path = cache_dir / f"examples-{model_key}.npz"
    keys = example_keys(texts)
    known: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            known = dict(zip(data["keys"].tolist(), data["vectors"].astype(np.float32), strict=True))
    except (OSError, ValueError, KeyError, EOFError):
        pass  # missing or unreadable: recompute
    missing = sorted({k: i for i, k in enumerate(keys) if k not in known}.values())
    bundled = getattr(embedder, "bundled_examples", None)
    if missing and isinstance(bundled, Path):
        # the shipped examples, embedded by the export step with this very model (read-only)
        try:
            with np.load(bundled, allow_pickle=False) as data:
                if str(data["name"]) == embedder.name:
                    shipped = dict(zip(data["keys"].tolist(), data["vectors"].astype(np.float32), strict=True))
                    known.update({keys[i]: shipped[keys[i]] for i in missing if keys[i] in shipped})
        except (OSError, ValueError, KeyError, EOFError):
            pass
        missing = [i for i in missing if keys[i] not in known]
        if not missing:
            _save_examples(path, known)
    if missing:
        fresh = embedder.embed([texts[i] for i in missing])
        for i, vector in zip(missing, fresh, strict=True):
            known[keys[i]] = vector
        _save_examples(path, known)
    return np.stack([known[k] for k in keys]).astype(np.float32)


def _save_examples(path: Path, known: Mapping[str, np.ndarray]) -> None:
    items = list(known.items())[-_CACHE_MAX_ENTRIES:]
    try:
        save_npz(path, keys=np.array([k for k, _ in items]), vectors=np.stack([v for _, v in items]))
    except OSError as exc:
        log.info("router: could not cache example embeddings in %s (%s)", path.parent, exc.__class__.__name__)
