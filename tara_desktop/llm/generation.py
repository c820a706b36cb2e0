"""How one reply is sampled (:class:`GenerationSettings`), how it went (:class:`GenerationStats`), and the
stop strings that end it (:class:`StopStrings`).

Where the settings come from (config, the model's preset, the user's choices, the request) is
:mod:`tara_desktop.llm.presets`; the loop that uses them is :meth:`tara_desktop.llm.engine.Engine.stream_chat`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from tara_desktop.config import LlmSettings

StopReason = Literal["", "eos", "length", "stop", "cancelled", "preempted", "closed"]
"""Why a generation ended ("closed": the reader stopped reading before the reply ended)."""


@dataclass(frozen=True)
class GenerationSettings:
    """How to sample one reply. ``seed < 0`` means a fresh random seed; ``temperature == 0`` is greedy."""

    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    seed: int = -1
    stop: tuple[str, ...] = ()

    @classmethod
    def from_llm_settings(cls, s: LlmSettings, **overrides: Any) -> GenerationSettings:
        """The app's ``llm`` settings with ``overrides`` (field names; values from config or JSON) on top."""
        values: dict[str, Any] = {
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.seed,
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class GenerationStats:
    """Timings of the last generation. ``ttft_s``: call to first text; ``tokens_per_s``: generated tokens
    after the first divided by the time after the first (the decode speed)."""

    ttft_s: float = 0.0
    tokens: int = 0
    tokens_per_s: float = 0.0
    prompt_tokens: int = 0
    total_s: float = 0.0
    stop_reason: StopReason = ""


class StopStrings:
    """Cuts a streamed reply at the first stop string. Text that may be the start of a stop string is held
    back until the next piece shows whether it is one, so a stop string is never shown in part."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._keep = max((len(s) - 1 for s in self.stops), default=0)
        self.held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """The text that may be shown now; sets :attr:`stopped` once a stop string was found."""
        if not self.stops:
            return text
        held = self.held + text
        cut = min((i for i in (held.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.held, self.stopped = "", True
            return held[:cut]
        keep = _partial_stop_len(held, self.stops, self._keep)
        self.held = held[len(held) - keep :]
        return held[: len(held) - keep]

    def flush(self, tail: str = "") -> str:
        """What was held back (and ``tail``), at the end of a reply that no stop string ended."""
        out, self.held = self.held + tail, ""
        return out


def _partial_stop_len(text: str, stops: tuple[str, ...], limit: int) -> int:
    """Length of the longest end of ``text`` that is a proper start of one of ``stops``."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text), limit), 0, -1):
            if text.endswith(s[:k]):
                best = max(best, k)
                break
    return best


__all__ = ["GenerationSettings", "GenerationStats", "StopReason", "StopStrings"]
