"""The engine chain the recogniser and the emotion detector share: a failing engine is dropped once, with its
reason kept and logged; a cancel is not a failure; loading happens once however often warm_up is called."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tara_desktop.errors import TaraError
from tara_desktop.jobs import Cancelled
from tara_desktop.voice.engines import EngineChain

log = logging.getLogger("tests.voice.chain")


class Stub:
    def __init__(self, name: str, *, fail: BaseException | None = None) -> None:
        self.name, self.model, self.model_dir = name, f"{name}-model", Path("/models") / name
        self.fail = fail
        self.loads = 0

    def load(self) -> object:
        self.loads += 1
        if self.fail is not None:
            raise self.fail
        return self


def chain(*engines: Stub) -> EngineChain[Stub]:
    return EngineChain(engines, what="test engine", then="the next one", logger=log)


def test_a_failing_engine_is_dropped_once_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    broken, good = Stub("broken", fail=RuntimeError("secret words")), Stub("good")
    c = chain(broken, good)
    with caplog.at_level(logging.WARNING, logger=log.name):
        assert c.warm_up() is good
        assert c.warm_up() is good
    assert broken.loads == 1 and c.engines == [good]
    assert c.primary_error == "broken failed (RuntimeError) with /models/broken"
    assert "test engine broken unavailable, using the next one" in caplog.text
    assert "secret words" not in caplog.text  # only the exception's class, never its text


def test_a_tara_error_is_its_own_reason() -> None:
    c = EngineChain([Stub("x", fail=TaraError("x: model.bin is missing"))], reasons=["wanted y: not installed"],
                    what="e", then="f", logger=log)
    assert c.warm_up() is None and c.first is None
    assert c.primary_error == "wanted y: not installed; x: model.bin is missing"


def test_run_falls_through_failures_but_not_a_cancel() -> None:
    first, second = Stub("first"), Stub("second")
    c = chain(first, second)

    def cancelled(engine: Stub) -> str:
        raise Cancelled()

    with pytest.raises(Cancelled):
        c.run(cancelled)
    assert c.engines == [first, second]  # a cancel is not the engine's fault

    def only_second(engine: Stub) -> str:
        if engine is first:
            raise ValueError("bad file")
        return "ok"

    assert c.run(only_second) == (second, "ok")
    assert c.engines == [second]

    def broken(engine: Stub) -> str:
        raise OSError("disk")

    assert c.run(broken) is None and c.engines == []
