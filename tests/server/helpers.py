"""Helpers the server tests share."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tara_desktop.jobs import JobState


class TokenHook:
    """The server's per-token hook, switchable per test (``fn`` None: nothing happens)."""

    def __init__(self) -> None:
        self.fn: Callable[[int, JobState], None] | None = None

    def __call__(self, n: int, state: JobState) -> None:
        fn = self.fn
        if fn is not None:
            fn(n, state)


def map_everything_to(assistant: Any, model: Path) -> None:
    assistant.set_mapping({name: {"model": str(model)} for name in [*assistant.configs.domains, "default"]})


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``predicate`` until it holds (a bound against hanging forever, not a timing assertion)."""
    pause = threading.Event()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        pause.wait(0.02)
    return predicate()
