"""The deterministic safety layer: urgent symptoms always get the fixed notice, health answers the
not-medical-advice line, and ordinary messages neither."""

from __future__ import annotations

import pytest

from tara_desktop import safety

URGENT = [
    ("I have chest pain that spreads to my left arm", "chest"),
    ("there is a tight pressure in my chest since this morning", "chest"),
    ("I think my dad is having a heart attack", "chest"),
    ("I can't breathe properly and my lips feel numb", "breathing"),
    ("my daughter has trouble breathing after a bee sting", "breathing"),
    ("I get short of breath just sitting down", "breathing"),
    ("my father's face is drooping and his speech is slurred", "stroke"),
    ("what are the signs of a stroke?", "stroke"),
    ("suddenly my left arm feels numb and I can't find words", "stroke"),
    ("my son has had a fever for four days", "fever"),
    ("I've had a fever since Monday and it won't go away", "fever"),
    ("three days now with a high fever, should I worry?", "fever"),
    ("I keep having suicidal thoughts", "self-harm"),
    ("sometimes I want to die", "self-harm"),
    ("I have been hurting myself again", "self-harm"),
    ("I feel like killing myself", "self-harm"),
    ("my friend took an overdose of pills", "emergency"),
]

ORDINARY = [
    "How much sleep does an adult need?",
    "What foods are high in iron?",
    "Write a poem about a lucky stroke of genius",
    "My chest of drawers is broken, how do I fix it?",
    "How do I reverse a list in Python?",
    "I had a fever last year, how do I avoid the flu this winter?",
    "Give me a breathing exercise for relaxing",
    "This bug is killing me, the test keeps failing",
]


@pytest.mark.parametrize(("text", "kind"), URGENT)
def test_urgent_messages_get_the_fixed_notice(text: str, kind: str) -> None:
    assert safety.urgent_kind(text) == kind
    notice = safety.urgent_notice(text)
    assert notice is not None and notice.startswith(safety.LABEL)
    assert "emergency" in notice.lower() and ("doctor" in notice.lower() or "emergency number" in notice.lower())


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_messages_get_no_notice(text: str) -> None:
    assert safety.urgent_notice(text) is None


class _State:
    def __init__(self, cancelled: bool) -> None:
        self.cancelled = cancelled


def test_guard_wraps_the_reply_stream() -> None:
    out = list(safety.guard("I have chest pain", "healthcare", iter(["Rest ", "now."])))
    assert out[0] == safety.EMERGENCY + "\n\n"
    assert out[1:3] == ["Rest ", "now."]
    assert out[-1] == "\n\n" + safety.DISCLAIMER and "not medical advice" in out[-1]
    # an ordinary health answer: the reply, then the disclaimer
    assert list(safety.guard("What foods are high in iron?", "healthcare", ["Spinach."])) == [
        "Spinach.", "\n\n" + safety.DISCLAIMER]
    # another domain: untouched
    assert list(safety.guard("How do I reverse a list?", "technical", ["Use reversed()."])) == ["Use reversed()."]
    # an urgent message routed elsewhere still gets the notice and the disclaimer
    crisis = list(safety.guard("I want to die", "general", ["..."]))
    assert crisis[0].startswith(safety.CRISIS) and "988" in crisis[0] and crisis[-1].endswith(safety.DISCLAIMER)
    # a reply the person stopped gets no trailer
    stopped = list(safety.guard("What foods are high in iron?", "healthcare", ["Spin"], _State(True)))
    assert stopped == ["Spin"]
