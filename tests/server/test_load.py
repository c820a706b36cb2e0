"""Load: a client that disconnects cancels its generation; queues are fair and bounded; a soak loses nothing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.server.errors import ApiError
from tara_desktop.server.lanes import Lanes
from tara_desktop.server.runner import ApiServer
from tests.server.helpers import TokenHook, wait_for


def _client(server: ApiServer) -> Any:
    return openai.OpenAI(base_url=server.url, api_key=server.token, max_retries=0, timeout=300)


def test_a_client_that_disconnects_mid_stream_cancels_within_a_token(
    api_server: ApiServer, hook: TokenHook
) -> None:
    cancelled_at: list[int] = []
    generated: list[int] = []

    def gate(n: int, state: JobState) -> None:
        generated.append(n)
        if n == 2:  # hold the model here until the server notices the client is gone
            if wait_for(lambda: state.cancelled, timeout=30):
                cancelled_at.append(n)

    hook.fn = gate
    seen = len(api_server.log.records())
    stream = _client(api_server).chat.completions.create(
        model="tara", messages=[{"role": "user", "content": "Tell me a very long story."}], max_tokens=400,
        stream=True, temperature=1.0, seed=7,
    )
    received = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received += 1
            if received == 2:
                break
    stream.close()
    assert received == 2
    assert wait_for(lambda: len(api_server.log.records()) > seen)
    record = api_server.log.records()[-1]
    assert cancelled_at == [2]  # the disconnect cancelled the turn while it was at token 2
    assert record.finish == "cancelled" and record.completion_tokens is not None and record.completion_tokens <= 3
    assert max(generated) <= 3


def test_a_client_that_gives_up_on_a_whole_reply_cancels_it_too(api_server: ApiServer, hook: TokenHook) -> None:
    import httpx2

    cancelled: list[bool] = []

    def gate(n: int, state: JobState) -> None:
        if n == 1:
            cancelled.append(wait_for(lambda: state.cancelled, timeout=30))

    hook.fn = gate
    seen = len(api_server.log.records())
    body = {"model": "tara", "messages": [{"role": "user", "content": "A long answer, please."}], "max_tokens": 400}
    with pytest.raises(httpx2.ReadTimeout):  # the client stops waiting and closes the connection
        httpx2.post(f"{api_server.url}/chat/completions", json=body, timeout=httpx2.Timeout(30, read=3.0),
                    headers={"Authorization": f"Bearer {api_server.token}"})
    assert wait_for(lambda: len(api_server.log.records()) > seen)
    assert cancelled == [True]
    record = api_server.log.records()[-1]
    assert record.finish == "cancelled" and record.completion_tokens is not None and record.completion_tokens <= 2


def test_a_full_queue_answers_429_and_the_queued_requests_still_finish(
    small_queue_server: ApiServer, hook: TokenHook
) -> None:
    release = threading.Event()

    def hold(n: int, state: JobState) -> None:
        if n == 1:
            release.wait(30)

    hook.fn = hold
    client = _client(small_queue_server)
    lanes = small_queue_server.service.lanes
    results: dict[str, Any] = {}

    def ask(name: str) -> None:
        results[name] = client.chat.completions.create(
            model="tara", messages=[{"role": "user", "content": f"request {name}"}], max_tokens=3)

    first = threading.Thread(target=ask, args=("first",))
    first.start()
    assert wait_for(lambda: lanes.snapshot() == {"running": 1, "waiting": 0})
    second = threading.Thread(target=ask, args=("second",))
    second.start()
    assert wait_for(lambda: lanes.snapshot() == {"running": 1, "waiting": 1})
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="tara", messages=[{"role": "user", "content": "third"}], max_tokens=3)
    assert err.value.body["code"] == "queue_full"  # type: ignore[index]
    assert err.value.response.headers["retry-after"] == "1"
    release.set()
    first.join(60)
    second.join(60)
    assert set(results) == {"first", "second"}
    assert wait_for(lambda: lanes.snapshot() == {"running": 0, "waiting": 0})


def test_lanes_are_first_come_first_served_bounded_and_leave_on_cancel() -> None:
    lanes = Lanes(max_waiting=2, max_total=4)
    running = lanes.reserve("m")
    assert running.wait(JobState())
    a, b = lanes.reserve("m"), lanes.reserve("m")
    with pytest.raises(ApiError) as full:
        lanes.reserve("m")
    assert full.value.status == 429
    other = lanes.reserve("other")  # another lane has its own queue
    with pytest.raises(ApiError) as server_full:
        lanes.reserve("third")
    assert server_full.value.status == 503
    gone = JobState()
    gone.cancel()
    assert not a.wait(gone)  # a request whose client left drops out of the queue
    order: list[str] = []
    t = threading.Thread(target=lambda: (b.wait(JobState()), order.append("b"), b.release()))
    t.start()
    running.release()
    t.join(10)
    assert order == ["b"] and lanes.snapshot() == {"running": 0, "waiting": 1}
    other.release()
    assert lanes.snapshot() == {"running": 0, "waiting": 0}


def test_soak_concurrent_requests_from_several_threads_are_neither_lost_nor_mixed_up(
    api_server: ApiServer,
) -> None:
    domains = list(api_server.service.assistant.configs.domains)
    jobs = [(i, domains[i % len(domains)], f"Question number {i}: what should I do about item {i * 7}?",
             i % 2 == 0, 2 + i % 4) for i in range(16)]
    client = _client(api_server)

    def one(job: tuple[int, str, str, bool, int]) -> dict[str, Any]:
        _i, domain, text, stream, max_tokens = job
        kwargs: dict[str, Any] = {"model": f"tara:{domain}", "messages": [{"role": "user", "content": text}],
                                  "max_tokens": max_tokens, "temperature": 0}
        if stream:
            chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True},
                                                         **kwargs))
            return {"ids": {c.id for c in chunks}, "domain": chunks[0].model_extra["tara"]["domain"],
                    "text": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip(),
                    "tokens": chunks[-1].usage.completion_tokens}
        reply = client.chat.completions.create(**kwargs)
        return {"ids": {reply.id}, "domain": reply.model_extra["tara"]["domain"],
                "text": reply.choices[0].message.content, "tokens": reply.usage.completion_tokens}

    reference = [one(job) for job in jobs]  # one at a time
    with ThreadPoolExecutor(max_workers=4) as pool:  # then four clients at once
        together = list(pool.map(one, jobs))
    ids = [next(iter(r["ids"])) for r in together]
    assert all(len(r["ids"]) == 1 for r in together) and len(set(ids)) == len(jobs)
    for (i, domain, _text, _stream, max_tokens), alone, concurrent in zip(jobs, reference, together, strict=True):
        assert concurrent["domain"] == domain and 0 <= concurrent["tokens"] <= max_tokens
        assert concurrent["text"] == alone["text"], f"request {i} got another reply"


def test_a_port_in_use_is_a_clear_error(api_server: ApiServer) -> None:
    with pytest.raises(TaraError, match="in use"):
        ApiServer(api_server.service.assistant, port=int(api_server.port or 0)).start()
