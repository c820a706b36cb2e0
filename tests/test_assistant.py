"""One turn end to end, through the real router, a real tiny GGUF in llama.cpp and the encrypted profile."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tara_desktop.assistant import Assistant
from tara_desktop.config import ModelMapping
from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.model_mapping import MAPPING_KEY, merge_mapping
from tara_desktop.turn import (
    GenerationOverrides,
    RouteEvent,
    StoredEvent,
    TokenEvent,
    TurnRequest,
    WindowEvent,
)


def _map_all(a: Assistant, choice: dict[str, str]) -> None:
    """Point every domain (and the default) at ``choice`` through the user's mapping overrides."""
    a.profile.store.set_setting(MAPPING_KEY, {name: choice for name in [*a.configs.domains, "default"]})
    a.reload_settings()


@pytest.fixture(scope="module")
def assistant(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assistant]:
    home = tmp_path_factory.mktemp("assistant-home")
    with Assistant.open(home, passphrase="pw") as a:
        a.save_settings({"llm": {"max_tokens": 24}})
        _map_all(a, {"model": str(tiny_gguf)})
        yield a


def test_a_turn_streams_routes_and_is_stored(assistant: Assistant) -> None:
    pieces: list[str] = []
    result = assistant.run_turn(
        TurnRequest("How do I fix a merge conflict in git?"), JobState(), on_token=pieces.append
    )
    assert pieces and "".join(pieces).strip() == result.reply
    assert result.domain == "technical" and 0 < result.confidence <= 1
    assert result.model.endswith(".gguf") and result.ttft_s is not None and result.ttft_s > 0
    assert result.conversation_id is not None
    stored = assistant.profile.store.messages(result.conversation_id)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[0].content == "How do I fix a merge conflict in git?"
    assert stored[1].content == result.reply and stored[1].meta["domain"] == "technical"
    assert stored[1].meta["emotion"] == result.emotion


def test_a_conversation_continues_and_pinning_wins(assistant: Assistant) -> None:
    first = assistant.run_turn(TurnRequest("What are the early signs of diabetes?"), JobState())
    assert first.domain == "healthcare"
    cid = first.conversation_id
    assert cid is not None
    assistant.profile.store.set_pinned_domain(cid, "creative")
    second = assistant.run_turn(TurnRequest("And how about sleep?", conversation_id=cid), JobState())
    assert second.domain == "creative" and second.reason == "pinned"
    assert len(assistant.profile.store.messages(cid)) == 4


def test_cancel_stops_within_a_token_and_keeps_the_partial_reply(assistant: Assistant) -> None:
    state = JobState()
    seen: list[str] = []

    def on_token(piece: str) -> None:
        seen.append(piece)
        if len(seen) == 3:
            state.cancel()

    result = assistant.run_turn(TurnRequest("Tell me a long story about a fox."), state, on_token)
    assert result.cancelled and len(seen) <= 4
    assert result.conversation_id is not None
    last = assistant.profile.store.messages(result.conversation_id)[-1]
    assert last.meta["cancelled"] is True and last.content == result.reply


def test_text_emotion_shapes_the_turn(assistant: Assistant) -> None:
    result = assistant.run_turn(TurnRequest("I am so scared and anxious about my surgery tomorrow"), JobState())
    assert result.emotion in {"fear", "sad"}
    voice = assistant.run_turn(TurnRequest("hello there", emotion="angry", emotion_confidence=0.9), JobState())
    assert voice.emotion == "angry" and voice.emotion_confidence == 0.9


def test_empty_message_is_a_clear_error(assistant: Assistant) -> None:
    with pytest.raises(TaraError, match="empty"):
        assistant.run_turn(TurnRequest("   \n"), JobState())


def test_missing_mapped_model_is_a_clear_error(assistant: Assistant) -> None:
    saved = assistant.profile.store.get_setting(MAPPING_KEY)
    _map_all(assistant, {"model": "nowhere.gguf"})
    try:
        with pytest.raises(TaraError, match=r"nowhere\.gguf"):
            assistant.run_turn(TurnRequest("hello"), JobState())
    finally:
        assistant.profile.store.set_setting(MAPPING_KEY, saved)
        assistant.reload_settings()


def test_without_history_consent_nothing_is_stored(tiny_gguf: Path, tmp_path: Path) -> None:
    with Assistant.open(tmp_path / "p", passphrase="pw") as a:
        a.save_settings({"llm": {"max_tokens": 8}})
        a.profile.consent.set("store_history", False)
        result = a.run_turn(TurnRequest("hello", model_path=tiny_gguf), JobState())
        assert result.reply and result.conversation_id is None
        assert a.profile.store.list_conversations() == []


def test_adapter_from_the_mapping_changes_the_reply(tiny_gguf: Path, tiny_lora: Path, tmp_path: Path) -> None:
    with Assistant.open(tmp_path / "p", passphrase="pw") as a:
        a.save_settings({"llm": {"temperature": 0.0, "max_tokens": 12}})
        plain = a.run_turn(TurnRequest("hi", model_path=tiny_gguf), JobState())
        _map_all(a, {"model": str(tiny_gguf), "adapter": str(tiny_lora)})
        adapted = a.run_turn(TurnRequest("hi"), JobState())
        assert adapted.adapter == tiny_lora.name
        assert adapted.reply != plain.reply


