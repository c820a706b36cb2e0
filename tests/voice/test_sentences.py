"""The streaming sentence splitter: emits sentences as soon as they end, never splits inside them."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from tara_desktop.voice.sentences import SentenceSplitter, split_sentences


def stream(text: str, size: int = 1) -> list[str]:
    return split_sentences([text[i : i + size] for i in range(0, len(text), size)])


def test_plain_sentences_split_and_flush() -> None:
    assert stream("Hello there. How are you? I am fine!") == ["Hello there.", "How are you?", "I am fine!"]


def test_abbreviations_decimals_urls_and_ellipses_stay_whole() -> None:
    text = (
        "Dr. Smith met Mr. Jones and Mrs. Lee at 3.5 p.m. in the U.S. office, e.g. on Monday, i.e. today. "
        "Visit https://example.com/a.b?x=1.5 for details. Wait... Then go. It costs $3.50 vs. $4.00 now."
    )
    assert stream(text, 3) == [
        "Dr. Smith met Mr. Jones and Mrs. Lee at 3.5 p.m. in the U.S. office, e.g. on Monday, i.e. today.",
        "Visit https://example.com/a.b?x=1.5 for details.",
        "Wait... Then go.",
        "It costs $3.50 vs. $4.00 now.",
    ]


def test_initials_quotes_and_paragraphs() -> None:
    text = 'J. R. R. Tolkien wrote it. "Really?" she asked.\n\nA new paragraph without a stop\n\nEnd'
    assert stream(text, 2) == [
        "J. R. R. Tolkien wrote it.", '"Really?"', "she asked.", "A new paragraph without a stop", "End",
    ] or stream(text, 2) == ["J. R. R. Tolkien wrote it.", '"Really?" she asked.',
                              "A new paragraph without a stop", "End"]


def test_sentence_is_emitted_as_soon_as_the_next_one_starts() -> None:
    s = SentenceSplitter()
    assert s.feed("The first sentence") == []
    assert s.feed(" is done.") == []  # could still be "done.5"/an abbreviation: wait
    assert s.feed(" Then") == ["The first sentence is done."]
    assert s.feed(" more") == []
    assert s.flush() == ["Then more"]


def test_decimal_split_across_tokens_is_not_a_boundary() -> None:
    s = SentenceSplitter()
    assert s.feed("It is 3.") == []
    assert s.feed("5 metres long. Next") == ["It is 3.5 metres long."]


def test_run_on_text_is_cut_at_whitespace_to_keep_speech_going() -> None:
    text = "word " * 200
    out = stream(text, 5)
    assert len(out) > 1 and all(len(s) <= 400 for s in out)
    assert " ".join(out).split() == text.split()


def test_empty_and_whitespace() -> None:
    assert stream("") == []
    assert stream("   \n  ") == []


_pieces = st.sampled_from(
    ["Dr.", "Mr.", "3.5", "e.g.", "i.e.", "U.S.", "https://a.b/c.d", "...", "…", "Hello", "world", "it",
     ".", "!", "?", " ", "  ", "\n", "\n\n", "The", "end.", "x", "A.", '"', ")", "42", "ok!", "Why?"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_pieces, max_size=40), st.integers(min_value=1, max_value=7))
def test_concatenation_equals_input_modulo_whitespace(pieces: list[str], size: int) -> None:
    text = "".join(pieces)
    out = stream(text, size)
    assert all(s == s.strip() and s for s in out)
    assert re.sub(r"\s+", "", "".join(out)) == re.sub(r"\s+", "", text)


@settings(max_examples=200, deadline=None)
@given(st.lists(_pieces, max_size=30), st.integers(min_value=1, max_value=9))
def test_tokenisation_does_not_change_the_sentences(pieces: list[str], size: int) -> None:
    text = "".join(pieces)
    assert stream(text, size) == stream(text, len(text) or 1)
