"""The server's request log: what was asked for and how it went, never what was said.

Each record is method, path, status, model name, routed domain, token counts, duration and finish
reason. The GUI panel subscribes to it; the ``tara serve`` command prints it to stderr.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger("tara_desktop.server")


@dataclass(frozen=True)
class RequestRecord:
    at: float
    method: str
    path: str
    status: int
    seconds: float
    model: str | None = None
    domain: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish: str | None = None  # stop | length | cancelled (client went away) | error code
    stored: bool = False

    def line(self) -> str:
        """One content-free line, e.g. ``POST /v1/chat/completions 200 0.41s tara→technical 12+24 tok``."""
        parts = [time.strftime("%H:%M:%S", time.localtime(self.at)), self.method, self.path, str(self.status),
                 f"{self.seconds:.2f}s"]
        if self.model:
            parts.append(self.model + (f"→{self.domain}" if self.domain else ""))
        if self.completion_tokens is not None:
            parts.append(f"{self.prompt_tokens or 0}+{self.completion_tokens} tok")
        if self.finish:
            parts.append(self.finish)
        if self.stored:
            parts.append("stored")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    """The most recent ``size`` records, and listeners called (on the server's thread) for each new one."""

    def __init__(self, size: int = 500) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[RequestRecord], None]] = []
        self.total = 0

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)
            self.total += 1
            listeners = list(self._listeners)
        log.info("%s", record.line())
        for listener in listeners:
            try:
                listener(record)
            except Exception:  # a broken listener must not break serving
                log.warning("a request-log listener failed", exc_info=False)

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def subscribe(self, listener: Callable[[RequestRecord], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[RequestRecord], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