def test_an_export_registered_for_a_domain_is_used_with_no_restart(
    tiny_gguf: Path, tiny_lora: Path, tmp_path: Path
) -> None:
    from tara_desktop.training.export_job import register_for_domain

    with Assistant.open(tmp_path / "p", passphrase="pw") as a:
        a.save_settings({"llm": {"max_tokens": 4}})
        _map_all(a, {"model": str(tiny_gguf)})
        assert a.run_turn(TurnRequest("hi", pinned_domain="creative"), JobState()).adapter is None
        router = a.router
        register_for_domain(a, "creative", model=tiny_gguf, adapter=tiny_lora)  # the app's Assistant owns it
        after = a.run_turn(TurnRequest("hi", pinned_domain="creative"), JobState())
        assert after.adapter == tiny_lora.name
        assert a.router is router  # swapped in place: the router keeps its loaded model
        assert a.mapping_overrides()["creative"]["adapter"] == str(tiny_lora.resolve())


def test_the_turn_reports_its_steps_in_order_and_returns_the_stored_ids(assistant: Assistant) -> None:
    events: list[object] = []
    result = assistant.turn(TurnRequest("How do I fix a merge conflict in git?"), JobState(), events.append)
    kinds = [getattr(e, "kind", None) for e in events]
    assert kinds[0] == "route" and kinds[1] == "window" and kinds[-1] == "stored"
    assert set(kinds[2:-1]) == {"token"} and len(kinds) > 3
    route, window, stored = events[0], events[1], events[-1]
    assert isinstance(route, RouteEvent) and isinstance(window, WindowEvent) and isinstance(stored, StoredEvent)
    assert route.domain == result.domain == "technical" and route.model == result.model
    assert route.voice == result.voice == assistant.router.voice_for("technical", result.emotion)
    assert "".join(e.text for e in events if isinstance(e, TokenEvent)).strip() == result.reply
    assert window.prompt_tokens == result.prompt_tokens > 0
    assert stored.created and stored.conversation_id == result.conversation_id
    messages = assistant.profile.store.messages(result.conversation_id)
    assert [m.id for m in messages] == [stored.user_message_id, stored.message_id]
    assert (result.user_message_id, result.message_id) == (stored.user_message_id, stored.message_id)
    assert result.completion_tokens == messages[1].meta["tokens"] and result.finish_reason in ("stop", "length")


def test_generation_overrides_apply_to_one_turn(assistant: Assistant) -> None:
    request = TurnRequest("Write a poem about rain.", store=False,
                          generation=GenerationOverrides(max_tokens=3, temperature=0.0, seed=7))
    first = assistant.turn(request, JobState())
    assert first.completion_tokens <= 3 and first.finish_reason == "length"
    assert assistant.turn(request, JobState()).reply == first.reply  # greedy: the same reply again
    longer = assistant.turn(TurnRequest("Write a poem about rain.", store=False), JobState())
    assert longer.completion_tokens > 3  # the user's own max_tokens (24) again


def test_a_request_not_to_store_leaves_nothing(assistant: Assistant) -> None:
    before = assistant.profile.store.counts()["messages"]
    events: list[object] = []
    result = assistant.turn(
        TurnRequest("and what about tomorrow?", store=False, source="api",
                    messages=[{"role": "user", "content": "What is the weather like?"},
                              {"role": "assistant", "content": "Sunny."}],
                    system_prompt="You are terse."),
        JobState(), events.append,
    )
    assert result.reply and result.conversation_id is None and result.message_id is None
    assert assistant.profile.store.counts()["messages"] == before
    stored = events[-1]
    assert isinstance(stored, StoredEvent) and stored.conversation_id is None and stored.message_id is None
    window = events[1]
    assert isinstance(window, WindowEvent) and window.turns == 3  # the client's two turns + the new one


def test_an_edit_replaces_the_tail_only_when_it_is_sent(assistant: Assistant) -> None:
    first = assistant.run_turn(TurnRequest("What is a balance sheet?"), JobState())
    cid = first.conversation_id
    assert cid is not None
    second = assistant.run_turn(TurnRequest("And a cash flow statement?", conversation_id=cid), JobState())
    store = assistant.profile.store
    before = [m.id for m in store.messages(cid)]
    draft = assistant.conversations.open(cid).edit_draft(second.user_message_id)  # Edit clicked, then cancelled
    assert draft.text == "And a cash flow statement?" and [m.id for m in store.messages(cid)] == before
    with pytest.raises(TaraError, match="not in this conversation"):  # an edit of a message since deleted
        assistant.run_turn(TurnRequest("x", conversation_id=cid, replace_from=10_000_000), JobState())
    assert [m.id for m in store.messages(cid)] == before
    edited = assistant.run_turn(
        TurnRequest("And an income statement?", conversation_id=cid, replace_from=draft.replaces), JobState()
    )
    after = store.messages(cid)
    assert [m.content for m in after if m.role == "user"] == ["What is a balance sheet?", "And an income statement?"]
    assert [m.id for m in after][:2] == before[:2] and after[-1].id == edited.message_id


