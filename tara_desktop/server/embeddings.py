"""``POST /v1/embeddings``: OpenAI-compatible sentence embeddings from the router's own model.

The vectors come from the embedding model the router already runs (all-MiniLM-L6-v2 as an int8 ONNX
graph, :class:`~tara_desktop.routing.embedding.OnnxEmbedder`: no torch), L2-normalised, 384 numbers each.
``model`` is ``tara`` or the router's embedding model name (``routing.embedding_model``, e.g.
``all-MiniLM-L6-v2``); ``input`` a string or a list of strings; ``encoding_format`` ``float`` (the
default) or ``base64`` (little-endian float32, what the official clients ask for). Each text is cut to the
model's window (256 tokens), as sentence-transformers does; ``usage`` counts the tokens embedded.

Every problem is an :class:`~tara_desktop.server.errors.ApiError`: 400 for a malformed request, 404 for
another model, 503 when the router runs without its embedding model (degraded, keywords only).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tara_desktop.server.errors import ApiError, bad_request

if TYPE_CHECKING:
    from tara_desktop.jobs import JobState
    from tara_desktop.routing.router import DomainRouter

MAX_INPUTS = 2048  # OpenAI's own limit per request
BATCH = 64  # texts embedded at a time: a cancel or a wrong ``dimensions`` stops after one batch, not all
MAX_INPUT_CHARS = 32_000  # a text longer than this is cut to the model's window anyway; refuse it as a mistake


@dataclass(frozen=True)
class EmbeddingsRequest:
    """A checked embeddings request."""

    model: str
    inputs: list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


def model_names(router: DomainRouter) -> list[str]:
    """The ``model`` values this endpoint answers to."""
    return ["tara", *([router.embedding_model] if router.embedding_model else [])]


def parse_embeddings_request(body: Any, router: DomainRouter) -> EmbeddingsRequest:
    """Check a decoded JSON body of ``POST /v1/embeddings``."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    names = model_names(router)
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request(f"'model' is missing; use {' or '.join(repr(n) for n in names)}", param="model")
    if model.strip() not in names:
        raise ApiError(404, f"the embedding model {model!r} does not exist here; use "
                            f"{' or '.join(repr(n) for n in names)}", param="model", code="model_not_found")
    raw = body.get("input")
    if raw is None:
        raise bad_request("'input' is missing; give a string or a list of strings to embed", param="input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise bad_request("'input' must be a string or a list of strings (token arrays are not supported)",
                          param="input")
    if not texts:
        raise bad_request("'input' is an empty list; give at least one string", param="input")
    if len(texts) > MAX_INPUTS:
        raise bad_request(f"'input' has {len(texts)} strings; give at most {MAX_INPUTS}", param="input")
    for i, text in enumerate(texts):
        where = "'input'" if isinstance(raw, str) else f"'input[{i}]'"
        if not text.strip():
            raise bad_request(f"{where} is empty; every input must have some text", param="input")
        if len(text) > MAX_INPUT_CHARS:
            raise bad_request(f"{where} is {len(text)} characters; give at most {MAX_INPUT_CHARS}", param="input")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise bad_request(f"encoding_format {fmt!r} is not available; use 'float' or 'base64'",
                          param="encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1):
        raise bad_request("'dimensions' must be a positive integer (or left out)", param="dimensions")
    return EmbeddingsRequest(model=model.strip(), inputs=texts, encoding_format=fmt, dimensions=dimensions)


def embeddings_response(router: DomainRouter, request: EmbeddingsRequest, state: JobState | None = None
                        ) -> dict[str, Any]:
    """Embed the request's texts with the router's model: the OpenAI response body (a blocking call). The
    texts go through in batches of :data:`BATCH`; a cancelled ``state`` (the client went away) stops
    between them, and a wrong ``dimensions`` is refused after the first."""
    from tara_desktop.routing.embedding import EmbeddingUnavailable

    parts: list[np.ndarray] = []
    tokens = 0
    for start in range(0, len(request.inputs), BATCH):
        if state is not None:
            state.check()
        try:
            vectors, used = router.embed(request.inputs[start : start + BATCH])
        except EmbeddingUnavailable as exc:
            raise ApiError(503, f"embeddings are not available: {exc}", type="server_error",
                           code="model_unavailable") from None
        size = int(vectors.shape[1])
        if request.dimensions is not None and request.dimensions != size:
            raise bad_request(f"'dimensions' is {request.dimensions}, but this model's embeddings have {size}; "
                              f"ask for {size} or leave it out", param="dimensions")
        parts.append(vectors)
        tokens += used
    vectors = np.concatenate(parts)
    data: list[dict[str, Any]] = []
    for i, vector in enumerate(vectors):
        embedding: str | list[float]
        if request.encoding_format == "base64":
            embedding = base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
        else:
            embedding = [float(x) for x in vector]
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    return {"object": "list", "data": data, "model": request.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
