"""The engine on real GGUF files: load, stream, cancel, chat templates, LoRA adapters, clear errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.llm.chat_template import DEFAULT_CHAT_TEMPLATE
from tara_desktop.llm.engine import Engine
from tara_desktop.llm.generation import GenerationSettings
from tara_desktop.llm.lora import AdapterError
from tara_desktop.llm.memory import estimate_file
from tara_desktop.llm.model_check import ModelLoadError
from tests.support.tiny_model import build_tiny_gguf, build_tiny_lora

GREEDY = GenerationSettings(max_tokens=24, temperature=0.0, seed=1)
CHAT = [
    {"role": "system", "content": "You are TARA, a helpful assistant."},
    {"role": "user", "content": "Hello, how are you today?"},
]


@pytest.fixture
def engine(tiny_gguf: Path) -> Iterator[Engine]:
    e = Engine.load(tiny_gguf, n_ctx=512, n_threads=1, n_batch=64)
    yield e
    e.close()


def test_load_and_stream(engine: Engine) -> None:
    pieces = list(engine.stream_chat(CHAT, GREEDY, JobState()))
    text = "".join(pieces)
    assert len(pieces) >= 10 and text.strip()
    assert text.isascii() and text.isprintable(), "the tiny model writes printable text"
    stats = engine.last_stats
    assert stats.tokens == GREEDY.max_tokens and stats.stop_reason == "length"
    assert stats.prompt_tokens == engine.count_chat_tokens(CHAT)
    assert 0 < stats.ttft_s <= stats.total_s and stats.tokens_per_s > 0


def test_greedy_is_deterministic_and_sampling_follows_the_seed(engine: Engine) -> None:
    assert engine.chat(CHAT, GREEDY) == engine.chat(CHAT, GREEDY)
    hot = GenerationSettings(max_tokens=24, temperature=1.5, top_p=1.0, min_p=0.0, seed=7)
    a, b = engine.chat(CHAT, hot), engine.chat(CHAT, hot)
    c = engine.chat(CHAT, GenerationSettings(max_tokens=24, temperature=1.5, top_p=1.0, min_p=0.0, seed=8))
    assert a == b and a != c


def test_a_different_prompt_gives_a_different_reply(engine: Engine) -> None:
    other = [CHAT[0], {"role": "user", "content": "Write a poem about the sea."}]
    assert engine.chat(CHAT, GREEDY) != engine.chat(other, GREEDY)


def test_cancel_stops_within_one_token(engine: Engine) -> None:
    state = JobState()
    got: list[str] = []
    for piece in engine.stream_chat(CHAT, GenerationSettings(max_tokens=200, temperature=0.0), state):
        got.append(piece)
        if len(got) == 3:
            state.cancel()
    assert len(got) == 3
    assert engine.last_stats.stop_reason == "cancelled" and engine.last_stats.tokens <= 4


def test_cancel_from_another_thread(engine: Engine) -> None:
    state = JobState()
    first = threading.Event()
    got: list[str] = []

    def consume() -> None:
        for piece in engine.stream_chat(CHAT, GenerationSettings(max_tokens=400, temperature=0.0), state):
            got.append(piece)
            first.set()
            time.sleep(0.002)  # a slow consumer (the UI) so the cancel lands mid-stream

    t = threading.Thread(target=consume)
    t.start()
    assert first.wait(30)
    state.cancel()
    t.join(30)
    assert not t.is_alive()
    assert engine.last_stats.stop_reason == "cancelled" and len(got) < 400
    # the engine is free again and still works
    assert engine.chat(CHAT, GenerationSettings(max_tokens=5, temperature=0.0))


def test_stop_strings_end_the_reply_before_them(engine: Engine) -> None:
    full = engine.chat(CHAT, GREEDY)
    marker = full[5:8]
    cut = engine.chat(CHAT, GenerationSettings(max_tokens=24, temperature=0.0, seed=1, stop=(marker,)))
    assert cut == full[: full.index(marker)]
    assert engine.last_stats.stop_reason == "stop"


def test_chat_template_from_metadata(engine: Engine) -> None:
    assert engine.has_chat_template
    prompt = engine.format_chat(CHAT)
    assert prompt == (
        "<|im_start|>system\nYou are TARA, a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHello, how are you today?<|im_end|>\n<|im_start|>assistant\n"
    )
    # the markers are single special tokens, not text
    ids = engine.tokenize(prompt, special=True)
    assert ids.count(engine.tokenize("<|im_start|>", special=True)[0]) == 3


def test_a_models_own_template_is_used(tmp_path: Path) -> None:
    tpl = "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}### assistant:"
    path = build_tiny_gguf(tmp_path / "custom.gguf", chat_template=tpl)
    with Engine.load(path, n_ctx=256, n_threads=1) as e:
        assert e.format_chat(CHAT) == (
            "### system: You are TARA, a helpful assistant.\n### user: Hello, how are you today?\n### assistant:"
        )
        assert e.chat(CHAT, GenerationSettings(max_tokens=4, temperature=0.0))


def test_default_template_when_the_model_has_none(tmp_path: Path) -> None:
    path = build_tiny_gguf(tmp_path / "plain.gguf", chat_template=None)
    with Engine.load(path, n_ctx=256, n_threads=1) as e:
        assert not e.has_chat_template and e.chat_template == DEFAULT_CHAT_TEMPLATE
        assert e.format_chat(CHAT).startswith("<|im_start|>system\n")
        assert len(e.chat(CHAT, GenerationSettings(max_tokens=6, temperature=0.0))) > 0


def test_adapter_changes_output_and_removing_it_restores_it(engine: Engine, tiny_lora: Path) -> None:
    base = engine.chat(CHAT, GREEDY)
    engine.set_adapter(tiny_lora, 1.0)
    assert engine.adapter is not None and engine.adapter[1] == 1.0
    adapted = engine.chat(CHAT, GREEDY)
    assert adapted != base
    assert engine.chat(CHAT, GREEDY) == adapted, "adapted output is deterministic too"
    engine.set_adapter(None)
    assert engine.adapter is None
    assert engine.chat(CHAT, GREEDY) == base


def test_adapter_scale_zero_is_the_base(engine: Engine, tiny_lora: Path) -> None:
    base = engine.chat(CHAT, GREEDY)
    engine.set_adapter(tiny_lora, 0.0)
    assert engine.chat(CHAT, GREEDY) == base
    engine.set_adapter(tiny_lora, 1.0)
    assert engine.chat(CHAT, GREEDY) != base


def test_swap_adapters_without_reloading_the_base(engine: Engine, tiny_gguf: Path, tiny_lora: Path, tmp_path: Path) -> None:
    other = build_tiny_lora(tiny_gguf, tmp_path / "other-lora.gguf", seed=5)
    llm_before, model_before = engine._llm, engine._llm.model
    engine.set_adapter(tiny_lora)
    a = engine.chat(CHAT, GREEDY)
    engine.set_adapter(other)
    b = engine.chat(CHAT, GREEDY)
    engine.set_adapter(tiny_lora)
    assert engine.chat(CHAT, GREEDY) == a
    assert a != b
    assert engine._llm is llm_before and engine._llm.model == model_before, "same loaded base"


def test_adapter_for_another_model_is_refused_clearly(engine: Engine, tmp_path: Path) -> None:
    wide = build_tiny_gguf(tmp_path / "wide.gguf", n_embd=128, n_head=4, n_head_kv=4)
    lora = build_tiny_lora(wide, tmp_path / "wide-lora.gguf")
    with pytest.raises(AdapterError, match="does not fit model"):
        engine.set_adapter(lora)
    with pytest.raises(AdapterError, match="does not exist"):
        engine.set_adapter(tmp_path / "missing.gguf")
    assert engine.adapter is None and engine.chat(CHAT, GenerationSettings(max_tokens=3, temperature=0.0))


def test_too_big_model_gives_a_clear_error(tiny_gguf: Path) -> None:
    need = estimate_file(tiny_gguf, 512, 64).total_mb
    with pytest.raises(ModelLoadError) as err:
        Engine.load(tiny_gguf, n_ctx=512, n_batch=64, available_mb=need / 2)
    msg = str(err.value)
    assert "needs about" in msg and "available" in msg and "\n" not in msg
    # a longer context needs more memory (the KV cache)
    assert estimate_file(tiny_gguf, 4096, 64).total_mb > need


def test_llama_cpp_failures_become_one_clear_line(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "odd.gguf"
    w = gguf.GGUFWriter(str(path), arch="llama")  # header is fine but the tensors a llama needs are missing
    w.add_block_count(1)
    w.add_embedding_length(8)
    w.add_head_count(2)
    w.add_context_length(64)
    w.add_tensor("something.weight", np.zeros((8, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(TaraError) as err:
        Engine.load(path, n_ctx=64)
    assert "\n" not in str(err.value)
    with pytest.raises(TaraError, match="does not exist"):
        Engine.load(tmp_path / "nope.gguf")
    (tmp_path / "text.gguf").write_text("this is not a model")
    with pytest.raises(TaraError):
        Engine.load(tmp_path / "text.gguf")


def test_prompt_longer_than_the_context_is_refused(tiny_gguf: Path) -> None:
    with Engine.load(tiny_gguf, n_ctx=128, n_threads=1) as e:
        long = [{"role": "user", "content": "word " * 400}]
        with pytest.raises(TaraError, match="context holds 128"):
            e.chat(long, GREEDY)
        # a prompt that nearly fills the context generates only what fits
        n = e.count_chat_tokens([{"role": "user", "content": "hi " * 20}])
        e.chat([{"role": "user", "content": "hi " * 20}], GenerationSettings(max_tokens=500, temperature=0.0))
        assert e.last_stats.tokens <= 128 - n


def test_count_tokens(engine: Engine) -> None:
    assert engine.count_tokens("") == 0
    assert 0 < engine.count_tokens("Hello there") < len("Hello there")
    assert engine.count_tokens("<|im_end|>") > 1, "user text is never read as special tokens"


def test_background_generation_gives_way_to_a_reply(engine: Engine) -> None:
    bg = engine.stream_chat(CHAT, GenerationSettings(max_tokens=300, temperature=0.0), JobState(), background=True)
    next(bg)  # the summary holds the engine
    bg_stats = engine.last_stats
    reply: list[str] = []
    t = threading.Thread(target=lambda: reply.append(engine.chat(CHAT, GREEDY)))
    t.start()
    deadline = time.monotonic() + 30
    while not engine._priority.foreground_waiting and time.monotonic() < deadline:
        time.sleep(0.001)
    rest = list(bg)
    t.join(30)
    assert bg_stats.stop_reason == "preempted" and len(rest) <= 1, "stopped within a token once a reply waited"
    assert engine.last_stats.stop_reason == "length" and reply and reply[0]


def test_closed_engine_refuses_work(tiny_gguf: Path, tiny_lora: Path) -> None:
    e = Engine.load(tiny_gguf, n_ctx=256, n_threads=1)
    e.set_adapter(tiny_lora)
    e.close()
    e.close()  # idempotent
    assert e.closed
    with pytest.raises(TaraError, match="unloaded"):
        e.chat(CHAT, GREEDY)


def test_cancel_during_a_long_prompt_aborts_llama_cpp(engine: Engine) -> None:
    long_chat = [CHAT[0], {"role": "user", "content": "Tell me about the budget, the team and the plan. " * 20}]
    before = engine.chat(long_chat, GREEDY)
    state = JobState()
    state.cancel()  # the abort callback stops the prompt evaluation at its first step
    assert list(engine.stream_chat(long_chat, GREEDY, state)) == []
    assert engine.last_stats.stop_reason == "cancelled" and engine.last_stats.tokens == 0
    assert engine.chat(long_chat, GREEDY) == before, "the engine recovers cleanly"


def test_reader_stopping_early_frees_the_engine(engine: Engine) -> None:
    stream = engine.stream_chat(CHAT, GenerationSettings(max_tokens=100, temperature=0.0), JobState())
    first = next(stream)
    stream.close()
    assert first and engine.last_stats.stop_reason == "closed" and not engine.busy
    assert engine.chat(CHAT, GenerationSettings(max_tokens=3, temperature=0.0))


def test_context_is_capped_at_the_models_training_context(tmp_path: Path) -> None:
    path = build_tiny_gguf(tmp_path / "short.gguf", context_length=512)
    with Engine.load(path, n_ctx=4096, n_threads=1, n_batch=1024) as e:
        assert e.n_ctx == 512 and e.n_batch == 512


def test_a_file_damaged_after_a_good_load_is_checked_again(tiny_gguf: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(tiny_gguf.read_bytes())
    Engine.load(copy, n_ctx=128, n_threads=1).close()
    copy.write_bytes(tiny_gguf.read_bytes()[:-5000])  # truncated after it was validated once
    with pytest.raises(TaraError, match=r"truncated|ends at|bytes"):
        Engine.load(copy, n_ctx=128, n_threads=1)


def test_templates_that_refuse_a_system_role_still_work(tmp_path: Path) -> None:
    tpl = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}<assistant>"
    )
    path = build_tiny_gguf(tmp_path / "strict.gguf", chat_template=tpl)
    with Engine.load(path, n_ctx=256, n_threads=1) as e:
        assert e.format_chat(CHAT) == (
            "<user>You are TARA, a helpful assistant.\n\nHello, how are you today?</user><assistant>"
        )
        assert e.chat(CHAT, GenerationSettings(max_tokens=3, temperature=0.0))
