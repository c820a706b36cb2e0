"""Emotion from typed text, and emotion shaping the system prompt and voice (never the domain)."""

from __future__ import annotations

import pytest

from tara_desktop.routing.emotion_text import EMOTIONS, detect_text_emotion, normalize_emotion
from tara_desktop.routing.router import DomainRouter


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("I'm so happy, I finally passed my driving test!", "happy"),
        ("This is awesome, thank you so much 😀", "happy"),
        ("I feel so sad and lonely since my dog died", "sad"),
        ("I've been crying all night 😭", "sad"),
        ("This is ridiculous, I'm furious that the update deleted my files", "angry"),
        ("I'm sick of this stupid printer!!!", "angry"),
        ("I'm really scared and anxious about my surgery tomorrow", "fear"),
        ("I'm panicking, my chest feels tight", "fear"),
        ("Estoy muy triste, no puedo dejar de llorar", "sad"),
        ("Estoy harto, esto es una rabia", "angry"),
        ("J'ai peur, je suis très angoissée", "fear"),
        ("Je suis tellement heureuse aujourd'hui !", "happy"),
        ("How do I convert a string to an integer in Python?", "neutral"),
        ("What is the capital of Peru?", "neutral"),
    ],
)
def test_detects_the_emotion_of_typed_text(text: str, label: str) -> None:
    got, confidence = detect_text_emotion(text)
    assert got == label, (text, got, confidence)
    assert got in EMOTIONS
    assert 0.0 < confidence <= 1.0


def test_negation_is_not_the_emotion() -> None:
    assert detect_text_emotion("I'm not worried about it at all")[0] == "neutral"
    assert detect_text_emotion("I am not happy with this at all")[0] == "sad"


def test_stronger_cues_give_higher_confidence() -> None:
    _, weak = detect_text_emotion("I'm a bit worried")
    _, strong = detect_text_emotion("I'm terrified, I'm panicking and so scared")
    assert strong > weak


@pytest.mark.parametrize("text", ["", "   ", "\x00\xff\xfe junk \x1b", "😐", "a" * 200_000])
def test_odd_input_never_crashes(text: str) -> None:
    label, confidence = detect_text_emotion(text)
    assert label in EMOTIONS and 0.0 <= confidence <= 1.0


def test_labels_from_other_sources_are_normalised() -> None:
    assert normalize_emotion("neu") == "neutral"
    assert normalize_emotion("hap") == "happy"
    assert normalize_emotion("ang") == "angry"
    assert normalize_emotion("Anxious") == "fear"
    assert normalize_emotion("sad") == "sad"
    assert normalize_emotion("bewildered") is None
    assert normalize_emotion(None) is None


def test_distress_makes_the_prompt_calmer_shorter_and_supportive(keyword_router: DomainRouter) -> None:
    base = keyword_router.system_prompt("healthcare", None)
    assert base == keyword_router.system_prompt("healthcare", "neutral")
    assert base == keyword_router.domains["healthcare"].system_prompt.strip()  # the config's own prompt
    assert "TARA" in base
    for emotion in ("sad", "angry", "fear", "anxious", "ang"):
        shaped = keyword_router.system_prompt("healthcare", emotion)
        assert shaped.startswith(base), emotion  # the domain's prompt is kept
        extra = shaped[len(base):].lower()
        assert "calm" in extra and "short" in extra and "supportive" in extra, emotion
    assert "anxious" in keyword_router.system_prompt("technical", "fear")
    assert "frustrated" in keyword_router.system_prompt("technical", "angry")
    assert "emergency" in keyword_router.system_prompt("healthcare", "fear")
    happy = keyword_router.system_prompt("creative", "happy")
    assert "upbeat" in happy and "calm" not in happy
    # an unknown domain falls back to the general prompt rather than failing a turn
    assert keyword_router.system_prompt("astrology", None) == keyword_router.system_prompt("general", None)


def test_emotion_changes_the_voice_not_the_domain(router: DomainRouter) -> None:
    text = "I'm so stressed and scared, my laptop died and my thesis is due tomorrow, how do I recover the files?"
    assert detect_text_emotion(text)[0] == "fear"
    assert router.route(text).domain == "technical"
    tech = router.domains["technical"]
    assert router.voice_for("technical", None) == tech.voice
    assert router.voice_for("technical", "happy") == tech.voice
    assert router.voice_for("technical", "fear") == tech.calm_voice != tech.voice
    assert router.voice_for("technical", "sad") == tech.calm_voice
