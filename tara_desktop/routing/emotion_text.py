"""Emotion of a typed message, from its words (English, Spanish, French), emoji and punctuation.

Spoken messages get their emotion from the voice engineer's speech-emotion model; typed ones from
:func:`detect_text_emotion`. Both speak the same label set, :data:`EMOTIONS`. Labels from other sources
(SpeechBrain's IEMOCAP ``neu``/``hap``/``sad``/``ang``, or words such as ``anxious``, ``scared``,
``joy``) are mapped onto it by :func:`normalize_emotion`.

The method is a small weighted lexicon with negation handling ("not happy" is not happiness), intensity
from exclamation marks and capitals, and emoji. It is pure Python: it runs in well under a millisecond
and needs no model, so it works in every mode. Emotion shapes the reply's tone and voice, never the
domain (see :meth:`tara_desktop.routing.router.DomainRouter.system_prompt`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Final

#: The labels every emotion source in TARA uses. "fear" covers fear, anxiety, worry and panic.
EMOTIONS: Final[tuple[str, ...]] = ("neutral", "happy", "sad", "angry", "fear")

#: Emotions that call for a calmer, shorter, more supportive reply.
DISTRESS: Final[frozenset[str]] = frozenset({"sad", "angry", "fear"})

_ALIASES: Final[dict[str, str]] = {
    "neu": "neutral",
    "neutral": "neutral",
    "calm": "neutral",
    "none": "neutral",
    "hap": "happy",
    "happy": "happy",
    "joy": "happy",
    "excited": "happy",
    "surprise": "happy",
    "sad": "sad",
    "sadness": "sad",
    "ang": "angry",
    "angry": "angry",
    "anger": "angry",
    "frustrated": "angry",
    "disgust": "angry",
    "fear": "fear",
    "fearful": "fear",
    "anxious": "fear",
    "anxiety": "fear",
    "scared": "fear",
    "worried": "fear",
    "nervous": "fear",
    "stressed": "fear",
}


def normalize_emotion(label: str | None) -> str | None:
    """Map any emotion label onto :data:`EMOTIONS` (``None`` or an unknown label gives ``None``)."""
    if label is None:
        return None
    return _ALIASES.get(label.strip().lower())


# Lexicon: accent-free lower-case words; a trailing "*" matches any word starting with the stem.
# Weights: 1.0 a clear cue, 0.6 a weaker one.
_LEXICON: Final[dict[str, dict[str, float]]] = {
    "happy": {
        # English
        "happy": 1, "glad": 1, "delighted": 1, "thrilled": 1, "excited": 1, "joy*": 1, "great": 0.6,
        "awesome": 1, "amazing": 1, "wonderful": 1, "fantastic": 1, "love": 0.6, "loved": 0.6, "yay": 1,
        "grateful": 0.8, "thankful": 0.8, "proud": 0.8, "cheerful": 1, "ecstatic": 1, "hooray": 1,
        "excellent": 0.6, "celebrat*": 0.8, "brilliant": 0.6, "lovely": 0.6,
        # Spanish
        "feliz": 1, "contento": 1, "contenta": 1, "alegre": 1, "encanta": 0.8, "genial": 0.8,
        "emocionado": 1, "emocionada": 1, "maravilloso": 1, "orgulloso": 0.8, "orgullosa": 0.8,
        # French
        "heureux": 1, "heureuse": 1, "content": 0.8, "contente": 0.8, "ravi": 1, "ravie": 1,
        "joyeux": 1, "joyeuse": 1, "formidable": 1, "fier": 0.8, "fiere": 0.8,
    },
    "sad": {
        "sad": 1, "unhappy": 1, "depressed": 1, "depressing": 0.8, "miserable": 1, "lonely": 1,
        "alone": 0.6, "heartbroken": 1, "cry*": 1, "tears": 1, "grief": 1, "griev*": 1, "hopeless": 1,
        "down": 0.4, "upset": 0.8, "hurt": 0.6, "lost": 0.4, "miss": 0.4, "devastated": 1, "empty": 0.6,
        "worthless": 1, "sorrow*": 1, "gloomy": 1, "died": 0.8, "passed": 0.3, "funeral": 0.8,
        "disappointed": 0.8, "exhausted": 0.4,
        # Spanish
        "triste": 1, "tristeza": 1, "deprimido": 1, "deprimida": 1, "solo": 0.4, "sola": 0.4,
        "llorar": 1, "llorando": 1, "lloro": 1, "desanimado": 1, "desanimada": 1, "murio": 0.8,
        # French
        "tristesse": 1, "deprime": 1, "deprimee": 1, "seul": 0.4, "seule": 0.4, "pleure": 1,
        "pleurer": 1, "malheureux": 1, "malheureuse": 1, "decu": 0.8, "decue": 0.8,
    },
    "angry": {
        "angry": 1, "furious": 1, "mad": 0.8, "annoyed": 1, "annoying": 0.8, "irritat*": 1,
        "frustrat*": 1, "hate": 1, "pissed": 1, "outraged": 1, "ridiculous": 0.8, "unacceptable": 1,
        "useless": 0.8, "stupid": 0.8, "sick of": 1, "fed up": 1, "damn": 0.8, "wtf": 1, "rage": 1,
        "livid": 1, "infuriat*": 1, "terrible": 0.6, "worst": 0.8, "disgust*": 0.8, "scam": 0.6,
        # Spanish
        "enojado": 1, "enojada": 1, "enfadado": 1, "enfadada": 1, "furioso": 1, "furiosa": 1,
        "harto": 1, "harta": 1, "odio": 1, "molesto": 0.8, "molesta": 0.8, "rabia": 1,
        # French
        "colere": 1, "furieux": 1, "furieuse": 1, "enerve": 1, "enervee": 1, "agace": 1, "agacee": 1,
        "marre": 1, "deteste": 1, "inadmissible": 1, "nul": 0.6,
    },
    "fear": {
        "afraid": 1, "scared": 1, "scary": 0.8, "frighten*": 1, "terrified": 1, "terrifying": 0.8,
        "anxious": 1, "anxiety": 1, "worried": 1, "worry": 0.8, "worrying": 0.8, "nervous": 1,
        "panic*": 1, "panick*": 1, "fear": 1, "stressed": 0.8, "stress": 0.4, "overwhelmed": 0.8,
        "dread*": 1, "freaking out": 1, "freak out": 1, "uneasy": 0.8, "help me": 0.4, "emergency": 0.6,
        # Spanish
        "miedo": 1, "asustado": 1, "asustada": 1, "ansiedad": 1, "ansioso": 1, "ansiosa": 1,
        "preocupado": 1, "preocupada": 1, "nervioso": 1, "nerviosa": 1, "panico": 1, "estresado": 0.8,
        # French
        "peur": 1, "effraye": 1, "effrayee": 1, "anxieux": 1, "anxieuse": 1, "angoisse": 1,
        "inquiet": 1, "inquiete": 1, "stresse": 0.8, "stressee": 0.8, "panique": 1,
    },
}

_EMOJI: Final[dict[str, tuple[str, float]]] = {
    "😀": ("happy", 1), "😃": ("happy", 1), "😄": ("happy", 1), "😁": ("happy", 1), "😊": ("happy", 1),
    "🙂": ("happy", 0.6), "😍": ("happy", 1), "🥰": ("happy", 1), "🎉": ("happy", 1), "❤": ("happy", 0.6),
    "😂": ("happy", 0.8), "🤣": ("happy", 0.8), "👍": ("happy", 0.4), "🥳": ("happy", 1), ":)": ("happy", 0.6),
    ":d": ("happy", 0.8),
    "😢": ("sad", 1), "😭": ("sad", 1), "😞": ("sad", 1), "😔": ("sad", 1), "☹": ("sad", 1), "🙁": ("sad", 0.8),
    "💔": ("sad", 1), "😿": ("sad", 1), ":(": ("sad", 0.8), ":'(": ("sad", 1),
    "😠": ("angry", 1), "😡": ("angry", 1), "🤬": ("angry", 1), "😤": ("angry", 0.8), "👎": ("angry", 0.4),
    "😨": ("fear", 1), "😰": ("fear", 1), "😱": ("fear", 1), "😟": ("fear", 0.8), "😬": ("fear", 0.6),
}

_NEGATIONS: Final[frozenset[str]] = frozenset(
    {"not", "no", "never", "isnt", "arent", "wasnt", "dont", "doesnt", "didnt", "cant", "wont", "nothing",
     "without", "hardly", "nor", "ni", "nunca", "jamais", "pas", "sans"}
)

_WORD = re.compile(r"[a-z']+")
_MAX_CHARS = 4000


def _fold(text: str) -> str:
    """Lower-case and strip accents, so "tristeza", "colère" and "COLERE" match the lexicon."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _build() -> tuple[dict[str, list[tuple[str, float]]], list[tuple[str, str, float]],
                      list[tuple[tuple[str, ...], str, float]]]:
    exact: dict[str, list[tuple[str, float]]] = {}
    stems: list[tuple[str, str, float]] = []
    phrases: list[tuple[tuple[str, ...], str, float]] = []
    for emotion, words in _LEXICON.items():
        for word, weight in words.items():
            if " " in word:
                phrases.append((tuple(word.split()), emotion, float(weight)))
            elif word.endswith("*"):
                stems.append((word[:-1], emotion, float(weight)))
            else:
                exact.setdefault(word, []).append((emotion, float(weight)))
    return exact, stems, phrases


