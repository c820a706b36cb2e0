"""The model pool on real GGUF files: one load per model, LRU eviction within the budget, idle unload."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tara_desktop.llm.generation import GenerationSettings
from tara_desktop.llm.pool import BudgetError, ModelPool
from tests.support.tiny_model import build_tiny_gguf

CTX = 256
SHORT = GenerationSettings(max_tokens=3, temperature=0.0)
HI = [{"role": "user", "content": "hi"}]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("pool-models")
    return [build_tiny_gguf(d / f"m{i}.gguf", seed=i) for i in range(3)]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_pool(models: list[Path], clock: Clock, n_models_fit: float, idle: float = 60.0) -> ModelPool:
    probe = ModelPool(1e9, 0, n_ctx=CTX, n_threads=1)
    one = max(probe.estimate_mb(m) for m in models)
    return ModelPool(one * n_models_fit, idle, n_ctx=CTX, n_threads=1, clock=clock)


@pytest.fixture
def pool2(models: list[Path], clock: Clock) -> Iterator[ModelPool]:
    pool = make_pool(models, clock, 2.5)
    yield pool
    pool.close()


def test_same_model_is_loaded_once(models: list[Path], pool2: ModelPool) -> None:
    a = pool2.get(models[0])
    b = pool2.get(str(models[0]))
    assert a is b and pool2.loads == 1
    assert a.chat(HI, SHORT)


def test_concurrent_gets_of_one_model_load_it_once(models: list[Path], pool2: ModelPool) -> None:
    got: list[object] = []
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait()
        got.append(pool2.get(models[1]))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(got) == 4 and all(g is got[0] for g in got)
    assert pool2.loads == 1


def test_budget_evicts_the_least_recently_used(models: list[Path], pool2: ModelPool, clock: Clock) -> None:
    a = pool2.get(models[0])
    clock.now += 1
    b = pool2.get(models[1])
    clock.now += 1
    assert pool2.get(models[0]) is a  # a is now the most recently used
    clock.now += 1
    c = pool2.get(models[2])  # room for two: b (least recent) goes
    assert b.closed and not a.closed and not c.closed
    assert {m.path for m in pool2.loaded()} == {models[0].resolve(), models[2].resolve()}
    assert pool2.used_mb() <= pool2.budget_mb
    assert c.chat(HI, SHORT) and a.chat(HI, SHORT)


def test_small_budget_holds_one_model(models: list[Path], clock: Clock) -> None:
    pool = make_pool(models, clock, 1.2)
    try:
        a = pool.get(models[0])
        b = pool.get(models[1])
        assert a.closed and not b.closed and pool.loads == 2
        a2 = pool.get(models[0])
        assert b.closed and a2 is not a and a2.chat(HI, SHORT)
    finally:
        pool.close()


def test_a_model_in_use_is_not_evicted(models: list[Path], clock: Clock) -> None:
    pool = make_pool(models, clock, 1.2)
    try:
        with pool.lease(models[0]) as a:
            with pytest.raises(BudgetError, match="in use"):
                pool.get(models[1])
            assert not a.closed and a.chat(HI, SHORT)
        assert pool.get(models[1]) and a.closed
    finally:
        pool.close()


def test_model_bigger_than_the_budget_is_refused(models: list[Path], clock: Clock) -> None:
    pool = make_pool(models, clock, 0.5)
    with pytest.raises(BudgetError, match="memory budget"):
        pool.get(models[0])
    assert pool.loads == 0 and not pool.loaded()


def test_idle_models_unload(models: list[Path], pool2: ModelPool, clock: Clock) -> None:
    a = pool2.get(models[0])
    clock.now += 30
    b = pool2.get(models[1])
    assert pool2.sweep(clock.now + 29) == []  # a idle 59 s, b 29 s
    assert pool2.sweep(clock.now + 31) == [models[0].resolve()]
    assert a.closed and not b.closed
    assert pool2.sweep(clock.now + 60) == [models[1].resolve()] and b.closed
    assert not pool2.loaded()
    assert pool2.get(models[0]).chat(HI, SHORT) and pool2.loads == 3


def _wait_for_sweeps(pool: ModelPool, n: int) -> None:
    """Wait (at most 20 s, in 10 ms steps) until the idle thread has swept ``n`` more times."""
    target = pool.sweeps + n
    deadline = time.monotonic() + 20
    while pool.sweeps < target and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.sweeps >= target, "the idle thread did not run"


def test_idle_unload_runs_by_itself_once_a_model_is_loaded(models: list[Path], clock: Clock) -> None:
    """llm.idle_unload_seconds is wired: the first load starts the idle thread, and a model idle longer
    than the setting (on the pool's clock, here a fake one) is unloaded with nobody calling sweep."""
    pool = ModelPool(1e6, 60, n_ctx=CTX, n_threads=1, clock=clock, idle_check_s=0.01)
    try:
        a = pool.get(models[0])
        clock.now += 59
        _wait_for_sweeps(pool, 3)
        assert not a.closed and pool.is_loaded(models[0])
        with pool.lease(models[0]) as leased:  # in use: never unloaded, however long it takes
            clock.now += 1000
            _wait_for_sweeps(pool, 3)
            assert not leased.closed
        clock.now += 59  # the lease ended "now": idle for 59 s
        _wait_for_sweeps(pool, 3)
        assert not a.closed
        clock.now += 2
        _wait_for_sweeps(pool, 2)
        assert a.closed and not pool.loaded()
    finally:
        pool.close()


def test_idle_unload_follows_the_settings(models: list[Path], clock: Clock) -> None:
    from tara_desktop.config import LlmSettings

    pool = ModelPool.from_settings(LlmSettings(idle_unload_seconds=30, context_size=CTX, threads=1))
    assert pool.idle_unload_s == 30
    pool.close()
    off = ModelPool(1e6, 0, n_ctx=CTX, n_threads=1, clock=clock, idle_check_s=0.01)
    try:
        a = off.get(models[0])
        clock.now += 10_000
        _wait_for_sweeps(off, 3)
        assert not a.closed  # 0 = never unload for idleness
        off.idle_unload_s = 5  # changed in Settings (Assistant.reload_settings sets it)
        _wait_for_sweeps(off, 2)
        assert a.closed
    finally:
        off.close()


def test_the_pool_and_the_fit_label_agree(tmp_path: Path) -> None:
    """A model the Models page says fits is never refused by the pool at the same settings, and one it says
    is over the budget is refused: both use the estimate at the context the engine really uses. The model
    was trained on 512 tokens and the setting asks for 4096 (the pool used to estimate at 4096)."""
    from tara_desktop.llm import memory

    path = build_tiny_gguf(tmp_path / "short.gguf", seed=7, context_length=512)
    need = memory.estimate_file(path, 4096, 256)
    assert need.n_ctx == 512 and need == memory.estimate_file(path, 512, 256)
    machine = memory.Machine.now()
    for budget in (need.total_mb * 0.97, need.total_mb, need.total_mb * 1.03):
        fit = memory.judge(need, machine, budget_setting_mb=budget)
        pool = ModelPool(budget, 0, n_ctx=4096, n_batch=256, n_threads=1)
        try:
            assert pool.estimate(path) == need
            if fit.loadable:
                engine = pool.get(path)
                assert engine.n_ctx == need.n_ctx and engine.memory_mb == pytest.approx(need.total_mb)
            else:
                assert fit.verdict == "over budget"
                with pytest.raises(BudgetError, match="raise it in Settings"):
                    pool.get(path)
        finally:
            pool.close()


def test_an_automatic_budget_is_half_the_memory(models: list[Path]) -> None:
    pool = ModelPool(0, 0, n_ctx=CTX, n_threads=1, total_ram_bytes=8 * 1024**3)
    assert pool.budget_mb == 4096
    pool.budget_mb = 1234  # Settings changed it
    assert pool.budget_mb == 1234
    pool.budget_mb = 0
    assert pool.budget_mb == 4096
    with pytest.raises(Exception, match="cannot be negative"):
        ModelPool(-1, 0)


def test_missing_or_bad_files_are_clear_errors(tmp_path: Path, pool2: ModelPool) -> None:
    from tara_desktop.errors import TaraError

    with pytest.raises(TaraError, match="does not exist"):
        pool2.get(tmp_path / "missing.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 64)
    with pytest.raises(TaraError):
        pool2.get(bad)
    assert not pool2.loaded() and pool2.loads == 0
