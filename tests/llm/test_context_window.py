"""The context window on a real model: the prompt always fits; older turns are summarised by the model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tara_desktop.jobs import JobState
from tara_desktop.llm.context_window import (
    SUMMARY_HEADING,
    ContextWindow,
    Summary,
    SummaryWorker,
    summarize_turns,
)
from tara_desktop.llm.engine import Engine
from tara_desktop.llm.generation import GenerationSettings

SYSTEM = "You are TARA, a helpful assistant."
REPLY = 48
N_CTX = 384


@pytest.fixture(scope="module")
def engine(tiny_gguf: Path) -> Iterator[Engine]:
    e = Engine.load(tiny_gguf, n_ctx=N_CTX, n_threads=1, n_batch=128)
    yield e
    e.close()


def conversation(n: int) -> list[dict[str, str]]:
    topics = ["the budget", "a fever", "my essay", "a dragon story", "the team", "a Python error"]
    out: list[dict[str, str]] = []
    for i in range(n):
        t = topics[i % len(topics)]
        out.append({"role": "user", "content": f"Turn {i}: tell me more about {t}, please." + " really" * (i % 5)})
        out.append({"role": "assistant", "content": f"Here is what I know about {t} (answer {i})."})
    out.append({"role": "user", "content": "And what should I do next?"})
    return out


def test_short_conversation_is_sent_whole(engine: Engine) -> None:
    win = ContextWindow(engine, REPLY)
    history = conversation(2)
    w = win.build(SYSTEM, history)
    assert w.first_turn == 0 and not w.needs_summary and not w.summary_used
    assert w.messages[0] == {"role": "system", "content": SYSTEM} and w.messages[1:] == history
    assert w.prompt_tokens == engine.count_chat_tokens(w.messages)


def test_long_conversation_fits_with_recent_turns(engine: Engine) -> None:
    win = ContextWindow(engine, REPLY)
    history = conversation(60)
    before = [dict(t) for t in history]
    w = win.build(SYSTEM, history)
    assert engine.count_chat_tokens(w.messages) + REPLY <= N_CTX
    assert w.messages[-1] == history[-1] and w.messages[1:] == history[w.first_turn :]
    assert w.first_turn > 0 and w.needs_summary and w.unsummarised == w.first_turn
    # as many as fit, with room kept for the summary: one more turn would not have fitted
    more = [w.messages[0], history[w.first_turn - 1], *w.messages[1:]]
    assert engine.count_chat_tokens(more) > win.budget - win.summary_room - 8
    assert history == before, "the stored history is never changed"
    reply = engine.chat(w.messages, GenerationSettings(max_tokens=REPLY, temperature=0.0))
    assert reply and engine.last_stats.stop_reason == "length"


@pytest.mark.slow
def test_summary_of_older_turns_is_made_by_the_model_and_used(engine: Engine) -> None:
    win = ContextWindow(engine, REPLY)
    history = conversation(60)
    w = win.build(SYSTEM, history)
    text = summarize_turns(engine, history[: w.first_turn], JobState(), max_tokens=12)
    assert text and engine.last_stats.tokens > 0
    # the summary comes from the model: the same turns summarised again give the same text (greedy)
    assert summarize_turns(engine, history[: w.first_turn], JobState(), max_tokens=12) == text
    summary = Summary(text=text, covers=w.first_turn)
    w2 = win.build(SYSTEM, history, summary)
    assert w2.summary_used and not w2.needs_summary
    assert w2.messages[0]["content"] == f"{SYSTEM}\n\n{SUMMARY_HEADING}\n{text}"
    assert w2.first_turn >= summary.covers and w2.messages[-1] == history[-1]
    assert engine.count_chat_tokens(w2.messages) + REPLY <= N_CTX
    # a summary that is out of date leaves the turns after it and before the window uncovered
    history += conversation(10)
    w3 = win.build(SYSTEM, history, summary)
    assert w3.summary_used and w3.unsummarised == w3.first_turn - summary.covers > 0 and w3.needs_summary
    # a summary longer than its room is cut to fit
    w4 = win.build(SYSTEM, history, Summary(text="long summary words " * 300, covers=w3.first_turn))
    assert w4.summary_used and engine.count_chat_tokens(w4.messages) + REPLY <= N_CTX


def test_a_huge_newest_message_is_cut_to_fit(engine: Engine) -> None:
    win = ContextWindow(engine, REPLY)
    history = [*conversation(3)[:-1], {"role": "user", "content": "blah " * 2000 + "THE END"}]
    w = win.build(SYSTEM, history)
    assert len(w.messages) == 2 and w.messages[-1]["content"].endswith("THE END")
    assert engine.count_chat_tokens(w.messages) + REPLY <= N_CTX


def test_a_huge_system_prompt_still_leaves_room(engine: Engine) -> None:
    win = ContextWindow(engine, REPLY)
    w = win.build("Rules. " * 1000, conversation(1))
    assert engine.count_chat_tokens(w.messages) + REPLY <= N_CTX
    assert w.messages[-1]["content"] == "And what should I do next?"


def test_long_spans_are_summarised_in_chunks(engine: Engine) -> None:
    history = conversation(40)
    text = summarize_turns(engine, history, JobState(), previous="Earlier: we met.", max_tokens=8)
    assert text and engine.last_stats.prompt_tokens > N_CTX // 2, "each chunk fills the context"



def test_cancelled_summary_returns_nothing(engine: Engine) -> None:
    state = JobState()
    state.cancel()
    from tara_desktop.jobs import Cancelled

    with pytest.raises(Cancelled):
        summarize_turns(engine, conversation(5), state)


def test_summary_worker_runs_in_the_background(engine: Engine) -> None:
    done: list[tuple[object, Summary]] = []
    worker = SummaryWorker(on_done=lambda k, s: done.append((k, s)), max_tokens=12)
    try:
        history = conversation(40)
        w = ContextWindow(engine, REPLY).build(SYSTEM, history)
        worker.request("conv-1", engine, history, None, w.first_turn)
        assert worker.wait_idle(60)
        s = worker.latest("conv-1")
        assert s is not None and s.covers == w.first_turn and s.text
        assert done == [("conv-1", s)]
    finally:
        worker.close()


def test_window_for_reuses_one_window_per_engine(engine: Engine) -> None:
    from tara_desktop.llm.context_window import window_for

    a = window_for(engine, REPLY)
    assert window_for(engine, REPLY) is a and window_for(engine, REPLY + 1) is not a
    w = a.build(SYSTEM, conversation(30))
    assert engine.count_chat_tokens(w.messages) + REPLY <= N_CTX
