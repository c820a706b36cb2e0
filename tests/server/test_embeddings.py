"""POST /v1/embeddings through the official openai client: the router's own ONNX MiniLM model, OpenAI's shapes."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import numpy as np
import openai
import pytest

from tara_desktop.assistant import Assistant
from tara_desktop.server.runner import ApiServer

WIFI = "My wifi keeps dropping, how do I fix it?"
INTERNET = "The internet connection on my laptop cuts out every few minutes."
POEM = "Write me a short poem about the sea at night."


def _cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_one_text_is_one_normalised_vector_with_its_token_count(client: Any) -> None:
    # the official client asks for base64 unless told otherwise, and decodes it itself
    reply = client.embeddings.create(model="tara", input=WIFI)
    assert reply.object == "list" and reply.model == "tara" and len(reply.data) == 1
    item = reply.data[0]
    assert item.object == "embedding" and item.index == 0
    assert len(item.embedding) == 384 and abs(float(np.linalg.norm(item.embedding)) - 1.0) < 1e-3
    assert reply.usage.prompt_tokens > 5 and reply.usage.total_tokens == reply.usage.prompt_tokens


def test_a_list_keeps_its_order_and_matches_the_routers_own_vectors(client: Any, api_assistant: Assistant) -> None:
    name = api_assistant.configs.app.routing.embedding_model
    reply = client.embeddings.create(model=name, input=[WIFI, INTERNET, POEM], encoding_format="float")
    assert reply.model == name and [d.index for d in reply.data] == [0, 1, 2]
    wifi, internet, poem = (d.embedding for d in reply.data)
    assert _cosine(wifi, internet) > _cosine(wifi, poem) + 0.2  # alike texts are near, unrelated ones far
    own, tokens = api_assistant.router.embed([WIFI, INTERNET, POEM])
    assert np.allclose(np.asarray([wifi, internet, poem]), own, atol=1e-6)
    assert reply.usage.prompt_tokens == tokens
    as_base64 = client.embeddings.create(model="tara", input=[WIFI])  # base64 carries the same float32 numbers
    assert np.allclose(as_base64.data[0].embedding, wifi, atol=0)


def test_the_client_sees_bad_requests_as_its_own_errors(client: Any) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(model="text-embedding-3-small", input=WIFI)
    body = missing.value.body
    assert isinstance(body, dict) and body["code"] == "model_not_found" and body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as empty:
        client.embeddings.create(model="tara", input=[])
    body = empty.value.body
    assert isinstance(body, dict) and body["param"] == "input"


@pytest.fixture()
def http(api_server: ApiServer) -> Any:
    with httpx.Client(base_url=api_server.url, headers={"Authorization": f"Bearer {api_server.token}"},
                      timeout=300) as c:
        yield c


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"model": "tara"}, "input", "'input' is missing"),
    ({"model": "tara", "input": [1, 2, 3]}, "input", "token arrays are not supported"),
    ({"model": "tara", "input": ["fine", 7]}, "input", "a string or a list of strings"),
    ({"model": "tara", "input": "   "}, "input", "'input' is empty"),
    ({"model": "tara", "input": ["fine", ""]}, "input", "'input[1]' is empty"),
    ({"model": "tara", "input": ["x"] * 2049}, "input", "at most 2048"),
    ({"input": "hello"}, "model", "'model' is missing"),
    ({"model": "tara", "input": "hello", "encoding_format": "int8"}, "encoding_format", "'float' or 'base64'"),
    ({"model": "tara", "input": "hello", "dimensions": 64}, "dimensions", "have 384"),
    ({"model": "tara", "input": "hello", "dimensions": "384"}, "dimensions", "positive integer"),
])
def test_bad_input_is_a_400_naming_the_parameter(http: Any, body: dict[str, Any], param: str, words: str) -> None:
    r = http.post("/embeddings", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and words in error["message"]
    assert "Traceback" not in r.text


def test_a_body_that_is_not_an_object_is_refused(http: Any) -> None:
    for raw in (b"", b"{not json", b'["a list"]'):
        r = http.post("/embeddings", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["message"], r.text


def test_the_token_is_required(api_server: ApiServer) -> None:
    with httpx.Client(base_url=api_server.url, timeout=30) as c:
        r = c.post("/embeddings", json={"model": "tara", "input": WIFI})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_without_the_embedding_model_it_says_so_with_a_503(http: Any, api_assistant: Assistant,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from tara_desktop.routing.router import DomainRouter

    degraded = DomainRouter.from_configs(api_assistant.configs, embedding_model=None)
    monkeypatch.setattr(api_assistant, "router", degraded)
    r = http.post("/embeddings", json={"model": "tara", "input": WIFI})
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "model_unavailable" and "keywords only" in error["message"]
    r = http.post("/embeddings", json={"model": "all-MiniLM-L6-v2", "input": WIFI})
    assert r.status_code == 404  # the router names no embedding model now


def test_many_texts_go_in_batches_in_order_and_a_cancel_stops_between_them(api_assistant: Assistant) -> None:
    from tara_desktop.jobs import Cancelled, JobState
    from tara_desktop.server.embeddings import BATCH, EmbeddingsRequest, embeddings_response

    texts = [f"{WIFI} ({i})" for i in range(BATCH * 2 + 3)]
    asked = EmbeddingsRequest(model="tara", inputs=texts, encoding_format="float", dimensions=None)
    body = embeddings_response(api_assistant.router, asked, JobState())
    assert [d["index"] for d in body["data"]] == list(range(len(texts)))
    last, _tokens = api_assistant.router.embed(texts[-1:])
    assert np.allclose(body["data"][-1]["embedding"], last[0], atol=1e-6)  # the third batch's, in its place
    stopped = JobState()
    stopped.cancel()  # the client went away
    with pytest.raises(Cancelled):
        embeddings_response(api_assistant.router, asked, stopped)
