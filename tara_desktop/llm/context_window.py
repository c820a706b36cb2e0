"""Fitting a conversation of any length into a model's context.

The prompt for a turn is: the system prompt (with a summary of older turns folded in, when one exists)
+ as many of the most recent turns as fit, leaving ``reply_tokens`` free for the answer. Token counts
come from the engine's own tokenizer and chat template, and the final prompt is measured exactly, so
it always fits.

Older turns that no longer fit are summarised by the model off the critical path:
:func:`summarize_turns` (a plain function the caller runs in the background, or
:class:`SummaryWorker`, one daemon thread doing that). Until the summary exists the older turns are
simply left out. The stored history is never changed; :meth:`ContextWindow.build` only reads the end of
it, so its cost and memory do not grow with the length of the conversation.
"""

from __future__ import annotations

import logging
import queue
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from tara_desktop.jobs import JobState
from tara_desktop.llm.generation import GenerationSettings

if TYPE_CHECKING:
    from tara_desktop.llm.engine import Engine

log = logging.getLogger(__name__)

SUMMARY_HEADING = "Summary of the earlier conversation:"


class TokenCounter(Protocol):
    """What the window needs from an engine (``Engine`` satisfies it)."""

    n_ctx: int

    def count_tokens(self, text: str) -> int: ...

    def count_chat_tokens(self, messages: Sequence[dict[str, str]]) -> int: ...

    def tokenize(self, text: str, *, special: bool = False) -> list[int]: ...


@dataclass(frozen=True)
class Summary:
    """A summary of the first ``covers`` turns of a conversation's history."""

    text: str
    covers: int


@dataclass(frozen=True)
class Window:
    """The messages to send for one turn and what was left out."""

    messages: list[dict[str, str]]
    prompt_tokens: int
    first_turn: int  # index into the history of the oldest turn included word for word
    summary_used: bool
    unsummarised: int  # turns before first_turn that no summary covers (left out for now)
    needs_summary: bool  # enough turns are left out to be worth (re)summarising in the background


