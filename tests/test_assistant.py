"""One turn end to end, through the real router, a real tiny GGUF in llama.cpp and the encrypted profile."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tara_desktop.assistant import MAPPING_KEY, Assistant, TurnRequest, merge_mapping
from tara_desktop.config import ModelMapping
from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState


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
        register_for_domain(a.profile, "creative", model=tiny_gguf, adapter=tiny_lora)
        after = a.run_turn(TurnRequest("hi", pinned_domain="creative"), JobState())
        assert after.adapter == tiny_lora.name


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
