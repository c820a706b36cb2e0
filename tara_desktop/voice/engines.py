"""What the speech recogniser and the emotion detector share: a chain of engines in order of preference,
where one that fails to load or to run is dropped from then on (with the reason kept and logged, never
user content) and the next one is used; and the voice settings from config when none were given."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from tara_desktop.errors import TaraError
from tara_desktop.jobs import Cancelled

if TYPE_CHECKING:
    from tara_desktop.config import VoiceSettings


def resolve_voice_settings(settings: VoiceSettings | None) -> VoiceSettings:
    """``settings``, or the app's voice settings from ``configs/`` when None."""
    if settings is not None:
        return settings
    from tara_desktop.config import load_configs

    return load_configs().app.voice


class Engine(Protocol):
    """A model-backed engine: a name ("faster-whisper", "speechbrain"...), the model it runs, where that
    model lives (None for one that ships inside its package) and a :meth:`load` that loads it once."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def model_dir(self) -> Path | None: ...

    def load(self) -> object: ...


E = TypeVar("E", bound=Engine)
R = TypeVar("R")


class EngineChain(Generic[E]):
    """Engines tried in order; an engine that raises is dropped for good and the next one is tried.

    ``what`` and ``then`` word the log line ("speech engine faster-whisper unavailable, using the next one:
    ..."); ``reasons`` are why engines that were wanted are not in the chain at all."""

    def __init__(self, engines: Iterable[E], *, reasons: Iterable[str] = (), what: str, then: str,
                 logger: logging.Logger) -> None:
        self.engines: list[E] = list(engines)
        self._reasons: list[str] = list(reasons)
        self._what, self._then, self._log = what, then, logger
        self._lock = threading.Lock()

    @property
    def primary_error(self) -> str | None:
        """Why the first-choice engine is not in use (None while it works)."""
        with self._lock:
            return "; ".join(self._reasons) if self._reasons else None

    @property
    def first(self) -> E | None:
        with self._lock:
            return self.engines[0] if self.engines else None

    def warm_up(self) -> E | None:
        """Load the first engine that loads (dropping those that do not) and return it; None when none
        does. Loading is done once, so a second call costs nothing."""
        while (engine := self.first) is not None:
            try:
                engine.load()
            except Exception as exc:
                self.drop(engine, exc)
            else:
                return engine
        return None

    def run(self, call: Callable[[E], R]) -> tuple[E, R] | None:
        """``call`` on the first engine that does not raise, and that engine; None when every one failed.
        :class:`~tara_desktop.jobs.Cancelled` is not a failure: it goes through, and the engine stays."""
        while (engine := self.first) is not None:
            try:
                return engine, call(engine)
            except Cancelled:
                raise
            except Exception as exc:  # a broken model file must not cost the user their turn
                self.drop(engine, exc)
        return None

    def drop(self, engine: E, exc: BaseException) -> None:
        where = engine.model_dir or engine.model
        reason = str(exc) if isinstance(exc, TaraError) else f"{engine.name} failed ({exc.__class__.__name__}) with {where}"
        with self._lock:
            if engine not in self.engines:
                return  # another thread dropped it first
            self.engines.remove(engine)
            self._reasons.append(reason)
        self._log.warning("%s %s unavailable, using %s: %s", self._what, engine.name, self._then, reason)
