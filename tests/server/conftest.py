"""A real TARA API server on 127.0.0.1 over a real assistant (tiny GGUF in llama.cpp, encrypted profile)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tara_desktop.assistant import Assistant
from tara_desktop.server.app import Limits
from tara_desktop.server.runner import ApiServer
from tests.server.helpers import TokenHook, map_everything_to


@pytest.fixture(scope="package")
def api_assistant(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assistant]:
    home = tmp_path_factory.mktemp("api-home")
    with Assistant.open(home, passphrase="pw") as a:
        a.save_settings({"llm": {"max_tokens": 16, "context_size": 512}})
        map_everything_to(a, tiny_gguf)
        a.router.warm_up()  # the embedding model loads here, not inside a request's timeout
        yield a


@pytest.fixture(scope="package")
def token_hook() -> TokenHook:
    return TokenHook()


@pytest.fixture(scope="package")
def api_server(api_assistant: Assistant, token_hook: TokenHook) -> Iterator[ApiServer]:
    server = ApiServer(api_assistant, port=0, token_hook=token_hook)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def hook(token_hook: TokenHook) -> Iterator[TokenHook]:
    token_hook.fn = None
    yield token_hook
    token_hook.fn = None


@pytest.fixture()
def client(api_server: ApiServer) -> Any:
    import openai

    return openai.OpenAI(base_url=api_server.url, api_key=api_server.token, max_retries=0, timeout=300)


@pytest.fixture()
def small_queue_server(api_assistant: Assistant, token_hook: TokenHook) -> Iterator[ApiServer]:
    server = ApiServer(api_assistant, port=0, token_hook=token_hook,
                       limits=Limits(max_waiting=1, max_total=8))
    server.start()
    try:
        yield server
    finally:
        server.stop()