def test_a_broken_model_is_refused_before_anything_is_stored(assistant: Assistant, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 40)
    before = assistant.profile.store.counts()
    events: list[object] = []
    with pytest.raises(TaraError):
        assistant.turn(TurnRequest("hello", model_path=broken), JobState(), events.append)
    assert events == [] and assistant.profile.store.counts() == before


def test_settings_reach_the_router_without_rebuilding_it(assistant: Assistant) -> None:
    router = assistant.router
    saved = assistant.profile.store.get_setting("config.overrides")
    try:
        assistant.save_settings({**saved, "routing": {"min_confidence": 0.9}})
        assert assistant.router is router and router.min_confidence == 0.9
    finally:
        assistant.save_settings(saved)
    assert assistant.router is router and router.min_confidence == assistant.configs.app.routing.min_confidence


def test_a_bad_mapping_choice_changes_nothing(assistant: Assistant) -> None:
    before = assistant.mapping
    with pytest.raises(TaraError, match="technical"):
        assistant.set_domain_choice("technical", {"model": "x.gguf", "modle": "y"})
    with pytest.raises(TaraError, match="unknown domain"):
        assistant.set_domain_choice("astrology", {"model": "x.gguf"})
    assert assistant.mapping == before


def test_older_turns_are_summarised_into_the_conversation_summary_table(tiny_gguf: Path, tmp_path: Path) -> None:
    from tara_desktop.conversation import Conversation

    with Assistant.open(tmp_path / "p", passphrase="pw") as a:
        a.save_settings({"llm": {"max_tokens": 8, "context_size": 256, "temperature": 0.0}})
        long = " ".join(f"word{i}" for i in range(40))
        c = Conversation(a.profile.store)
        for i in range(16):  # far more than a 256-token context holds
            c.append("user" if i % 2 == 0 else "assistant", f"turn {i}: {long}")
        assert c.id is not None
        events: list[object] = []
        a.turn(TurnRequest("and now?", conversation_id=c.id, model_path=tiny_gguf), JobState(), events.append)
        window = next(e for e in events if isinstance(e, WindowEvent))
        assert window.left_out >= 6  # older turns left out of the window...
        assert a.summaries.wait_idle(120)  # ...are summarised in the background
        stored = a.profile.store.get_summary(c.id)
        assert stored is not None and 0 < stored.covers <= window.left_out
        assert not any(k.startswith("summary.") for k in a.profile.store.settings())  # not a setting any more
        assert a.summaries.latest(c.id) is not None
        a.conversations.delete(c.id)
        assert a.profile.store.summaries() == []
        assert a.summaries.latest(c.id) is None  # nothing of it is kept in memory either
        from tara_desktop.llm.context_window import _WINDOWS

        assert all(not w._cache for per in _WINDOWS.values() for w in per.values())


def test_merge_mapping_keeps_unknown_damage_out() -> None:
    base = ModelMapping.model_validate({"default": {"model": "a.gguf"}, "domains": {}})
    merged = merge_mapping(base, {"technical": {"model": "b.gguf"}, "broken": "x", "creative": {"modle": 1}})
    assert merged.for_domain("technical").model == "b.gguf"
    assert merged.for_domain("creative").model == "a.gguf"


def _tara(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"TARA_HOME": str(home), "TARA_PASSPHRASE": "pw", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tara_desktop.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.mark.slow
def test_tara_chat_streams_and_rejects_bad_input(tiny_gguf: Path, tmp_path: Path) -> None:
    ok = _tara("chat", "--model", str(tiny_gguf), "--domain", "business", "How do I price my product?",
               home=tmp_path / "h")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() and "[business · tiny.gguf" in ok.stderr

    text_file = tmp_path / "notes.gguf"
    text_file.write_text("this is not a model\n")
    bad = _tara("chat", "--model", str(text_file), "hello", home=tmp_path / "h")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.splitlines()) == 1
    assert "Traceback" not in bad.stderr

    unknown = _tara("chat", "--model", str(tiny_gguf), "--domain", "astrology", "hi", home=tmp_path / "h")
    assert unknown.returncode == 2 and "unknown domain 'astrology'" in unknown.stderr

    empty = _tara("chat", "--model", str(tiny_gguf), "  ", home=tmp_path / "h")
    assert empty.returncode == 2 and "empty" in empty.stderr


def test_a_weak_typed_passphrase_creates_nothing(tmp_path: Path) -> None:
    from tara_desktop.profile import WeakPassphrase

    with pytest.raises(WeakPassphrase, match="too short"):
        Assistant.open(tmp_path / "p", passphrase="pw", check_new_passphrase=True)
    assert not (tmp_path / "p" / "profile.db").exists()
