"""Text clean-up shared by both routing methods: what part of a message is looked at, whether it has
words at all, and a rough guess of its language."""

from __future__ import annotations

import re
import unicodedata
from typing import Final

#: Characters of a message that are looked at (the opening of a long message says what it is about).
MAX_ROUTE_CHARS: Final = 1500

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]")
_SPACES = re.compile(r"\s+")
#: A word: two or more letters.
WORDS = re.compile(r"[^\W\d_]{2,}")


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
    words = WORDS.findall(sample)
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


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))
