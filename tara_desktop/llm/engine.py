"""The local LLM engine: one GGUF model loaded through llama-cpp-python.

What it does
- Loads a GGUF memory-mapped after validating it and checking that it fits in the free memory
  (:mod:`tara_desktop.llm.loader`); any failure is one clear :class:`~tara_desktop.errors.TaraError` line.
- Formats chats with the model's own chat template (:mod:`tara_desktop.llm.chat_template`), ChatML when it
  has none.
- Streams text token by token (settings and stop strings: :mod:`tara_desktop.llm.generation`), polls the job
  state after every token so a cancel stops generation within one token, and records time to first token
  and tokens per second in :attr:`Engine.last_stats`.
- Applies GGUF LoRA adapters to the loaded base at run time and swaps them without reloading the base
  (:mod:`tara_desktop.llm.lora`).
- llama.cpp's own logging is silenced (it must never write user content anywhere).

One engine serves one generation at a time (a lock serialises them). A generation started with
``background=True`` (a conversation summary) gives way: it stops as soon as a foreground generation
asks for the engine, so summaries never delay a reply.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
import random
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.llm.chat_template import ChatTemplate
from tara_desktop.llm.generation import GenerationSettings, GenerationStats, StopReason, StopStrings
from tara_desktop.llm.loader import open_model
from tara_desktop.llm.lora import LoraAdapters

if TYPE_CHECKING:
    from llama_cpp import Llama

    from tara_desktop.config import LlmSettings

log = logging.getLogger(__name__)


@dataclass
class _Priority:
    foreground_waiting: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _ReplyClock:
    """Times one generation into its :class:`GenerationStats`."""

    def __init__(self, stats: GenerationStats) -> None:
        self.stats = stats
        self.t0 = time.perf_counter()
        self.first = 0.0
        self.last = self.t0

    def shown(self) -> None:
        """Some text of the reply was just handed to the reader."""
        self.last = time.perf_counter()
        if not self.first:
            self.first = self.last
            self.stats.ttft_s = self.first - self.t0

    def finish(self, tokens: int, reason: StopReason) -> None:
        stats = self.stats
        stats.tokens = tokens
        stats.stop_reason = reason
        stats.total_s = time.perf_counter() - self.t0
        decode_s = self.last - self.first if self.first else 0.0
        stats.tokens_per_s = (tokens - 1) / decode_s if tokens > 1 and decode_s > 0 else 0.0


class Engine:
    """One loaded GGUF model. Create with :meth:`Engine.load`; free with :meth:`close`."""

    def __init__(self, llm: Llama, path: Path, *, n_ctx: int, n_threads: int, n_batch: int, memory_mb: float) -> None:
        self._llm = llm
        self.path = path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.n_batch = n_batch
        self.memory_mb = memory_mb
        self.last_stats = GenerationStats()
        self._lock = threading.Lock()
        self._priority = _Priority()
        self._closed = False
        self._adapters = LoraAdapters(llm, path.name)
        self._piece_buf = ctypes.create_string_buffer(256)
        self._abort_state: JobState | None = None
        self._abort_cb: ctypes._CFunctionType | None = None
        import llama_cpp

        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        meta = dict(getattr(llm, "metadata", {}) or {})
        eos_id = int(llm.token_eos())
        bos_id = int(llm.token_bos())
        self.eos_token = llm._model.token_get_text(eos_id) if eos_id >= 0 else ""
        self.bos_token = llm._model.token_get_text(bos_id) if bos_id >= 0 else ""
        self._template = ChatTemplate(
            meta.get("tokenizer.chat_template"), eos_token=self.eos_token, bos_token=self.bos_token,
            model_name=path.name,
        )
        self.has_chat_template = self._template.has_chat_template
        self.chat_template: str = self._template.text
        # With its own template the model's special tokens are in the text; with the default we add BOS
        # the way the model asks for it.
        self._add_bos = (not self.has_chat_template) and bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))

    # ------------------------------------------------------------------------------------------------
    # loading

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        n_ctx: int = 2048,
        n_threads: int = 0,
        n_batch: int = 256,
        state: JobState | None = None,
        available_mb: float | None = None,
        validated: bool = False,
    ) -> Engine:
        """Validate, check the memory need, and load ``path`` (see :func:`tara_desktop.llm.loader.open_model`).
        ``n_threads=0`` uses the physical cores."""
        opened = open_model(
            path, n_ctx=n_ctx, n_threads=n_threads, n_batch=n_batch, state=state, available_mb=available_mb,
            validated=validated,
        )
        try:
            engine = cls(
                opened.llm, opened.path, n_ctx=opened.n_ctx, n_threads=opened.n_threads, n_batch=opened.n_batch,
                memory_mb=opened.memory_mb,
            )
        except Exception:
            opened.llm.close()
            raise
        if state is not None:
            state.report(1.0, f"loaded {opened.path.name}")
        log.info("loaded %s (ctx %d, %d threads, ~%.0f MB)", opened.path.name, opened.n_ctx, opened.n_threads,
                 opened.memory_mb)
        return engine

    @classmethod
    def from_settings(
        cls, path: str | os.PathLike[str], settings: LlmSettings, state: JobState | None = None
    ) -> Engine:
        return cls.load(
            path, n_ctx=settings.context_size, n_threads=settings.threads, n_batch=settings.batch_size, state=state
        )

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def busy(self) -> bool:
        """True while a generation or an adapter change is running."""
        if self._lock.acquire(blocking=False):
            self._lock.release()
            return False
        return True

    def _check_open(self) -> None:
        if self._closed:
            raise TaraError(f"model {self.path.name} was unloaded; load it again")

    # ------------------------------------------------------------------------------------------------
    # tokens and prompts

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        self._check_open()
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` takes (plain text: special-token strings are not interpreted)."""
        if not text:
            return 0
        return len(self.tokenize(text))

    def format_chat(self, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        """The prompt text for ``messages`` with the model's chat template (or ChatML); a template that
        refuses a system message or two messages of one role in a row gets the folded conversation."""
        return self._template.format(messages, add_generation_prompt=add_generation_prompt)

    def chat_tokens(self, messages: Sequence[dict[str, str]]) -> list[int]:
        prompt = self.format_chat(messages)
        return list(self._llm.tokenize(prompt.encode("utf-8"), add_bos=self._add_bos, special=True))

    def count_chat_tokens(self, messages: Sequence[dict[str, str]]) -> int:
        """Tokens of the whole formatted prompt for ``messages`` (template markup included)."""
        self._check_open()
        return len(self.chat_tokens(messages))

    # ------------------------------------------------------------------------------------------------
    # generation

    @contextmanager
    def _generation(self, background: bool) -> Iterator[None]:
        if background:
            while self._priority.foreground_waiting:  # let a waiting reply go first
                time.sleep(0.005)
            self._lock.acquire()
        else:
            with self._priority.lock:
                self._priority.foreground_waiting += 1
            try:
                self._lock.acquire()
            finally:
                with self._priority.lock:
                    self._priority.foreground_waiting -= 1
        try:
            self._check_open()
            yield
        finally:
            self._lock.release()

    def _set_abort(self, state: JobState | None) -> None:
        """Install (or with None remove) llama.cpp's abort callback polling ``state``. Only while a prompt
        is evaluated: the callback runs for every graph node, too often to keep during decoding."""
        import llama_cpp

        self._abort_state = state
        if state is None:
            llama_cpp.llama_set_abort_callback(self._llm.ctx, llama_cpp.ggml_abort_callback(), None)
            return
        if self._abort_cb is None:

            def check(_data: ctypes.c_void_p) -> bool:
                st = self._abort_state
                return st is not None and st.cancelled

            self._abort_cb = llama_cpp.ggml_abort_callback(check)
        llama_cpp.llama_set_abort_callback(self._llm.ctx, self._abort_cb, None)

    def _piece(self, token: int) -> bytes:
        import llama_cpp

        buf = self._piece_buf
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        return buf.raw[: max(n, 0)]

    def stream_chat(
        self,
        messages: Sequence[dict[str, str]],
        settings: GenerationSettings,
        state: JobState,
        *,
        background: bool = False,
    ) -> Generator[str, None, None]:
        """Yield the reply to ``messages`` piece by piece (about one token per piece).

        ``state`` is polled after every token: once cancelled, the generator stops within one token and
        ends normally (``last_stats.stop_reason == "cancelled"``). With ``background=True`` the generation
        also stops (``"preempted"``) as soon as a foreground generation wants this engine.
        Raises :class:`TaraError` when the prompt alone does not fit the context. Closing the generator
        early frees the engine (``stop_reason == "closed"``).
        """
        return self._stream(list(messages), settings, state, background, GenerationStats())

    def _prompt_tokens(self, messages: list[dict[str, str]], stats: GenerationStats) -> list[int]:
        tokens = self.chat_tokens(messages)
        stats.prompt_tokens = len(tokens)
        if self.n_ctx - len(tokens) < 1:
            raise TaraError(
                f"the prompt is {len(tokens)} tokens but the model's context holds {self.n_ctx}; "
                "shorten the message or raise llm.context_size"
            )
        return tokens

    def _next_token(self, gen: Iterator[int], state: JobState) -> int | StopReason:
        """The next sampled token, or why there is none: "eos" at the end of the reply, "cancelled" once
        llama.cpp was aborted by a cancel."""
        try:
            return next(gen)
        except StopIteration:
            return "eos"
        except RuntimeError as exc:  # llama_decode failed, or was aborted by the cancel
            self._llm.reset()
            if state.cancelled:
                return "cancelled"
            log.warning("generation failed in llama.cpp: %s", exc)
            raise TaraError(
                f"llama.cpp failed while generating with {self.path.name}; try again or reload the model"
            ) from None

    def _stream(
        self,
        messages: list[dict[str, str]],
        settings: GenerationSettings,
        state: JobState,
        background: bool,
        stats: GenerationStats,
    ) -> Generator[str, None, None]:
        import llama_cpp

        clock = _ReplyClock(stats)
        with self._generation(background):
            self.last_stats = stats
            tokens = self._prompt_tokens(messages, stats)
            max_new = max(1, min(settings.max_tokens, self.n_ctx - len(tokens)))
            llm = self._llm
            llm.set_seed(settings.seed if settings.seed >= 0 else random.getrandbits(31))
            gen = llm.generate(
                tokens,
                top_k=settings.top_k,
                top_p=settings.top_p,
                min_p=settings.min_p,
                temp=settings.temperature,
                repeat_penalty=settings.repeat_penalty,
                reset=True,
            )
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            stops = StopStrings(settings.stop)
            n = 0
            reason: StopReason = "closed"  # the consumer stopped reading before the reply ended
            vocab = self._vocab
            is_eog = llama_cpp.llama_vocab_is_eog
            prio = self._priority
            # a long prompt takes a while to evaluate: let a cancel abort llama.cpp's computation
            abortable = len(tokens) > 64
            if abortable:
                self._set_abort(state)
            try:
                while True:
                    token = self._next_token(gen, state)
                    if isinstance(token, str):
                        reason = token
                        break
                    if abortable:
                        self._set_abort(None)
                        abortable = False
                    if state.cancelled:  # cancelled while this token was computed: do not show it
                        reason = "cancelled"
                        break
                    if is_eog(vocab, token):
                        reason = "eos"
                        break
                    n += 1
                    text = stops.feed(decoder.decode(self._piece(token)))
                    if stops.stopped:
                        reason = "stop"
                    if text:
                        clock.shown()
                        yield text
                    if reason == "stop":
                        break
                    if state.cancelled:
                        reason = "cancelled"
                        break
                    if background and prio.foreground_waiting:
                        reason = "preempted"
                        break
                    if n >= max_new:
                        reason = "length"
                        break
                if reason in ("length", "eos"):
                    held = stops.flush(decoder.decode(b"", final=True))
                    if held:
                        clock.shown()
                        yield held
            finally:
                if abortable:
                    self._set_abort(None)
                gen.close()
                clock.finish(n, reason)

    def reset(self) -> None:
        """Forget the cached prompt: the next reply evaluates its whole prompt (benchmarks use this)."""
        with self._lock:
            self._check_open()
            self._llm.reset()

    def chat(
        self,
        messages: Sequence[dict[str, str]],
        settings: GenerationSettings,
        state: JobState | None = None,
        *,
        background: bool = False,
    ) -> str:
        """The whole reply as one string (see :meth:`stream_chat`)."""
        return self.generate(messages, settings, state, background=background)[0]

    def generate(
        self,
        messages: Sequence[dict[str, str]],
        settings: GenerationSettings,
        state: JobState | None = None,
        *,
        background: bool = False,
    ) -> tuple[str, GenerationStats]:
        """The whole reply and the stats of this very generation (``last_stats`` may already belong to
        another thread's generation by the time a background caller reads it)."""
        stats = GenerationStats()
        text = "".join(self._stream(list(messages), settings, state or JobState(), background, stats))
        return text, stats

    # ------------------------------------------------------------------------------------------------
    # adapters

    @property
    def adapter(self) -> tuple[Path, float] | None:
        """The active adapter (path, scale), or None."""
        return self._adapters.active

    def set_adapter(self, path: str | os.PathLike[str] | None, scale: float = 1.0) -> None:
        """Apply the GGUF LoRA adapter at ``path`` with ``scale`` on this model (None: no adapter).

        The base stays loaded; adapters already used are kept (up to 8) so switching back is instant.
        The KV cache is cleared, so the next reply is computed with the new weights from the start.
        Raises :class:`~tara_desktop.llm.lora.AdapterError`."""
        with self._lock:
            self._check_open()
            if self._adapters.apply(path, scale):
                self._llm.reset()

    # ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Free adapters, context and model (waits for a running generation to finish)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._adapters.free()
            finally:
                self._llm.close()
                del self._llm
            log.info("unloaded %s", self.path.name)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Engine"]
