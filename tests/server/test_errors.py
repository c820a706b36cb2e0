"""Access and bad requests: 401 without the token, OpenAI-style 4xx errors, never a 500 or a traceback."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx2 as httpx
import openai
import pytest

from tara_desktop.server.runner import ApiServer

CHAT = "/chat/completions"
GOOD = {"model": "tara", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2}


@pytest.fixture()
def http(api_server: ApiServer) -> Any:
    with httpx.Client(base_url=api_server.url, headers={"Authorization": f"Bearer {api_server.token}"},
                      timeout=300) as c:
        yield c


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    body = response.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"} and body["error"]["message"]
    return dict(body["error"])


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", "Basic abc", "Bearer"])
def test_every_route_refuses_a_request_without_the_token(api_server: ApiServer, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    with httpx.Client(base_url=api_server.url, headers=headers, timeout=30) as c:
        for method, path in (("GET", "/models"), ("POST", CHAT), ("POST", "/audio/speech"),
                             ("POST", "/audio/transcriptions"), ("POST", "/embeddings"), ("GET", "/nowhere")):
            r = c.request(method, path, json=GOOD)
            assert _error(r, 401)["code"] == "invalid_api_key"
            assert r.headers["www-authenticate"] == "Bearer"


def test_the_official_client_sees_a_wrong_key_as_an_authentication_error(api_server: ApiServer) -> None:
    bad = openai.OpenAI(base_url=api_server.url, api_key="tara-not-the-token", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_the_token_lives_in_the_encrypted_profile(api_server: ApiServer) -> None:
    from tara_desktop.server.token import TOKEN_KEY

    store = api_server.service.assistant.profile.store
    assert store.get_setting(TOKEN_KEY) == api_server.token and len(api_server.token) > 40
    db = api_server.service.assistant.profile.database
    for f in db.parent.rglob("*"):
        if f.is_file():
            assert api_server.token.encode() not in f.read_bytes()


@pytest.mark.parametrize(("body", "status"), [
    (b"{not json", 400),
    (b"", 400),
    (b"\xff\xfe", 400),
    (b"[1, 2]", 400),
    (json.dumps({"model": "tara"}).encode(), 400),
    (json.dumps({**GOOD, "messages": []}).encode(), 400),
    (json.dumps({**GOOD, "messages": [{"role": "wizard", "content": "x"}]}).encode(), 400),
    (json.dumps({**GOOD, "temperature": -1}).encode(), 400),
    (json.dumps({**GOOD, "model": "gpt-9"}).encode(), 404),
    (json.dumps({**GOOD, "model": "tara:astrology"}).encode(), 404),
    (json.dumps({**GOOD, "stream": True, "messages": [{"role": "user", "content": ""}]}).encode(), 400),
])
def test_bad_chat_requests_get_a_clear_4xx(http: Any, body: bytes, status: int) -> None:
    r = http.post(CHAT, content=body, headers={"Content-Type": "application/json"})
    error = _error(r, status)
    if status == 404:
        assert error["code"] == "model_not_found" and error["param"] == "model"
    assert r.headers["content-type"].startswith("application/json")


def test_the_official_client_raises_the_matching_errors(client: Any) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="tara", messages=[])
    assert err.value.body["param"] == "messages"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tara", messages=[{"role": "user", "content": "hi"}], stream=True,
                                       max_tokens=-5)


def test_a_body_over_the_limit_is_refused_with_413(http: Any, api_server: ApiServer) -> None:
    limit = api_server.service.limits.max_body_bytes
    big = {**GOOD, "messages": [{"role": "user", "content": "a" * (limit + 10)}]}
    assert _error(http.post(CHAT, json=big), 413)["code"] == "request_too_large"

    def chunks() -> Any:  # no Content-Length: counted while it arrives
        yield b'{"model": "tara", "messages": [{"role": "user", "content": "'
        for _ in range(limit // 65536 + 2):
            yield b"a" * 65536
        yield b'"}]}'

    assert _error(http.post(CHAT, content=chunks()), 413)["code"] == "request_too_large"


def test_unknown_paths_and_methods_are_json_errors(http: Any) -> None:
    assert _error(http.get("/nowhere"), 404)["code"] == "not_found"
    assert _error(http.get(CHAT), 405)["code"] == "method_not_allowed"


def test_no_cors_headers_are_ever_sent(http: Any) -> None:
    origin = {"Origin": "https://evil.example"}
    for r in (http.options(CHAT, headers={**origin, "Access-Control-Request-Method": "POST"}),
              http.get("/models", headers=origin), http.post(CHAT, json=GOOD, headers=origin)):
        assert not [h for h in r.headers if h.lower().startswith("access-control-")]


def test_audio_routes_refuse_what_they_cannot_read(http: Any) -> None:
    r = http.post("/audio/transcriptions", files={"file": ("a.mp3", b"ID3 not a wav", "audio/mpeg")},
                  data={"model": "whisper-1"})
    assert _error(r, 400)["param"] == "file"
    assert _error(http.post("/audio/transcriptions", data={"model": "whisper-1"}), 400)["param"] == "file"
    assert _error(http.post("/audio/transcriptions", content=b"xx",
                            headers={"Content-Type": "multipart/form-data; boundary=zz"}), 400)
    assert _error(http.post("/audio/speech", json={"model": "tts-1", "input": " "}), 400)["param"] == "input"
    assert _error(http.post("/audio/speech", json={"model": "tts-1", "input": "hi", "response_format": "mp3"}),
                  400)["param"] == "response_format"


def test_binding_beyond_loopback_needs_an_explicit_flag(api_server: ApiServer) -> None:
    from tara_desktop.errors import TaraError

    with pytest.raises(TaraError, match="allow-remote"):
        ApiServer(api_server.service.assistant, host="0.0.0.0", port=0)


def test_an_unexpected_failure_is_a_500_without_traceback_or_content_in_logs(
    http: Any, api_server: ApiServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> dict[str, str]:
        raise RuntimeError("secret-canary-in-an-exception")

    monkeypatch.setattr(api_server.service.pipeline, "model_names", broken)
    with caplog.at_level(logging.DEBUG):
        r = http.get("/models")
        assert _error(r, 500)["code"] == "internal_error"
        ok = http.post(CHAT, json={**GOOD, "model": "tara"})  # the server keeps serving
    assert ok.status_code == 200
    assert "secret-canary" not in r.text and "secret-canary" not in caplog.text
    assert "RuntimeError" in caplog.text  # the log says what kind of failure it was