_EXACT, _STEMS, _PHRASES = _build()


def _word_hits(word: str) -> list[tuple[str, float]]:
    hits = list(_EXACT.get(word, ()))
    for stem, emotion, weight in _STEMS:
        if word.startswith(stem):
            hits.append((emotion, weight))
    return hits


def emotion_scores(text: str) -> dict[str, float]:
    """Raw evidence for each non-neutral emotion in ``text`` (0 = no cue)."""
    scores = dict.fromkeys(EMOTIONS[1:], 0.0)
    if not text:
        return scores
    text = text[:_MAX_CHARS]
    for symbol, (emotion, weight) in _EMOJI.items():
        count = text.lower().count(symbol)
        if count:
            scores[emotion] += weight * min(count, 3)
    folded = _fold(text)
    words = [w.replace("'", "") for w in _WORD.findall(folded)]
    for i, word in enumerate(words):
        hits = _word_hits(word)
        if not hits:
            continue
        negated = any(w in _NEGATIONS for w in words[max(0, i - 3):i])
        for emotion, weight in hits:
            if negated:
                # "not happy" leans sad; "not worried" / "not angry" is simply not that emotion.
                if emotion == "happy":
                    scores["sad"] += 0.5 * weight
                continue
            scores[emotion] += weight
    for phrase, emotion, weight in _PHRASES:
        n = len(phrase)
        for i in range(len(words) - n + 1):
            if tuple(words[i:i + n]) == phrase:
                scores[emotion] += weight
    # Shouting: many exclamation marks or words in capitals intensify what is already there.
    letters = [c for c in text if c.isalpha()]
    shouting = text.count("!") >= 2 or (
        len(letters) >= 8 and sum(c.isupper() for c in letters) / len(letters) > 0.7
    )
    if shouting:
        top = max(scores, key=lambda e: scores[e])
        if scores[top] > 0:
            scores[top] *= 1.3
        else:
            scores["angry"] += 0.3 if text.count("!") >= 3 else 0.0
    return scores


def detect_text_emotion(text: str) -> tuple[str, float]:
    """The emotion of a typed message as ``(label, confidence)``; ``label`` is one of :data:`EMOTIONS`.

    No emotional cue gives ``("neutral", 0.6)``: most messages are neutral, but the absence of cues is
    weak evidence. Never raises on odd input (empty text, binary junk, emoji only).
    """
    scores = emotion_scores(text or "")
    total = sum(scores.values())
    top = max(scores, key=lambda e: scores[e])
    if scores[top] < 0.5:
        return "neutral", 0.6
    share = scores[top] / total
    strength = 1.0 - math.exp(-1.2 * scores[top])
    confidence = round(min(0.95, 0.35 + 0.6 * strength * share), 3)
    return top, confidence
