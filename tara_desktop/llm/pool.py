"""Loaded models within a memory budget.

:class:`ModelPool` hands out loaded :class:`~tara_desktop.llm.engine.Engine` objects by path:

- the same file is never loaded twice (concurrent ``get`` calls for one path wait for a single load);
- loading a model that would push the total over the budget first unloads the least recently used
  models that are not in use; a model larger than the whole budget is refused with a clear error;
- models idle for ``idle_unload_s`` (``llm.idle_unload_seconds``) are unloaded: a background thread
  started with the first load runs :meth:`ModelPool.sweep` (tests call ``sweep`` with their own clock).

Memory per model is :mod:`tara_desktop.llm.memory`'s estimate at the context the engine really uses (the
setting clamped to the model's training context), the same number the Models page judges "fits" with.
``llm.memory_budget_mb = 0`` means automatic: half of this computer's memory.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.llm import memory
from tara_desktop.llm.engine import Engine
from tara_desktop.llm.model_check import validate_gguf

if TYPE_CHECKING:
    from tara_desktop.config import LlmSettings

log = logging.getLogger(__name__)


class BudgetError(TaraError):
    """A model does not fit in the memory budget even with every other model unloaded."""


@dataclass
class _Slot:
    path: Path
    estimate_mb: float
    engine: Engine | None = None
    last_used: float = 0.0
    leases: int = 0
    loading: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


@dataclass(frozen=True)
class LoadedModel:
    path: Path
    estimate_mb: float
    last_used: float
    in_use: bool


class ModelPool:
    """Loaded engines by path, kept within ``budget_mb`` and unloaded after ``idle_unload_s`` unused.

    ``budget_mb == 0`` is the automatic budget (:func:`tara_desktop.llm.memory.budget_mb`).
    ``idle_unload_s == 0`` disables idle unloading; ``idle_check_s`` is how often the idle thread looks
    (default: a quarter of the idle time, 1-60 s). ``clock`` is ``time.monotonic`` unless a test injects
    its own."""

    def __init__(
        self,
        budget_mb: float,
        idle_unload_s: float,
        *,
        n_ctx: int = 2048,
        n_threads: int = 0,
        n_batch: int = 256,
        clock: Callable[[], float] = time.monotonic,
        idle_check_s: float | None = None,
        total_ram_bytes: int | None = None,
    ) -> None:
        if budget_mb < 0:
            raise TaraError("the model memory budget cannot be negative; set llm.memory_budget_mb (0 = automatic)")
        self._total_ram = total_ram_bytes
        self.budget_mb = budget_mb
        self.idle_unload_s = float(idle_unload_s)
        self.idle_check_s = idle_check_s
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.n_batch = n_batch
        self._clock = clock
        self._lock = threading.Condition(threading.Lock())
        self._slots: dict[Path, _Slot] = {}
        self._timer: threading.Thread | None = None
        self._timer_stop = threading.Event()
        self.loads = 0  # how many times a model file was actually loaded (for tests and diagnostics)
        self.sweeps = 0  # how many times the idle thread has looked (for tests and diagnostics)

    @classmethod
    def from_settings(cls, s: LlmSettings) -> ModelPool:
        return cls(
            s.memory_budget_mb,
            s.idle_unload_seconds,
            n_ctx=s.context_size,
            n_threads=s.threads,
            n_batch=s.batch_size,
        )

    # ------------------------------------------------------------------------------------------------

    @staticmethod
    def _key(path: str | os.PathLike[str]) -> Path:
        return Path(path).expanduser().resolve()

    @property
    def budget_mb(self) -> float:
        """The budget in MB (the automatic one worked out when the setting is 0)."""
        if self.budget_setting_mb <= 0 and self._total_ram is None:
            self._total_ram = memory.total_memory_bytes()
        return memory.budget_mb(self.budget_setting_mb, self._total_ram)

    @budget_mb.setter
    def budget_mb(self, value: float) -> None:
        if value < 0:
            raise TaraError("the model memory budget cannot be negative; set llm.memory_budget_mb (0 = automatic)")
        self.budget_setting_mb = float(value)

    def estimate(self, path: str | os.PathLike[str]) -> memory.MemoryEstimate:
        """What ``path`` needs loaded by this pool (its context and batch settings)."""
        return memory.estimate_file(path, self.n_ctx, self.n_batch)

    def estimate_mb(self, path: str | os.PathLike[str]) -> float:
        return self.estimate(path).total_mb

    def used_mb(self) -> float:
        with self._lock:
            return sum(s.estimate_mb for s in self._slots.values())

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return [
                LoadedModel(s.path, s.estimate_mb, s.last_used, s.leases > 0)
                for s in self._slots.values()
                if s.engine is not None
            ]

    def is_loaded(self, path: str | os.PathLike[str]) -> bool:
        with self._lock:
            slot = self._slots.get(self._key(path))
            return slot is not None and slot.engine is not None

    def get(self, path: str | os.PathLike[str], state: JobState | None = None) -> Engine:
        """The loaded engine for ``path``, loading it (and unloading others to fit) when needed."""
        with self.lease(path, state) as engine:
            return engine

    @contextmanager
    def lease(self, path: str | os.PathLike[str], state: JobState | None = None) -> Iterator[Engine]:
        """Like :meth:`get`, and the model is not unloaded (budget or idle) while the block runs."""
        slot = self._acquire(self._key(path), state)
        try:
            assert slot.engine is not None
            yield slot.engine
        finally:
            with self._lock:
                slot.leases -= 1
                slot.last_used = self._clock()

    def _acquire(self, key: Path, state: JobState | None) -> _Slot:
        with self._lock:
            while True:
                slot = self._slots.get(key)
                if slot is None:
                    break
                if slot.engine is not None:
                    slot.leases += 1
                    slot.last_used = self._clock()
                    return slot
                # another thread is loading it: wait, then look again
                self._lock.wait(timeout=0.5)
            if not key.is_file():
                raise TaraError(f"model file {key} does not exist; check the path or run `tara models list`")
            validate_gguf(key)
            need = self.estimate(key)
            estimate = need.total_mb
            if estimate > self.budget_mb:
                raise BudgetError(
                    f"model {key.name} needs about {estimate:,.0f} MB at a {need.n_ctx}-token context but the "
                    f"model memory budget is {self.budget_mb:,.0f} MB; raise it in Settings (llm.memory_budget_mb) "
                    "or choose a smaller model"
                )
            victims = self._choose_victims(estimate)
            slot = _Slot(key, estimate, leases=1)
            self._slots[key] = slot  # reserved: others asking for this path wait for this load
            for v in victims:
                self._slots.pop(v.path, None)
        for v in victims:
            self._unload(v, "to stay within the memory budget")
        try:
            engine = Engine.load(
                key,
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                n_batch=self.n_batch,
                state=state,
                validated=True,
            )
        except BaseException:
            with self._lock:
                self._slots.pop(key, None)
                self._lock.notify_all()
            raise
        with self._lock:
            slot.engine = engine
            slot.last_used = self._clock()
            self.loads += 1
            self._lock.notify_all()
        self.start_idle_timer(self.idle_check_s)
        return slot

    def _choose_victims(self, need_mb: float) -> list[_Slot]:
        """Least recently used, unleased, loaded models to unload so that ``need_mb`` fits (lock held)."""
        used = sum(s.estimate_mb for s in self._slots.values())
        victims: list[_Slot] = []
        for s in sorted(self._slots.values(), key=lambda s: s.last_used):
            if used + need_mb <= self.budget_mb:
                break
            if s.engine is None or s.leases > 0:
                continue
            victims.append(s)
            used -= s.estimate_mb
        if used + need_mb > self.budget_mb:
            busy = [s.path.name for s in self._slots.values() if s not in victims]
            raise BudgetError(
                f"cannot load another model within the {self.budget_mb:,.0f} MB memory budget while "
                f"{', '.join(busy)} {'is' if len(busy) == 1 else 'are'} in use; wait for it to finish or raise "
                "llm.memory_budget_mb"
            )
        return victims

    @staticmethod
    def _unload(slot: _Slot, why: str) -> None:
        if slot.engine is not None:
            log.info("unloading %s %s", slot.path.name, why)
            slot.engine.close()

    def unload(self, path: str | os.PathLike[str]) -> bool:
        """Unload ``path`` now if it is loaded and not in use; returns whether it was unloaded."""
        with self._lock:
            slot = self._slots.get(self._key(path))
            if slot is None or slot.engine is None or slot.leases > 0:
                return False
            del self._slots[slot.path]
        self._unload(slot, "on request")
        return True

    def sweep(self, now: float | None = None) -> list[Path]:
        """Unload models unused for ``idle_unload_s`` at time ``now`` (the pool's clock by default)."""
        if self.idle_unload_s <= 0:
            return []
        now = self._clock() if now is None else now
        with self._lock:
            idle = [
                s
                for s in self._slots.values()
                if s.engine is not None and s.leases == 0 and now - s.last_used >= self.idle_unload_s
            ]
            for s in idle:
                del self._slots[s.path]
        for s in idle:
            self._unload(s, "after being idle")
        return [s.path for s in idle]

    def _check_interval(self, interval_s: float | None) -> float:
        if interval_s:
            return interval_s
        if self.idle_unload_s <= 0:  # idle unloading is off (it may be switched on in Settings)
            return 60.0
        return min(60.0, max(1.0, self.idle_unload_s / 4))

    def start_idle_timer(self, interval_s: float | None = None) -> None:
        """Sweep in a daemon thread every ``interval_s`` (default: a quarter of the idle time, 1-60 s,
        worked out again after every sweep so a changed setting takes effect). Started by the first load;
        does nothing when it runs already."""
        with self._lock:
            if self._timer is not None:
                return
            self._timer_stop.clear()

            def run() -> None:
                while not self._timer_stop.wait(self._check_interval(interval_s)):
                    try:
                        self.sweep()
                    except Exception:  # never let the timer die silently mid-session
                        log.exception("idle sweep failed")
                    self.sweeps += 1

            self._timer = threading.Thread(target=run, name="tara-model-idle", daemon=True)
            self._timer.start()

    def close(self) -> None:
        """Stop the idle timer and unload every model."""
        self._timer_stop.set()
        if self._timer is not None:
            self._timer.join(timeout=5)
            self._timer = None
        with self._lock:
            slots = [s for s in self._slots.values() if s.engine is not None]
            self._slots.clear()
        for s in slots:
            self._unload(s, "on shutdown")
