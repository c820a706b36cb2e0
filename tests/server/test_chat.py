"""Chat completions through the official openai client against a real server on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest

from tara_desktop.server.runner import ApiServer

QUESTION = "How do I fix a merge conflict in git?"


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_models_lists_tara_its_domains_and_the_installed_models(client: Any, api_server: ApiServer) -> None:
    ids = [m.id for m in client.models.list().data]
    domains = list(api_server.service.assistant.configs.domains)
    assert ids[0] == "tara"
    assert [f"tara:{d}" for d in domains] == ids[1 : 1 + len(domains)]
    assert "tiny.gguf" in ids  # the model every domain is mapped to here


def test_a_reply_carries_usage_finish_reason_and_the_routing_decision(client: Any) -> None:
    reply = client.chat.completions.create(model="tara", messages=_user(QUESTION), max_tokens=8)
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens > 0 and 0 <= usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert (choice.finish_reason == "length") == (usage.completion_tokens == 8)
    tara = reply.model_extra["tara"]
    assert tara["domain"] == "technical" and 0 < tara["confidence"] <= 1
    assert tara["model"] == "tiny.gguf" and tara["adapter"] is None
    assert reply.model == "tara" and reply.id.startswith("chatcmpl-")


def test_streaming_sends_role_tokens_finish_and_usage(client: Any) -> None:
    chunks = list(client.chat.completions.create(
        model="tara", messages=_user(QUESTION), max_tokens=6, stream=True, stream_options={"include_usage": True},
    ))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].model_extra["tara"]["domain"] == "technical"
    assert len({c.id for c in chunks}) == 1
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason in ("stop", "length")
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None and 0 <= usage.completion_tokens <= 6
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    pieces = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= min(1, usage.completion_tokens) and isinstance(text, str)


def test_the_same_request_streamed_and_not_gives_the_same_reply(client: Any) -> None:
    kwargs: dict[str, Any] = {"model": "tara", "messages": _user("Write a short poem about rain."),
                              "max_tokens": 8, "temperature": 0}
    whole = client.chat.completions.create(**kwargs).choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kwargs)
                       if c.choices)
    assert streamed.strip() == whole


def test_a_domain_can_be_pinned_and_a_model_named(client: Any) -> None:
    pinned = client.chat.completions.create(model="tara:creative", messages=_user(QUESTION), max_tokens=2)
    assert pinned.model_extra["tara"]["domain"] == "creative" and pinned.model_extra["tara"]["confidence"] == 1.0
    named = client.chat.completions.create(model="tiny.gguf", messages=_user(QUESTION), max_tokens=2)
    assert named.model_extra["tara"]["model"] == "tiny.gguf" and named.model == "tiny.gguf"


def test_seed_makes_sampling_repeatable(client: Any) -> None:
    kwargs: dict[str, Any] = {"model": "tara", "messages": _user("Tell me about the sea."), "max_tokens": 10,
                              "temperature": 1.0, "top_p": 1.0, "seed": 1234}
    first = client.chat.completions.create(**kwargs).choices[0].message.content
    second = client.chat.completions.create(**kwargs).choices[0].message.content
    assert first == second


def test_stop_cuts_the_reply_before_the_stop_string(client: Any) -> None:
    kwargs: dict[str, Any] = {"model": "tara:general", "messages": _user("Say something long."), "max_tokens": 16,
                              "temperature": 0}
    full = client.chat.completions.create(**kwargs).choices[0].message.content
    if len(full) < 6:
        pytest.skip("the tiny model ended its reply too early to pick a stop string")  # pragma: no cover
    stop = full[3:5]
    cut = client.chat.completions.create(stop=[stop], **kwargs)
    assert cut.choices[0].message.content == full[: full.index(stop)].strip()
    assert cut.choices[0].finish_reason == "stop"


def test_a_conversation_history_and_system_message_are_used(client: Any) -> None:
    messages = [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi"},
        {"role": "user", "content": [{"type": "text", "text": "What is a budget forecast?"}]},
    ]
    full = client.chat.completions.create(model="tara", messages=messages, max_tokens=2)
    no_history = client.chat.completions.create(model="tara", messages=[messages[0], messages[3]], max_tokens=2)
    no_system = client.chat.completions.create(model="tara", messages=messages[1:], max_tokens=2)
    # the earlier turns are in the prompt ...
    assert full.usage.prompt_tokens > no_history.usage.prompt_tokens
    # ... and the client's system message replaces the domain's own prompt (which is of another length)
    assert full.usage.prompt_tokens != no_system.usage.prompt_tokens
    assert full.model_extra["tara"]["domain"] == "business"  # routed on the last user message
