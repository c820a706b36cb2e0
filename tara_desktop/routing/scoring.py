"""How the router scores a message: per-domain k-nearest-neighbour scores, the softmax that turns them
into confidences, the "no clear domain" class and the tuned constants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np


def domain_scores(sims: np.ndarray, owner: np.ndarray, n_domains: int, top_k: int) -> np.ndarray:
    """Per domain: the mean of its ``top_k`` highest similarities."""
    scores = np.zeros(n_domains, dtype=np.float32)
    for d in range(n_domains):
        s = sims[owner == d]
        k = min(top_k, s.size)
        scores[d] = float(np.mean(np.partition(s, s.size - k)[s.size - k :])) if k else 0.0
    return scores


def softmax(x: np.ndarray, temperature: float) -> np.ndarray:
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

@dataclass(frozen=True)
class Tuning:
    """Constants chosen on benchmarks/data/router_dev.jsonl (never on the held-out set)."""

    top_k: int = 3  # examples averaged per domain
    lexical_weight: float = 0.35  # TF-IDF similarity added to the embedding similarity
    foreign_lexical_weight: float = 1.5  # the same for Spanish or French (the embedding knows less)
    temperature: float = 0.05  # softmax over the combined scores
    no_topic_floor: float = 0.25  # combined score of the "no clear domain" class at least this
    lexical_temperature: float = 0.03  # degraded mode: softmax over TF-IDF scores only
    lexical_floor: float = 0.05
