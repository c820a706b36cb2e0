"""A streaming sentence splitter for speaking a reply while it is still being generated.

Feed it tokens as the model produces them; it returns each sentence as soon as the sentence is known to be
complete (its terminator followed by whitespace and the start of the next sentence), so text-to-speech can start
on the first sentence while the rest is generated. It does not split abbreviations ("Dr.", "Mr.", "e.g.",
"i.e.", "U.S."), decimals ("3.5"), URLs ("example.com/a.b"), initials ("J. Smith") or ellipses ("Wait...").
:meth:`SentenceSplitter.flush` returns whatever is left at the end.

Every emitted sentence is a whitespace-trimmed slice of the input, so joining the sentences gives back the
input modulo whitespace.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["SentenceSplitter", "split_sentences"]

_TERMINATORS = ".!?…"
_CLOSERS = "\"')]}”’»"
# Lower-case, without the final period. Words that usually stand before a name or a number.
ABBREVIATIONS = frozenset(
    {
        "dr", "mr", "mrs", "ms", "prof", "sr", "jr", "st", "mt", "rev", "gen", "col", "capt", "lt", "sgt",
        "vs", "etc", "approx", "no", "nos", "vol", "fig", "figs", "ch", "sec", "p", "pp", "ed", "eds",
        "inc", "ltd", "co", "corp", "dept", "est", "min", "max", "jan", "feb", "mar", "apr", "jun", "jul",
        "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue", "wed", "thu", "fri", "sat", "sun", "ave",
        "blvd", "rd", "e.g", "i.e", "a.m", "p.m", "cf", "al", "viz", "ca",
    }
)
_DOTTED = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]$")  # U.S, e.g, i.e, a.m, U.S.A
_PARAGRAPH = re.compile(r"\n\s*\n")


class SentenceSplitter:
    """Feed tokens with :meth:`feed`; get complete sentences back as soon as they end."""

    def __init__(self, *, max_chars: int = 400) -> None:
        self._buf = ""
        self._scan = 0  # everything before this index was already checked for a boundary
        self._max_chars = max_chars

    def feed(self, token: str) -> list[str]:
        """Add a piece of text; return the sentences it completed (possibly none)."""
        if not token:
            return []
        self._buf += token
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """End of the text: return the remaining sentence(s)."""
        out = self._drain(final=True)
        rest = self._buf.strip()
        self._buf, self._scan = "", 0
        if rest:
            out.append(rest)
        return out

    def pending(self) -> str:
        """Text received that is not yet part of an emitted sentence."""
        return self._buf

    # ---- internals -------------------------------------------------------------------------------------
    def _drain(self, *, final: bool) -> list[str]:
        out: list[str] = []
        while True:
            cut = self._find_boundary(final=final)
            if cut is None:
                break
            sentence = self._buf[:cut].strip()
            rest = self._buf[cut:]
            self._buf = rest.lstrip()
            self._scan = 0
            if sentence:
                out.append(sentence)
        if not final and len(self._buf) > self._max_chars:
            # A run-on without a boundary: speak it at the last whitespace so speech does not stall.
            space = self._buf.rfind(" ", 0, self._max_chars)
            if space > 0:
                sentence = self._buf[:space].strip()
                self._buf = self._buf[space:].lstrip()
                self._scan = 0
                if sentence:
                    out.append(sentence)
        return out

    def _find_boundary(self, *, final: bool) -> int | None:
        """Index just after a complete sentence in the buffer, or None."""
        buf = self._buf
        n = len(buf)
        i = self._scan
        while i < n:
            ch = buf[i]
            if ch == "\n":
                m = _PARAGRAPH.match(buf, i)
                if m is not None and buf[:i].strip():
                    if m.end() < n or final:
                        return i
                    self._scan = i
                    return None
            if ch not in _TERMINATORS:
                i += 1
                continue
            # A run of terminators, then closing quotes/brackets.
            start = i
            j = i
            while j < n and buf[j] in _TERMINATORS:
                j += 1
            while j < n and buf[j] in _CLOSERS:
                j += 1
            if j == n:
                # Cannot tell yet ("3." may become "3.5"); wait for more text unless this is the end.
                self._scan = start
                return None
            if not buf[j].isspace():
                i = j  # "3.5", "example.com", "e.g." inside a word: not a boundary
                continue
            k = j
            while k < n and buf[k].isspace():
                k += 1
            if k == n and not final:
                self._scan = start
                return None
            next_char = buf[k] if k < n else ""
            if self._is_boundary(buf, start, j, next_char):
                return j
            i = j
        self._scan = len(buf.rstrip())  # trailing whitespace may become a paragraph break
        return None

    @staticmethod
    def _is_boundary(buf: str, start: int, end: int, next_char: str) -> bool:
        run = buf[start:end].rstrip(_CLOSERS)
        if "…" in run or "..." in run:
            return False  # an ellipsis trails off; it does not end the sentence for speech
        if next_char and next_char.islower():
            return False  # "e.g. this", "Yahoo! is": the sentence goes on
        if run == ".":
            word_start = buf.rfind(" ", 0, start) + 1
            word = buf[word_start:start].lstrip("\"'([{“‘«")
            if not word:
                return True
            if word.lower() in ABBREVIATIONS or _DOTTED.match(word):
                return False
            if len(word) == 1 and word.isalpha():
                return False  # an initial: "J. Smith"
            if "://" in word or word.lower().startswith("www."):
                return True  # a URL at the end of a sentence
        return True


def split_sentences(tokens: Iterable[str]) -> list[str]:
    """All sentences of a token stream (or of one string, passed as ``[text]``)."""
    splitter = SentenceSplitter()
    out: list[str] = []
    for token in tokens:
        out.extend(splitter.feed(token))
    out.extend(splitter.flush())
    return out
