"""A small, deterministic safety layer around health replies.

A 135M-parameter model does not reliably tell a person with chest pain to call an ambulance, however the
prompt asks. So TARA itself does, independently of the model:

- a message that describes urgent symptoms (chest pain, trouble breathing, signs of a stroke, a fever
  that has lasted days, thoughts of suicide or self-harm, and a few other emergencies) gets a fixed,
  clearly labelled safety notice *before* the model's reply;
- every health answer (the healthcare domain, or any urgent message) ends with a one-line note that it
  is general information, not medical advice.

The texts are fixed here (never generated), labelled as TARA's, and the detection is plain regular
expressions over the person's message: the same message always gives the same notice. Nothing is logged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

HEALTH_DOMAIN = "healthcare"

LABEL = "**Safety notice from TARA** (fixed text, not written by the AI model):"

DISCLAIMER = (
    "_Note from TARA: this is general information, not medical advice. "
    "For advice about you, see a doctor or pharmacist._"
)

EMERGENCY = (
    f"{LABEL} these symptoms can be a medical emergency. **Call your local emergency number now** "
    "(911 in the US and Canada, 112 in Europe, 999 in the UK) or go to the nearest emergency department. "
    "Do not wait to see if it passes, and do not drive yourself."
)

FEVER = (
    f"{LABEL} a fever that lasts more than two or three days needs a doctor: **contact your doctor today**. "
    "Call emergency services at once if there is a stiff neck, confusion, trouble breathing, a rash that "
    "does not fade when pressed, or a baby under three months with a fever."
)

CRISIS = (
    f"{LABEL} you do not have to go through this alone. If you might act on these thoughts or are in "
    "danger, **call your local emergency number now** (911, 112, 999). You can call or text a crisis line "
    "any time: 988 in the US and Canada, 116 123 (Samaritans) in the UK and Ireland; findahelpline.com "
    "lists others. Please also tell someone you trust or see a doctor."
)


@dataclass(frozen=True)
class _Rule:
    name: str
    pattern: re.Pattern[str]
    notice: str


def _rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.IGNORECASE)


_DAYS = r"(?:\d+|two|three|four|five|six|seven|several|many|a few|few|couple of)\s+(?:days|weeks)"

RULES: tuple[_Rule, ...] = (
    _Rule("self-harm", _rx(
        r"\bsuicid", r"\bkill(?:ing)?\s+my\s*self\b", r"\bend(?:ing)?\s+(?:my\s+life|it\s+all)\b",
        r"\b(?:want|wanted|going)\s+to\s+die\b", r"\bself[- ]?harm", r"\b(?:hurt|harm|cut)(?:ing|ting)?\s+my\s*self\b",
        r"\bno\s+(?:reason|point)\s+(?:to|in)\s+liv", r"\bbetter\s+off\s+dead\b", r"\btake\s+my\s+(?:own\s+)?life\b",
    ), CRISIS),
    _Rule("chest", _rx(
        r"\bchest\s+(?:pain|pains|hurts?|hurting|pressure|tightness|tight|ache|aches|discomfort)\b",
        r"\b(?:pain|pressure|tightness|ache)\s+in\s+(?:my|the|his|her|their)\s+chest\b",
        r"\bheart\s+attack\b",
    ), EMERGENCY),
    _Rule("breathing", _rx(
        r"\b(?:trouble|difficulty|problems?|struggling|hard|unable)\s+(?:to\s+)?breath",
        r"\b(?:can'?t|cannot|can not|could ?n[o']t)\s+(?:catch\s+my\s+)?breath",
        r"\bshort(?:ness)?\s+of\s+breath\b", r"\bnot\s+breathing\b", r"\bchoking\b",
        r"\bgasping\b", r"\b(?:lips|face)\s+(?:are|is|turning|turned)\s+blue\b",
        r"\bthroat\s+(?:is\s+)?(?:swelling|closing)\b",
    ), EMERGENCY),
    _Rule("stroke", _rx(
        r"\b(?:having|had|has|is\s+having)\s+a\s+stroke\b", r"\bsigns?\s+of\s+(?:a\s+)?stroke\b",
        r"\bstroke\s+(?:symptoms|signs)\b", r"\bface\s+(?:is\s+)?droop", r"\bdrooping\s+(?:face|mouth|smile)\b",
        r"\bslurred\s+speech\b", r"\bslurring\b",
        r"\bsudden(?:ly)?\s+(?:numb|weak|confus|can'?t\s+(?:speak|talk|see)|los[st]\s+(?:of\s+)?(?:vision|speech))",
        r"\bsudden(?:ly)?\b[^.?!]{0,40}\b(?:numb|weak|drooping|slurr|confused|can'?t\s+(?:speak|talk|find\s+(?:the\s+)?words))",
        r"\b(?:one|left|right)\s+side\s+of\s+(?:my|his|her|the)\s+(?:face|body)\s+(?:is\s+|went\s+|feels\s+)?(?:numb|weak)",
        r"\b(?:arm|leg)\s+(?:is\s+|went\s+|feels\s+)?(?:suddenly\s+)?(?:numb|weak)\b.*\b(?:face|speech|talk)",
    ), EMERGENCY),
    _Rule("emergency", _rx(
        r"\b(?:unconscious|passed\s+out\s+and|won'?t\s+wake\s+up|not\s+waking\s+up)\b",
        r"\bbleeding\s+(?:heavily|a\s+lot|won'?t\s+stop|will\s+not\s+stop|that\s+won'?t\s+stop)\b",
        r"\boverdos", r"\bseizure\b", r"\bsevere\s+allergic\b", r"\banaphyla",
    ), EMERGENCY),
    _Rule("fever", _rx(
        rf"\bfever\b[^.?!]*?\b(?:for|since|over|about|almost|nearly|more\s+than)\s+(?:the\s+(?:last|past)\s+)?{_DAYS}",
        rf"\b{_DAYS}\b[^.?!]*?\bfever\b",
        r"\bfever\b[^.?!]*?\b(?:for|since)\s+(?:last\s+week|a\s+week|monday|tuesday|wednesday|thursday|friday|"
        r"saturday|sunday|days)\b",
        r"\bfever\s+(?:that\s+)?(?:won'?t|will\s+not|doesn'?t|does\s+not)\s+(?:go|break)",
    ), FEVER),
)


def urgent_kind(text: str) -> str | None:
    """Which urgent situation ``text`` describes ("self-harm", "chest", "breathing", "stroke",
    "emergency", "fever"), or None."""
    for rule in RULES:
        if rule.pattern.search(text):
            return rule.name
    return None


def urgent_notice(text: str) -> str | None:
    """The fixed safety notice for a message that describes urgent symptoms, or None."""
    for rule in RULES:
        if rule.pattern.search(text):
            return rule.notice
    return None


class _Cancellable(Protocol):
    @property
    def cancelled(self) -> bool: ...


def guard(user_text: str, domain: str, reply: Iterable[str], state: _Cancellable | None = None) -> Iterator[str]:
    """The reply stream with the safety layer around it: the urgent notice first (when the message
    describes urgent symptoms), then the model's pieces, then the not-medical-advice line on a health
    answer (not after a reply the person stopped)."""
    notice = urgent_notice(user_text)
    if notice is not None:
        yield notice + "\n\n"
    yield from reply
    if (notice is not None or domain == HEALTH_DOMAIN) and not (state is not None and state.cancelled):
        yield "\n\n" + DISCLAIMER


__all__ = ["CRISIS", "DISCLAIMER", "EMERGENCY", "FEVER", "guard", "urgent_kind", "urgent_notice"]
