"""API conversations are kept only when the client asks and store_history consent is on; logs hold no content."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tara_desktop.server.runner import ApiServer


def _count(api_server: ApiServer) -> int:
    return len(api_server.service.assistant.profile.store.list_conversations())


def test_nothing_is_stored_unless_the_client_asks(client: Any, api_server: ApiServer) -> None:
    before = _count(api_server)
    reply = client.chat.completions.create(model="tara", messages=[{"role": "user", "content": "keep this?"}],
                                           max_tokens=2)
    assert reply.model_extra["tara"]["conversation_id"] is None and _count(api_server) == before


@pytest.mark.parametrize("ask", ["header", "body"])
def test_an_asked_for_exchange_is_stored_encrypted(client: Any, api_server: ApiServer, ask: str) -> None:
    canary = f"canary-{ask}-store-7f3a"
    extra: dict[str, Any] = {"extra_headers": {"X-TARA-Store": "1"}} if ask == "header" else {"store": True}
    reply = client.chat.completions.create(model="tara", messages=[{"role": "user", "content": canary}],
                                           max_tokens=2, **extra)
    cid = reply.model_extra["tara"]["conversation_id"]
    assert cid is not None
    messages = api_server.service.assistant.profile.store.messages(cid)
    assert [m.role for m in messages] == ["user", "assistant"] and messages[0].content == canary
    assert messages[1].content == reply.choices[0].message.content


def test_without_history_consent_nothing_is_stored_even_when_asked(client: Any, api_server: ApiServer) -> None:
    consent = api_server.service.assistant.profile.consent
    consent.set("store_history", False)
    try:
        before = _count(api_server)
        reply = client.chat.completions.create(model="tara", messages=[{"role": "user", "content": "secret"}],
                                               max_tokens=2, store=True, extra_headers={"X-TARA-Store": "1"})
        assert reply.model_extra["tara"]["conversation_id"] is None and _count(api_server) == before
    finally:
        consent.set("store_history", True)


def test_logs_and_the_request_log_hold_no_content(client: Any, api_server: ApiServer,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    canary = "zebra-canary-9d1e"
    with caplog.at_level(logging.DEBUG):
        reply = client.chat.completions.create(model="tara", messages=[{"role": "user", "content": canary}],
                                               max_tokens=4)
        list(client.chat.completions.create(model="tara", messages=[{"role": "user", "content": canary}],
                                            max_tokens=4, stream=True))
        client.chat.completions.with_raw_response.create(model="tara", messages=[{"role": "user", "content": canary}],
                                                         max_tokens=2)
    answer = reply.choices[0].message.content
    lines = [r.getMessage() for r in caplog.records]
    assert any("/v1/chat/completions 200" in line for line in lines)  # the request log did log
    assert not [line for line in lines if canary in line or (len(answer) > 3 and answer in line)]
    for record in api_server.log.records():
        assert canary not in record.line() and canary not in str(record.to_dict())
