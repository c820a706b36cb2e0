"""The local LLM engine: one GGUF model loaded through llama-cpp-python.

What it does
- Loads a GGUF memory-mapped, after validating the file (``tara_desktop.llm.gguf_file.validate``) and
  checking that it fits in the free memory (:mod:`tara_desktop.llm.memory`: weights + KV cache at the
  context actually used + compute buffers); any failure is one clear :class:`~tara_desktop.errors.TaraError`
  line.
- Formats chats with the model's own chat template from its metadata (the same Jinja2 formatter
  llama-cpp-python uses); a ChatML template when the model has none.
- Streams text token by token, polls the job state after every token so a cancel stops generation
  within one token, and records time to first token and tokens per second in :attr:`Engine.last_stats`.
- Applies GGUF LoRA adapters to the loaded base at run time (``llama_adapter_lora_init`` +
  ``llama_set_adapters_lora``) with a scale, and swaps them without reloading the base. Loaded adapters
  are cached per path and freed on :meth:`Engine.close`.
- llama.cpp's own logging is silenced (it must never write user content anywhere).

One engine serves one generation at a time (a lock serialises them). A generation started with
``background=True`` (a conversation summary) gives way: it stops as soon as a foreground generation
asks for the engine, so summaries never delay a reply.
"""

from __future__ import annotations

import ctypes
import logging
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.llm import memory
from tara_desktop.llm.llama_logs import quiet_llama_logs

if TYPE_CHECKING:
    from tara_desktop.config import LlmSettings
    from tara_desktop.llm.gguf_file import GgufInfo

log = logging.getLogger(__name__)

DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""ChatML: used when a model carries no ``tokenizer.chat_template``."""

_MAX_CACHED_ADAPTERS = 8


class ModelLoadError(TaraError):
    """A model file could not be loaded (does not fit, unsupported, or llama.cpp refused it)."""


class AdapterError(TaraError):
    """A LoRA adapter could not be loaded or applied to the current model."""


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
    stop_reason: str = ""  # "eos" | "length" | "stop" | "cancelled" | "preempted" | "closed"


_VALIDATED: dict[Path, tuple[tuple[int, int, int], str | None]] = {}
_VALIDATED_LOCK = threading.Lock()

CHAT_ARCHITECTURES = frozenset({
    "llama", "llama4", "mistral3", "qwen", "qwen2", "qwen2moe", "qwen3", "qwen3moe", "phi2", "phi3", "phimoe",
    "gemma", "gemma2", "gemma3", "starcoder2", "stablelm", "internlm2", "olmo", "olmo2", "olmoe", "granite",
    "granitemoe", "deepseek", "deepseek2", "command-r", "cohere2", "exaone", "falcon", "smollm3", "minicpm",
    "minicpm3", "nemotron", "chatglm", "glm4", "baichuan", "orion", "openelm", "arctic", "dbrx", "gptneox",
    "mpt", "bloom", "gpt2", "starcoder", "refact", "codeshell", "xverse", "plamo", "mamba", "rwkv6",
})
"""Decoder architectures TARA chats with when the file carries no chat template (with ChatML, below)."""


def _not_a_chat_model(info: GgufInfo) -> str | None:
    """Why a GGUF that parses is still no chat model TARA can answer with (one line, naming the file and
    what to do), or None."""
    name = info.path.name
    if info.model_type == "adapter":
        return (f"{name} is a LoRA adapter, not a model: choose a model file as the model and use the adapter "
                "with it (--adapter, or the Domains → models mapping)")
    if info.tensor_count == 0:
        return (f"{name} holds only metadata and no weights (0 tensors), so it is not a model TARA can run: "
                "download the complete model file again, or choose another model (`tara models list`)")
    if not info.chat_template and info.architecture not in CHAT_ARCHITECTURES:
        arch = info.architecture or "none given"
        return (f"{name} is not a chat model: it has no chat template and its architecture ({arch}) has no "
                "known chat format; choose an instruction-tuned chat GGUF (`tara models list`)")
    return None


def validate_gguf(path: Path, *, chat_model: bool = True) -> None:
    """Validate a GGUF before llama.cpp opens it (the validator gives one clear line on a bad file), and
    with ``chat_model`` (not for an adapter) that it is a chat model: weights, and a chat template or an
    architecture with a known chat format (raises ModelLoadError naming the file otherwise).

    A file that passed and has not changed since (same size, modification time and inode) is not
    parsed again, so reloading a model or switching back to an adapter stays cheap."""
    try:
        from tara_desktop.llm import gguf_file
    except ImportError:  # the validator ships separately; without it llama.cpp still refuses bad files
        return
    key = Path(path).resolve()
    try:
        st = key.stat()
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
    except OSError:
        stamp = None
    if stamp is not None:
        with _VALIDATED_LOCK:
            hit = _VALIDATED.get(key)
        if hit is not None and hit[0] == stamp:
            if chat_model and hit[1] is not None:
                raise ModelLoadError(hit[1])
            return
    info = gguf_file.validate(key)
    memory.remember(info)  # the load's memory estimate needs no second parse
    problem = _not_a_chat_model(info)
    if stamp is not None:
        with _VALIDATED_LOCK:
            if len(_VALIDATED) > 256:
                _VALIDATED.clear()
            _VALIDATED[key] = (stamp, problem)
    if chat_model and problem is not None:
        raise ModelLoadError(problem)


def _physical_cores() -> int:
    try:
        import psutil

        return max(1, int(psutil.cpu_count(logical=False) or os.cpu_count() or 1))
    except Exception:
        return max(1, os.cpu_count() or 1)


def _ensure_std_fds() -> None:
    """llama-cpp-python silences loading by duplicating file descriptors 1 and 2; in a windowed app
    (pythonw, a frozen GUI on Windows) they may not exist, which would make every load fail. Point
    missing ones at the null device."""
    for fd in (1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


@dataclass
class _Adapter:
    path: Path
    handle: Any  # llama_adapter_lora_p


@dataclass
class _Priority:
    foreground_waiting: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Engine:
    """One loaded GGUF model. Create with :meth:`Engine.load`; free with :meth:`close`."""

    def __init__(self, llm: Any, path: Path, *, n_ctx: int, n_threads: int, n_batch: int, memory_mb: float) -> None:
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
        self._adapters: OrderedDict[Path, _Adapter] = OrderedDict()
        self._active: tuple[Path, float] | None = None
        self._piece_buf = ctypes.create_string_buffer(256)
        self._abort_state: JobState | None = None
        self._abort_cb: Any = None
        import llama_cpp

        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        meta = dict(getattr(llm, "metadata", {}) or {})
        template = meta.get("tokenizer.chat_template")
        self.has_chat_template = bool(template)
        self.chat_template: str = template or DEFAULT_CHAT_TEMPLATE
        eos_id = int(llm.token_eos())
        bos_id = int(llm.token_bos())
        self.eos_token = llm._model.token_get_text(eos_id) if eos_id >= 0 else ""
        self.bos_token = llm._model.token_get_text(bos_id) if bos_id >= 0 else ""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        try:
            self._formatter = Jinja2ChatFormatter(
                template=self.chat_template, eos_token=self.eos_token, bos_token=self.bos_token
            )
        except Exception:  # a template this Jinja cannot parse: fall back to ChatML rather than fail the model
            log.warning("model %s has a chat template that cannot be parsed; using ChatML", path.name)
            self.has_chat_template = False
            self.chat_template = DEFAULT_CHAT_TEMPLATE
            self._formatter = Jinja2ChatFormatter(
                template=DEFAULT_CHAT_TEMPLATE, eos_token=self.eos_token, bos_token=self.bos_token
            )
        self._formatter_no_gen = Jinja2ChatFormatter(
            template=self.chat_template,
            eos_token=self.eos_token,
            bos_token=self.bos_token,
            add_generation_prompt=False,
        )
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
        """Validate, check the memory need, and load ``path``. ``n_threads=0`` uses the physical cores.
        ``available_mb`` overrides the measured free memory; ``validated`` skips the file validation when the
        caller (the pool) just did it."""
        p = Path(path).expanduser()
        if state is not None:
            state.report(0.0, f"checking {p.name}")
            state.check()
        if not p.is_file():
            raise ModelLoadError(f"model file {p} does not exist; check the path or run `tara models list`")
        if not validated:
            validate_gguf(p)
        shape = memory.shape_of_file(p)
        if not shape.is_text_model:
            raise ModelLoadError(
                f"model {p.name} has no layer/embedding sizes in its metadata; it is not a text model TARA can run"
            )
        estimate = memory.estimate(shape, n_ctx, n_batch)
        if estimate.n_ctx < n_ctx:  # beyond what it was trained on a model only degrades
            log.info("%s was trained on %d tokens of context; using that", p.name, estimate.n_ctx)
        n_ctx, n_batch = estimate.n_ctx, estimate.n_batch
        need = estimate.total_mb
        free = memory.available_memory_bytes() / memory.MB if available_mb is None else available_mb
        if need > free:
            raise ModelLoadError(
                f"model {p.name} needs about {need:,.0f} MB at a {n_ctx}-token context but only {free:,.0f} MB "
                "are available; close other programs, lower llm.context_size, or choose a smaller model"
            )
        threads = n_threads if n_threads > 0 else _physical_cores()
        if state is not None:
            state.report(0.1, f"loading {p.name}")
            state.check()
        import llama_cpp

        quiet_llama_logs()
        _ensure_std_fds()
        try:
            llm = llama_cpp.Llama(
                model_path=str(p),
                n_ctx=n_ctx,
                n_batch=n_batch,
                n_ubatch=n_batch,
                n_threads=threads,
                n_threads_batch=threads,
                use_mmap=True,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            log.info("llama.cpp refused %s: %s", p.name, type(exc).__name__)
            raise ModelLoadError(
                f"llama.cpp could not load {p.name} (unsupported architecture, damaged file or not enough memory); "
                "run `tara gguf validate` on it or choose another model"
            ) from None
        try:
            engine = cls(llm, p, n_ctx=n_ctx, n_threads=threads, n_batch=n_batch, memory_mb=need)
        except Exception:
            llm.close()
            raise
        if state is not None:
            state.report(1.0, f"loaded {p.name}")
        log.info("loaded %s (ctx %d, %d threads, ~%.0f MB)", p.name, n_ctx, threads, need)
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
        """The prompt text for ``messages`` with the model's chat template (or ChatML).

        Many templates refuse a system message or two messages of the same role in a row (they call
        ``raise_exception``); then the system text is folded into the first user message and
        neighbouring messages of one role are joined, and the template is tried again."""
        formatter = self._formatter if add_generation_prompt else self._formatter_no_gen
        first_error: Exception | None = None
        for attempt in (list(messages), _fold_for_strict_templates(messages)):
            try:
                return formatter(messages=attempt).prompt  # type: ignore[arg-type]
            except Exception as exc:
                first_error = first_error or exc
        raise TaraError(
            f"the chat template of {self.path.name} failed on this conversation "
            f"({type(first_error).__name__}); try another model"
        )

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

            def check(_data: Any) -> bool:
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
    ) -> Iterator[str]:
        """Yield the reply to ``messages`` piece by piece (about one token per piece).

        ``state`` is polled after every token: once cancelled, the generator stops within one token and
        ends normally (``last_stats.stop_reason == "cancelled"``). With ``background=True`` the generation
        also stops (``"preempted"``) as soon as a foreground generation wants this engine.
        Raises :class:`TaraError` when the prompt alone does not fit the context.
        """
        return self._stream(list(messages), settings, state, background, GenerationStats())

    def _stream(
        self,
        messages: list[dict[str, str]],
        settings: GenerationSettings,
        state: JobState,
        background: bool,
        stats: GenerationStats,
    ) -> Iterator[str]:
        import codecs

        import llama_cpp

        t0 = time.perf_counter()
        with self._generation(background):
            self.last_stats = stats
            tokens = self.chat_tokens(messages)
            stats.prompt_tokens = len(tokens)
            room = self.n_ctx - len(tokens)
            if room < 1:
                raise TaraError(
                    f"the prompt is {len(tokens)} tokens but the model's context holds {self.n_ctx}; "
                    "shorten the message or raise llm.context_size"
                )
            max_new = max(1, min(settings.max_tokens, room))
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
            stops = tuple(s for s in settings.stop if s)
            held = ""  # text kept back while it may be the start of a stop string
            n = 0
            t_first = 0.0
            t_last = t0
            reason = "closed"  # the consumer stopped reading before the reply ended
            vocab = self._vocab
            is_eog = llama_cpp.llama_vocab_is_eog
            prio = self._priority
            # a long prompt takes a while to evaluate: let a cancel abort llama.cpp's computation
            abortable = len(tokens) > 64
            if abortable:
                self._set_abort(state)
            try:
                while True:
                    try:
                        token = next(gen)
                    except StopIteration:
                        reason = "eos"
                        break
                    except RuntimeError as exc:  # llama_decode failed, or was aborted by the cancel
                        llm.reset()
                        if state.cancelled:
                            reason = "cancelled"
                            break
                        log.warning("generation failed in llama.cpp: %s", exc)
                        raise TaraError(
                            f"llama.cpp failed while generating with {self.path.name}; try again or reload the model"
                        ) from None
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
                    text = decoder.decode(self._piece(token))
                    if stops:
                        held += text
                        cut = min((i for i in (held.find(s) for s in stops) if i >= 0), default=-1)
                        if cut >= 0:
                            text, reason = held[:cut], "stop"
                        else:
                            keep = max((len(s) - 1 for s in stops), default=0)
                            keep = _partial_stop_len(held, stops, keep)
                            text, held = held[: len(held) - keep], held[len(held) - keep :]
                    if text:
                        t_last = time.perf_counter()
                        if not t_first:
                            t_first = t_last
                            stats.ttft_s = t_first - t0
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
                    held += decoder.decode(b"", final=True)
                if reason in ("length", "eos") and held:
                    t_last = time.perf_counter()
                    if not t_first:
                        t_first = t_last
                        stats.ttft_s = t_first - t0
                    yield held
            finally:
                if abortable:
                    self._set_abort(None)
                gen.close()
                stats.tokens = n
                stats.stop_reason = reason
                stats.total_s = time.perf_counter() - t0
                decode_s = t_last - t_first if t_first else 0.0
                stats.tokens_per_s = (n - 1) / decode_s if n > 1 and decode_s > 0 else 0.0

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
        return self._active

    def set_adapter(self, path: str | os.PathLike[str] | None, scale: float = 1.0) -> None:
        """Apply the GGUF LoRA adapter at ``path`` with ``scale`` on this model (None: no adapter).

        The base stays loaded; adapters already used are kept (up to 8) so switching back is instant.
        The KV cache is cleared, so the next reply is computed with the new weights from the start."""
        import llama_cpp

        with self._lock:
            self._check_open()
            if path is None:
                if self._active is None:
                    return
                if llama_cpp.llama_set_adapters_lora(self._llm.ctx, None, 0, None) != 0:
                    raise AdapterError("llama.cpp could not remove the adapter; reload the model")
                self._active = None
                self._llm.reset()
                return
            p = Path(path).expanduser().resolve()
            if self._active == (p, float(scale)):
                return
            adapter = self._load_adapter(p)
            arr = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter.handle)
            scales = (ctypes.c_float * 1)(float(scale))
            if llama_cpp.llama_set_adapters_lora(self._llm.ctx, arr, 1, scales) != 0:
                raise AdapterError(f"llama.cpp could not apply adapter {p.name} to {self.path.name}")
            self._active = (p, float(scale))
            self._llm.reset()

    def _load_adapter(self, p: Path) -> _Adapter:
        import llama_cpp

        cached = self._adapters.get(p)
        if cached is not None:
            self._adapters.move_to_end(p)
            return cached
        if not p.is_file():
            raise AdapterError(f"adapter file {p} does not exist; check the path in model_mapping.json")
        validate_gguf(p, chat_model=False)
        handle = llama_cpp.llama_adapter_lora_init(self._llm.model, str(p).encode("utf-8"))
        if not handle:
            raise AdapterError(
                f"adapter {p.name} does not fit model {self.path.name} (wrong base model, architecture or "
                "tensor shapes); export the adapter for this model"
            )
        adapter = _Adapter(p, handle)
        self._adapters[p] = adapter
        while len(self._adapters) > _MAX_CACHED_ADAPTERS:
            old_path, old = next(iter(self._adapters.items()))
            if self._active is not None and self._active[0] == old_path:
                self._adapters.move_to_end(old_path)
                continue
            del self._adapters[old_path]
            llama_cpp.llama_adapter_lora_free(old.handle)
        return adapter

    # ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Free adapters, context and model (waits for a running generation to finish)."""
        import llama_cpp

        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._active is not None:
                    llama_cpp.llama_set_adapters_lora(self._llm.ctx, None, 0, None)
                for adapter in self._adapters.values():
                    llama_cpp.llama_adapter_lora_free(adapter.handle)
            finally:
                self._adapters.clear()
                self._active = None
                self._llm.close()
                self._llm = None
            log.info("unloaded %s", self.path.name)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fold_for_strict_templates(messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """System text moved into the first user message; consecutive messages of one role joined."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system" and m["content"])
    out: list[dict[str, str]] = []
    for m in messages:
        if m["role"] == "system":
            continue
        if out and out[-1]["role"] == m["role"]:
            out[-1] = {"role": m["role"], "content": out[-1]["content"] + "\n\n" + m["content"]}
        else:
            out.append({"role": m["role"], "content": m["content"]})
    if system:
        if out and out[0]["role"] == "user":
            out[0] = {"role": "user", "content": f"{system}\n\n{out[0]['content']}"}
        else:
            out.insert(0, {"role": "user", "content": system})
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
