"""Request checking and the mapping of an API request onto the pipeline's turn (no server needed)."""

from __future__ import annotations

from typing import Any

import pytest

from tara_desktop.server.errors import ApiError
from tara_desktop.server.pipeline import ChatPipeline
from tara_desktop.server.schema import parse_chat_request

GOOD = {"model": "tara", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(("change", "param"), [
    ({"model": None}, "model"),
    ({"messages": []}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "tool", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user"}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]}, "messages"),
    ({"messages": [{"role": "user", "content": "   "}]}, "messages[0].content"),
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": 3}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 2.5}, "max_tokens"),
    ({"seed": "x"}, "seed"),
    ({"stop": 5}, "stop"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"n": 2}, "n"),
    ({"stream": "yes"}, "stream"),
    ({"tools": [{"type": "function"}]}, "tools"),
])
def test_bad_requests_name_the_parameter(change: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_chat_request({**GOOD, **change})
    assert err.value.status == 400 and err.value.param == param
    assert err.value.body()["error"]["message"]


def test_sampling_settings_reach_the_pipeline_turn() -> None:
    chat = parse_chat_request({
        "model": "tara", "temperature": 0.2, "top_p": 0.5, "max_tokens": 7, "stop": "END", "seed": 42,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "one"},
                     {"role": "assistant", "content": "two"}, {"role": "developer", "content": "No lists."},
                     {"role": "user", "content": "three"}],
    })
    turn = ChatPipeline(assistant=None).turn_request(chat, "technical", None, store=False)
    g = turn.generation
    assert (g.temperature, g.top_p, g.max_tokens, g.stop, g.seed) == (0.2, 0.5, 7, ("END",), 42)
    assert turn.text == "three" and turn.pinned_domain == "technical" and turn.store is False
    assert list(turn.messages) == [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}]
    assert turn.system_prompt == "Be brief.\n\nNo lists." and turn.source == "api"


def test_unset_settings_keep_the_users_and_max_completion_tokens_wins() -> None:
    chat = parse_chat_request({**GOOD, "max_completion_tokens": 9, "max_tokens": 3})
    assert chat.overrides == {"max_tokens": 9}
    turn = ChatPipeline(assistant=None).turn_request(parse_chat_request(GOOD), None, None, store=True)
    assert turn.generation.as_dict() == {} and turn.store is True and turn.system_prompt is None
