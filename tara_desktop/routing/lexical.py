"""TF-IDF over word and character n-grams: the router's degraded mode, and a lexical signal blended with
the embeddings (it helps with Spanish and French and with rare technical words)."""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import numpy as np

from tara_desktop.routing.cache import save_npz
from tara_desktop.routing.text import WORDS, fold

log = logging.getLogger(__name__)

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
    for word in WORDS.findall(fold(text)):
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
        save_npz(path, terms=np.fromiter(self._vocab, dtype=np.int64, count=len(self._vocab)), idf=self._idf, indptr=self._indptr,
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