class ContextWindow:
    """Builds prompts that fit ``counter.n_ctx`` tokens with ``reply_tokens`` left for the reply."""

    def __init__(
        self,
        counter: TokenCounter,
        reply_tokens: int = 256,
        *,
        summary_tokens: int = 160,
        summarize_after: int = 6,
        cache_size: int = 2048,
    ) -> None:
        self.counter = counter
        self.n_ctx = int(counter.n_ctx)
        self.reply_tokens = max(1, min(int(reply_tokens), self.n_ctx // 2))
        self.summary_tokens = max(8, min(int(summary_tokens), self.budget // 4))
        self.summarize_after = max(1, summarize_after)
        self._cache: OrderedDict[str, int] = OrderedDict()  # token counts of recent texts (bounded)
        self._cache_lock = threading.Lock()
        self._cache_size = cache_size
        self._overhead: dict[str, int] = {}

    @property
    def budget(self) -> int:
        """Prompt tokens allowed."""
        return self.n_ctx - self.reply_tokens

    @property
    def summary_room(self) -> int:
        """Tokens kept for the summary (and its heading) once the conversation overflows."""
        return self.summary_tokens + self._count(SUMMARY_HEADING) + 2

    def _count(self, text: str) -> int:
        with self._cache_lock:
            n = self._cache.get(text)
            if n is not None:
                self._cache.move_to_end(text)
                return n
        n = self.counter.count_tokens(text)
        with self._cache_lock:
            self._cache[text] = n
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return n

    def _markup(self, role: str) -> int:
        """Template tokens one message of ``role`` adds around its content."""
        n = self._overhead.get(role)
        if n is None:
            base = self.counter.count_chat_tokens([{"role": "system", "content": "x"}])
            more = self.counter.count_chat_tokens([{"role": "system", "content": "x"}, {"role": role, "content": "x"}])
            n = max(1, more - base - self._count("x")) + 1  # +1: tokens can merge across the boundary
            self._overhead[role] = n
        return n

    def _truncate(self, text: str, max_tokens: int, *, keep_end: bool = False) -> str:
        ids = self.counter.tokenize(text)
        if len(ids) <= max_tokens:
            return text
        if max_tokens <= 0:
            return ""
        # cut by characters in proportion, then tighten: decoding token ids back is model-specific
        ratio = max_tokens / len(ids)
        cut = max(1, int(len(text) * ratio))
        while cut > 0:
            piece = text[-cut:] if keep_end else text[:cut]
            if self._count(piece) <= max_tokens:
                return piece
            cut = int(cut * 0.9)
        return ""

    def build(
        self, system_prompt: str, history: Sequence[dict[str, str]], summary: Summary | None = None
    ) -> Window:
        """The window for the next reply. ``history`` is every stored turn, oldest first, ending with the
        user's new message; only its end is read. ``summary`` covers ``history[:summary.covers]``."""
        budget = self.budget
        covered = min(summary.covers, len(history)) if summary is not None else 0
        base = system_prompt
        base_cost = self._count(base) + self._markup("system")
        if base_cost > budget // 2:  # a runaway system prompt must not crowd out the conversation
            base = self._truncate(base, budget // 2 - self._markup("system"))
            base_cost = self._count(base) + self._markup("system")
        summary_text = summary.text.strip() if summary is not None and covered > 0 else ""
        if summary_text:
            summary_text = self._truncate(summary_text, self.summary_tokens)

        # Once the conversation overflows, room for a summary is kept whether or not it exists yet, so
        # the window starts at the same turn before and after the summary arrives.
        room = budget - base_cost
        total = 0
        if not summary_text:
            for i in range(len(history) - 1, covered - 1, -1):
                total += self._count(history[i]["content"]) + self._markup(history[i]["role"])
                if total > room:
                    break
        if summary_text or total > room:
            room -= self.summary_room

        # newest to oldest, while they fit (estimated: content tokens + template markup)
        used = 0
        first = len(history)
        for i in range(len(history) - 1, covered - 1, -1):
            turn = history[i]
            cost = self._count(turn["content"]) + self._markup(turn["role"])
            if used + cost > room and first < len(history):
                break
            used += cost
            first = i
        system = f"{base}\n\n{SUMMARY_HEADING}\n{summary_text}".strip() if summary_text else base
        summary_used = bool(summary_text)
        turns = [{"role": t["role"], "content": t["content"]} for t in history[first:]]

        def assemble() -> list[dict[str, str]]:
            head = [{"role": "system", "content": system}] if system else []
            return head + turns

        messages = assemble()
        n = self.counter.count_chat_tokens(messages)
        # exact check: drop the oldest turns (never the newest) until it fits
        while n > budget and len(turns) > 1:
            turns.pop(0)
            first += 1
            messages = assemble()
            n = self.counter.count_chat_tokens(messages)
        if n > budget and turns:
            # the newest message alone is too long: keep its end (the most recent words)
            over = n - budget
            content = turns[-1]["content"]
            keep = max(0, self._count(content) - over - 8)
            turns[-1] = {"role": turns[-1]["role"], "content": self._truncate(content, keep, keep_end=True)}
            messages = assemble()
            n = self.counter.count_chat_tokens(messages)
            while n > budget and turns[-1]["content"]:
                keep = int(self._count(turns[-1]["content"]) * 0.8)
                turns[-1] = {"role": turns[-1]["role"], "content": self._truncate(turns[-1]["content"], keep, keep_end=True)}
                messages = assemble()
                n = self.counter.count_chat_tokens(messages)
        unsummarised = max(0, first - covered)
        return Window(
            messages=messages,
            prompt_tokens=n,
            first_turn=first,
            summary_used=summary_used,
            unsummarised=unsummarised,
            needs_summary=unsummarised >= self.summarize_after,
        )


_WINDOWS: weakref.WeakKeyDictionary[object, dict[tuple[int, int], ContextWindow]] = weakref.WeakKeyDictionary()
_WINDOWS_LOCK = threading.Lock()


def forget_texts() -> None:
    """Drop every cached token count (their keys are message texts): after a conversation is deleted,
    none of its words stay in memory here."""
    with _WINDOWS_LOCK:
        windows = [w for per_engine in _WINDOWS.values() for w in per_engine.values()]
    for win in windows:
        with win._cache_lock:
            win._cache.clear()


def window_for(engine: TokenCounter, reply_tokens: int = 256, *, summary_tokens: int = 160) -> ContextWindow:
    """One :class:`ContextWindow` per engine and reply size, so its token counts are cached across turns."""
    with _WINDOWS_LOCK:
        per_engine = _WINDOWS.setdefault(engine, {})
        key = (int(reply_tokens), int(summary_tokens))
        win = per_engine.get(key)
        if win is None:
            win = per_engine[key] = ContextWindow(engine, reply_tokens, summary_tokens=summary_tokens)
        return win


# ----------------------------------------------------------------------------------------------------
# summaries

SUMMARY_INSTRUCTION = (
    "You summarise conversations. Write a short summary (at most 120 words) of the conversation below: "
    "keep names, facts, decisions, the user's goals and open questions. Write only the summary."
)


def _transcript(turns: Sequence[dict[str, str]]) -> list[str]:
    return [f"{t['role'].capitalize()}: {t['content']}" for t in turns]


def summarize_turns(
    engine: Engine,
    turns: Sequence[dict[str, str]],
    state: JobState,
    *,
    previous: str | None = None,
    max_tokens: int = 160,
    seed: int = 0,
    on_chunk: Callable[[str, int], None] | None = None,
) -> str | None:
    """Summarise ``turns`` (continuing ``previous``, a summary of what came before them) with ``engine``.

    Long spans are summarised in chunks that fit the context, each folding in the summary so far;
    ``on_chunk(summary_so_far, n_turns_covered)`` reports each finished chunk, so work survives an
    interruption. Runs as a background generation: returns None when a foreground reply needed the
    engine (try again later) or when ``state`` was cancelled."""
    settings = GenerationSettings(max_tokens=max_tokens, temperature=0.0, seed=seed, repeat_penalty=1.1)
    window = ContextWindow(engine, reply_tokens=max_tokens)
    lines = _transcript(turns)
    summary = (previous or "").strip()
    if not lines:
        return summary
    base = [{"role": "system", "content": SUMMARY_INSTRUCTION}]
    start = 0
    while start < len(lines):
        state.check()
        if summary:
            summary = window._truncate(summary, window.summary_tokens)
        head = f"Earlier summary: {summary}\n\nConversation:\n" if summary else "Conversation:\n"
        budget = window.budget - engine.count_chat_tokens([*base, {"role": "user", "content": head}])
        chunk: list[str] = []
        used = 0
        for line in lines[start:]:
            cost = window._count(line) + 1
            if used + cost > budget and chunk:
                break
            chunk.append(line if used + cost <= budget else window._truncate(line, max(1, budget - 1)))
            used += cost
        start += len(chunk)
        messages = [*base, {"role": "user", "content": head + "\n".join(chunk)}]
        text, stats = engine.generate(messages, settings, state, background=True)
        if stats.stop_reason in ("preempted", "cancelled"):
            return None
        summary = text.strip()
        if on_chunk is not None and start < len(lines):
            on_chunk(summary, start)
    return summary


class SummaryWorker:
    """One daemon thread that summarises conversations in the background, newest request first.

    ``request(key, engine, history, summary, upto)`` asks for a summary of ``history[:upto]`` that
    continues ``summary``; when done, ``on_done(key, Summary)`` is called from the worker thread and the
    result is kept for :meth:`latest`. A newer request for the same key replaces a pending one.

    A summary interrupted by a reply (the engine gives foreground generations priority) keeps its
    finished chunks: ``on_done`` then reports a partial Summary (covering fewer turns) and the rest is
    resumed after the reply.
    """

    def __init__(self, on_done: Callable[[object, Summary], None] | None = None, *, max_tokens: int = 160) -> None:
        self._on_done = on_done
        self._max_tokens = max_tokens
        self._pending: OrderedDict[object, tuple[Engine, list[dict[str, str]], Summary | None, int]] = OrderedDict()
        self._latest: dict[object, Summary] = {}
        self._forgotten: set[object] = set()  # keys forgotten while their summary was being written
        self._forgotten_all = 0
        self._lock = threading.Lock()
        self._wake: queue.Queue[None] = queue.Queue()
        self._state = JobState()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="tara-summary", daemon=True)
        self._thread.start()

    def request(
        self, key: object, engine: Engine, history: Sequence[dict[str, str]], summary: Summary | None, upto: int
    ) -> None:
        start = summary.covers if summary is not None else 0
        if upto <= start:
            return
        turns = [dict(t) for t in history[start:upto]]
        with self._lock:
            self._pending.pop(key, None)
            self._pending[key] = (engine, turns, summary, upto)
            self._idle.clear()
        self._wake.put(None)

    def forget(self, key: object | None = None) -> None:
        """Drop what is kept for ``key`` (a deleted conversation), or for every key; a summary being
        written for it now is dropped when it finishes."""
        with self._lock:
            if key is None:
                self._pending.clear()
                self._latest.clear()
                self._forgotten_all += 1
            else:
                self._pending.pop(key, None)
                self._latest.pop(key, None)
                self._forgotten.add(key)

    def latest(self, key: object) -> Summary | None:
        with self._lock:
            return self._latest.get(key)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is pending (tests and shutdown)."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        self._state.cancel()
        self._wake.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        from tara_desktop.jobs import Cancelled

        while not self._state.cancelled:
            self._wake.get()
            while not self._state.cancelled:
                with self._lock:
                    if not self._pending:
                        self._idle.set()
                        break
                    key, (engine, turns, prev, upto) = self._pending.popitem(last=False)
                    self._forgotten.discard(key)
                    generation = self._forgotten_all
                start = upto - len(turns)
                progress: list[tuple[str, int]] = []
                try:
                    text = summarize_turns(
                        engine,
                        turns,
                        self._state,
                        previous=prev.text if prev else None,
                        max_tokens=self._max_tokens,
                        on_chunk=lambda t, n, sink=progress: sink.append((t, n)),  # type: ignore[misc]
                    )
                except Cancelled:
                    return
                except Exception as exc:  # the engine was unloaded, the template failed...: skip this one
                    log.warning("summary failed: %s", type(exc).__name__)
                    continue
                if text is None:  # preempted by a reply: keep the finished chunks, resume after the reply
                    with self._lock:
                        if key in self._forgotten or generation != self._forgotten_all:
                            self._forgotten.discard(key)
                            continue  # deleted meanwhile: keep nothing, resume nothing
                    if progress:
                        done_text, n_done = progress[-1]
                        prev = Summary(done_text, start + n_done)
                        turns = turns[n_done:]
                        with self._lock:
                            self._latest[key] = prev
                        if self._on_done is not None:
                            self._on_done(key, prev)
                    with self._lock:
                        self._pending.setdefault(key, (engine, turns, prev, upto))
                    if not self._state.cancelled:
                        threading.Event().wait(0.05)
                    continue
                result = Summary(text=text, covers=upto)
                with self._lock:
                    if key in self._forgotten or generation != self._forgotten_all:
                        self._forgotten.discard(key)
                        continue  # deleted while it was being written: keep nothing of it
                    self._latest[key] = result
                if self._on_done is not None:
                    self._on_done(key, result)
