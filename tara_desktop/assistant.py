"""One turn end to end, as one pipeline: route → conversation window → engine → encrypted profile.

:class:`Assistant` is the composition root: it builds every service from the configs and the user's
profile once, and every face (the GUI, the ``tara`` command, the voice loop, the local API server)
drives turns through :meth:`Assistant.turn`. A reader can follow a turn top to bottom in that method.

The public API of the pipeline (stable; the API server builds on it)
--------------------------------------------------------------------
``Assistant.turn(request: TurnRequest, state: JobState, on_event=None) -> TurnResult``

- :class:`TurnRequest` — ``text`` (required); ``conversation_id`` (continue one; None starts one);
  ``pinned_domain``; ``emotion`` / ``emotion_confidence`` (from the voice); ``model_path`` /
  ``adapter_path`` (replace the mapping's); ``source`` ("typed" | "voice" | "api");
  ``generation`` (:class:`GenerationOverrides`: ``temperature``, ``top_p``, ``max_tokens``, ``stop``,
  ``seed``; None fields keep the user's settings); ``messages`` (the earlier turns a client sends
  itself, ``[{"role": "user"|"assistant", "content": str}]``, used instead of a stored conversation);
  ``system_prompt`` (replaces the domain's system prompt); ``store`` (None: keep the turn when the
  ``store_history`` consent is on; False: store nothing; True: store it, still only with that consent —
  the API passes False unless the client asks); ``replace_from`` (a user message id: an edit or a
  regenerate; that message and everything after it are replaced when this turn is stored).
- ``on_event(event)`` receives, in this order, on the calling thread:
  :class:`RouteEvent` (domain, confidence, reason, model, adapter, voice, emotion — the one routing
  decision of the message; the voice loop speaks with its ``voice``), :class:`WindowEvent` (prompt
  tokens, turns included, summary used), :class:`TokenEvent` per piece of the reply, and last
  :class:`StoredEvent` (conversation id, user and reply message ids; None when nothing was stored).
  Every event has a ``kind`` ("route", "window", "token", "stored").
- :class:`TurnResult` — the reply, the decision, ``conversation_id``, ``user_message_id``,
  ``message_id`` (the reply's), ``prompt_tokens``, ``completion_tokens``, ``finish_reason``
  ("stop" | "length" | "cancelled"), timings, ``cancelled``.
- Cancelling ``state`` stops the reply within a token; what was streamed is kept (stored marked
  ``cancelled``). Bad input (empty text, unknown domain, a missing or broken model) raises
  :class:`~tara_desktop.errors.TaraError` before anything is stored.
- :meth:`Assistant.run_turn` ``(request, state, on_token)`` is the same turn with only the tokens.

The model mapping has one owner, this class: :meth:`Assistant.set_mapping` /
:meth:`Assistant.set_domain_choice` store it and swap it in place under ``Assistant.turn_lock``, which a
turn holds while it reads the settings, the mapping and the router (routing, model resolution, sampling
settings) and releases before it generates; so no turn sees half a change, a swap waits at most for one
routing decision, and nothing polls the store. :meth:`Assistant.reload_settings` applies settings the
same way, keeping the router (and its loaded embedding model). Generations run one at a time.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tara_desktop import paths
from tara_desktop.config import Configs, ModelChoice, ModelMapping, load_configs
from tara_desktop.conversation import Conversation, Conversations
from tara_desktop.errors import TaraError
from tara_desktop.jobs import Cancelled, JobState

if TYPE_CHECKING:
    from tara_desktop.llm.context_window import Summary
    from tara_desktop.llm.pool import ModelPool
    from tara_desktop.profile import Profile
    from tara_desktop.routing.router import DomainRouter

log = logging.getLogger(__name__)

SETTINGS_KEY = "config.overrides"  # the user's own settings, merged over configs/config.yaml
MAPPING_KEY = "model_mapping.overrides"  # domain -> {"model", "adapter", "adapter_scale"}

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class GenerationOverrides:
    """Sampling settings for one turn; None keeps the user's setting."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        values = {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                  "stop": tuple(self.stop) if self.stop is not None else None, "seed": self.seed}
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class TurnRequest:
    """What the person said, and how they want it answered (see the module docstring)."""

    text: str
    conversation_id: int | None = None
    emotion: str | None = None
    emotion_confidence: float | None = None
    pinned_domain: str | None = None
    model_path: Path | None = None
    adapter_path: Path | None = None
    source: Literal["typed", "voice", "api"] = "typed"
    generation: GenerationOverrides | None = None
    messages: Sequence[dict[str, str]] | None = None
    system_prompt: str | None = None
    store: bool | None = None
    replace_from: int | None = None
    meta: dict[str, Any] | None = None  # extra meta kept on the user message (e.g. a voice recording's blob)


@dataclass(frozen=True)
class RouteEvent:
    """The one routing decision of a message, with what will answer it and the voice to speak it in."""

    domain: str
    confidence: float
    reason: str
    degraded: bool
    model: str  # the model file's name
    adapter: str | None
    voice: str | None
    emotion: str | None
    emotion_confidence: float | None
    kind: Literal["route"] = "route"


@dataclass(frozen=True)
class WindowEvent:
    """The context window sent to the model."""

    prompt_tokens: int
    turns: int  # turns of the history included word for word (the new message included)
    summary_used: bool
    left_out: int  # older turns not included (summarised, or waiting for their summary)
    kind: Literal["window"] = "window"


@dataclass(frozen=True)
class TokenEvent:
    text: str
    kind: Literal["token"] = "token"


@dataclass(frozen=True)
class StoredEvent:
    """Where the turn was stored (all None when it was not)."""

    conversation_id: int | None
    user_message_id: int | None
    message_id: int | None
    created: bool  # this turn created the conversation
    kind: Literal["stored"] = "stored"


TurnEvent = RouteEvent | WindowEvent | TokenEvent | StoredEvent


@dataclass
class TurnResult:
    conversation_id: int | None
    message_id: int | None
    reply: str
    domain: str
    confidence: float
    reason: str
    model: str
    adapter: str | None
    emotion: str | None
    emotion_confidence: float | None
    ttft_s: float | None
    tokens_per_s: float | None
    total_s: float
    cancelled: bool
    meta: dict[str, Any] = field(default_factory=dict)
    user_message_id: int | None = None
    voice: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: FinishReason = "stop"
    created: bool = False


def resolve_adapter_file(name: str, profile_dir: Path) -> Path:
    """Find a LoRA adapter named in a mapping: an absolute path, the user's models folder, then the
    bundled ``models/adapters`` folder."""
    candidate = Path(name).expanduser()
    search = [candidate] if candidate.is_absolute() else [
        paths.user_models_dir(profile_dir) / candidate,
        paths.user_models_dir(profile_dir) / "adapters" / candidate,
        paths.bundled_models_dir() / "adapters" / candidate,
        paths.bundled_models_dir() / candidate,
    ]
    for path in search:
        if path.is_file():
            return path
    raise TaraError(
        f"adapter file {name!r} was not found (looked in {', '.join(str(p.parent) for p in search)}); "
        "export the domain's adapter again or fix the model mapping"
    )


def merge_mapping(base: ModelMapping, overrides: dict[str, Any] | None) -> ModelMapping:
    """The shipped mapping with the user's per-domain choices (exports, Models page) laid over it."""
    if not overrides:
        return base
    domains = dict(base.domains)
    default = base.default
    for name, choice in overrides.items():
        if not isinstance(choice, dict):
            continue
        try:
            parsed = ModelChoice.model_validate(choice)
        except ValueError:
            log.warning("ignoring a damaged model mapping override for one domain")
            continue
        if name == "default":
            default = parsed
        else:
            domains[name] = parsed
    return ModelMapping(default=default, domains=domains)


def finish_reason(stop_reason: str, cancelled: bool) -> FinishReason:
    """The engine's stop reason in the API's words."""
    if cancelled or stop_reason in ("cancelled", "preempted", "closed"):
        return "cancelled"
    return "length" if stop_reason == "length" else "stop"


class Assistant:
    """The services for one profile, and the turn that ties them together.

    Build it with :meth:`open`; close it when done (it unloads models and stops the summariser).
    """

    def __init__(self, configs: Configs, profile: Profile, router: DomainRouter, pool: ModelPool) -> None:
        from tara_desktop.llm.context_window import SummaryWorker

        self.configs = configs
        self.profile = profile
        self.router = router
        self.pool = pool
        self.conversations = Conversations(profile)
        self.conversations.migrate()
        self.summaries = SummaryWorker(on_done=self._on_summary)
        self.conversations.subscribe(self._on_conversation_change)
        self.turn_lock = threading.RLock()  # a turn's reading of settings, mapping and router; swaps take it
        self._engine_lock = threading.Lock()  # one generation at a time
        self._mapping_listeners: list[Callable[[ModelMapping], None]] = []

    # -- composition root -------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        profile_dir: Path | str | None = None,
        *,
        passphrase: str | None = None,
        configs_folder: Path | None = None,
    ) -> Assistant:
        """Unlock the profile and build every service from the configs and the user's settings."""
        from tara_desktop.llm.pool import ModelPool
        from tara_desktop.profile import Profile
        from tara_desktop.routing.router import DomainRouter

        profile = Profile.open(paths.profile_dir(profile_dir), passphrase=passphrase)
        try:
            configs = cls._load_configs(profile, configs_folder)
            router = DomainRouter.from_configs(configs)
            pool = ModelPool.from_settings(configs.app.llm)
            return cls(configs, profile, router, pool)
        except BaseException:
            profile.close()
            raise

    @staticmethod
    def _load_configs(profile: Profile, folder: Path | None) -> Configs:
        overrides = profile.store.get_setting(SETTINGS_KEY) or {}
        configs = load_configs(folder, overrides)
        configs.mapping = merge_mapping(configs.mapping, profile.store.get_setting(MAPPING_KEY))
        return configs

    # -- the model mapping (one owner) ------------------------------------------------------------
    @property
    def mapping(self) -> ModelMapping:
        return self.configs.mapping

    def mapping_overrides(self) -> dict[str, dict[str, Any]]:
        """The user's per-domain choices as stored (domain -> {"model", "adapter", "adapter_scale"})."""
        value = self.profile.store.get_setting(MAPPING_KEY) or {}
        return {k: dict(v) for k, v in value.items() if isinstance(v, dict)} if isinstance(value, dict) else {}

    def set_mapping(self, overrides: dict[str, dict[str, Any]]) -> ModelMapping:
        """Store the user's per-domain choices (replacing them all) and use them from the next message.

        Each choice is checked like the config loader does (a bad one raises TaraError naming the
        domain, and nothing changes). Takes the turn lock: it waits for a routing decision in progress,
        never for a reply being generated."""
        for domain, choice in overrides.items():
            try:
                ModelChoice.model_validate(choice)
            except ValueError as exc:
                first = str(exc).splitlines()[-1].strip() if str(exc).strip() else "invalid"
                raise TaraError(f"the model choice for {domain} is not valid ({first}); fix it and save again") from None
        with self.turn_lock:
            self.profile.store.set_setting(MAPPING_KEY, overrides)
            shipped = load_configs(self.configs.folder).mapping
            self._swap_mapping(merge_mapping(shipped, overrides))
        return self.configs.mapping

    def set_domain_choice(self, domain: str, choice: dict[str, Any]) -> ModelMapping:
        """Make one domain (or "default") answer with ``choice``; the other domains keep theirs."""
        if domain != "default" and domain not in self.configs.domains:
            raise TaraError(f"unknown domain {domain!r}; choose one of {', '.join(sorted(self.configs.domains))}")
        with self.turn_lock:
            overrides = self.mapping_overrides()
            overrides[domain] = dict(choice)
            return self.set_mapping(overrides)

    def subscribe_mapping(self, listener: Callable[[ModelMapping], None]) -> None:
        """Call ``listener(mapping)`` after each swap (from the thread that made it)."""
        self._mapping_listeners.append(listener)

    def _swap_mapping(self, mapping: ModelMapping) -> None:
        self.configs.mapping = mapping
        self.router.mapping = mapping
        for listener in list(self._mapping_listeners):
            try:
                listener(mapping)
            except Exception:
                log.exception("a mapping listener failed")

    # -- settings ---------------------------------------------------------------------------------
    def reload_settings(self) -> None:
        """Apply changed settings or mappings (Settings/Models pages, a new export) with no restart.

        Under the turn lock; the router keeps its loaded model (its settings and mapping change in
        place; only a different embedding model makes a new router)."""
        configs = self._load_configs(self.profile, self.configs.folder)
        with self.turn_lock:
            old = self.configs
            self.configs = configs
            routing = configs.app.routing
            if routing.embedding_model != old.app.routing.embedding_model:
                from tara_desktop.routing.router import DomainRouter

                self.router = DomainRouter.from_configs(configs)
            else:
                self.router.min_confidence = routing.min_confidence
            self._swap_mapping(configs.mapping)
            llm = configs.app.llm
            self.pool.budget_mb = float(llm.memory_budget_mb)
            self.pool.idle_unload_s = float(llm.idle_unload_seconds)
            load_params = (llm.context_size, llm.threads, llm.batch_size)
            if load_params != (self.pool.n_ctx, self.pool.n_threads, self.pool.n_batch):
                # models loaded with the old context/threads/batch reload with the new ones on next use
                self.pool.n_ctx, self.pool.n_threads, self.pool.n_batch = load_params
                for loaded in self.pool.loaded():
                    self.pool.unload(loaded.path)

    def save_settings(self, overrides: dict[str, Any]) -> None:
        """Validate and store the user's own settings (encrypted), then apply them."""
        load_configs(self.configs.folder, overrides)  # raises ConfigError naming the bad key
        self.profile.store.set_setting(SETTINGS_KEY, overrides)
        self.reload_settings()

    @property
    def profile_dir(self) -> Path:
        return Path(self.profile.dir)

    def close(self) -> None:
        self.summaries.close()
        self.pool.close()
        self.profile.close()

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers of a turn --------------------------------------------------------------------------
    def model_for(self, name: str) -> Path:
        """The file for a mapped model: a path, a registered model's name, or a bundled/downloaded
        catalog model (one resolver for the whole app: :func:`tara_desktop.llm.library.resolve_model`)."""
        from tara_desktop.llm.catalog import load_catalog
        from tara_desktop.llm.library import ModelLibrary, resolve_model

        try:
            catalog = load_catalog()
        except TaraError:
            catalog = None
        return resolve_model(
            name, ModelLibrary(self.profile), catalog, models_dir=paths.bundled_models_dir()
        )

    def _keeps(self, request: TurnRequest) -> bool:
        if request.store is False:
            return False
        return bool(self.profile.consent.get("store_history"))

    def _on_conversation_change(self, kind: str, cid: int | None) -> None:
        """A deleted conversation leaves nothing in memory either: its summary, cached token counts."""
        if kind in ("deleted", "deleted_all"):
            from tara_desktop.llm.context_window import forget_texts

            self.summaries.forget(cid if kind == "deleted" else None)
            forget_texts()

    def _on_summary(self, key: object, summary: Summary) -> None:
        """A background summary is done: keep it with its conversation (the worker's thread)."""
        if isinstance(key, int):
            try:
                if summary.covers <= sum(1 for m in self.profile.store.messages(key, on_damaged="skip")
                                         if m.role in ("user", "assistant") and m.content):
                    self.profile.store.set_summary(key, summary.text, summary.covers)
            except TaraError:
                pass  # the conversation was deleted or rewound meanwhile, or the profile closed

    def _check_model(self, path: Path) -> None:
        """A missing or broken model file is bad input: say so before anything of the turn is stored."""
        if self.pool.is_loaded(path):
            return
        from tara_desktop.llm.model_check import validate_gguf

        if not path.is_file():
            raise TaraError(f"model file {path} does not exist; check the path or run `tara models list`")
        validate_gguf(path)

    @contextlib.contextmanager
    def _generation_slot(self, state: JobState) -> Iterator[None]:
        """Wait for the engine (one generation at a time), still answering a cancel while waiting."""
        while not self._engine_lock.acquire(timeout=0.1):
            state.check()
        try:
            yield
        finally:
            self._engine_lock.release()

    # -- one turn ---------------------------------------------------------------------------------
    def run_turn(
        self, request: TurnRequest, state: JobState, on_token: Callable[[str], None] | None = None
    ) -> TurnResult:
        """:meth:`turn`, passing only the streamed pieces of the reply to ``on_token``."""

        def on_event(event: TurnEvent) -> None:
            if on_token is not None and isinstance(event, TokenEvent):
                on_token(event.text)

        return self.turn(request, state, on_event)

    def turn(
        self, request: TurnRequest, state: JobState, on_event: Callable[[TurnEvent], None] | None = None
    ) -> TurnResult:
        """Route, build the context window, stream the reply, store both sides of the turn; each step
        reports an event to ``on_event`` (see the module docstring)."""
        from tara_desktop import safety
        from tara_desktop.llm.context_window import window_for
        from tara_desktop.llm.presets import generation_settings
        from tara_desktop.routing.emotion_text import detect_text_emotion, normalize_emotion

        def emit(event: TurnEvent) -> None:
            if on_event is not None:
                on_event(event)

        started = time.perf_counter()
        text = request.text.strip() if isinstance(request.text, str) else ""
        if not text:
            raise TaraError("the message is empty; type or say something first")
        if request.model_path is not None:
            self._check_model(Path(request.model_path))  # a broken --model fails before routing and storing
        with self.turn_lock:
            # 1. the conversation so far
            keep = self._keeps(request)
            conversation: Conversation = self.conversations.open(request.conversation_id, keep=keep)
            if request.replace_from is not None:
                conversation.message(request.replace_from)  # an edit of a message since deleted: say so
            before = request.replace_from
            if request.messages is not None:
                history = [{"role": str(m["role"]), "content": str(m["content"])} for m in request.messages
                           if m.get("role") in ("user", "assistant") and m.get("content")]
                previous_domain = None
            else:
                history = conversation.history(before)
                previous_domain = conversation.previous_domain(before)
            pinned = request.pinned_domain or conversation.pinned_domain

            # 2. emotion and the one routing decision (domain → model, adapter, voice)
            if request.emotion:
                emotion: str | None = normalize_emotion(request.emotion) or request.emotion
                emotion_conf = request.emotion_confidence
            else:
                emotion, emotion_conf = detect_text_emotion(text)
            decision = self.router.route(text, previous_domain=previous_domain, pinned=pinned)
            model_path = request.model_path or self.model_for(decision.model)
            adapter_path: Path | None
            if request.adapter_path is not None:
                adapter_path = request.adapter_path
            elif request.model_path is None and decision.adapter:
                adapter_path = resolve_adapter_file(decision.adapter, self.profile_dir)
            else:
                adapter_path = None
            scale = decision.adapter_scale if request.adapter_path is None else 1.0
            self._check_model(model_path)
            if adapter_path is not None and not adapter_path.is_file():
                raise TaraError(f"adapter file {adapter_path} does not exist; check the path")
            try:
                voice: str | None = str(self.router.voice_for(decision.domain, emotion))
            except (TaraError, KeyError):
                voice = None
            emit(RouteEvent(decision.domain, decision.confidence, decision.reason, bool(decision.degraded),
                            model_path.name, adapter_path.name if adapter_path else None, voice,
                            emotion, emotion_conf))

            # 3. store the user's message (an edit or regenerate replaces the tail now, when it is sent)
            created = conversation.id is None
            if request.pinned_domain is not None and created:
                conversation.pinned_domain = request.pinned_domain
            if before is not None:
                conversation.replace_from(before)
            user_meta: dict[str, Any] = {"emotion": emotion, "emotion_confidence": emotion_conf,
                                         "source": request.source, **(request.meta or {})}
            user_mid = conversation.append("user", text, user_meta)
            created = created and conversation.id is not None
            history.append({"role": "user", "content": text})

            # the sampling settings and the system prompt (read under the turn lock, like the mapping)
            llm = self.configs.app.llm
            overrides = request.generation.as_dict() if request.generation is not None else {}
            settings = generation_settings(model_path, llm, self.profile.store, overrides)  # + the model's preset
            system = request.system_prompt if request.system_prompt is not None else \
                self.router.system_prompt(decision.domain, emotion)

        # 4. the window, then the reply streamed from the engine (one generation at a time)
        summary_key: object = conversation.id if conversation.id is not None else object()
        pieces: list[str] = []
        with self._generation_slot(state), self.pool.lease(model_path, state) as engine:
            engine.set_adapter(adapter_path, scale)
            summary = self.summaries.latest(summary_key) if conversation.id is not None else None
            if summary is None or summary.covers > len(history):
                summary = conversation.summary(len(history))
            window = window_for(engine, settings.max_tokens).build(system, history, summary)
            if window.needs_summary and conversation.id is not None:
                self.summaries.request(summary_key, engine, history, summary, window.first_turn)
            emit(WindowEvent(window.prompt_tokens, len(history) - window.first_turn, window.summary_used,
                             window.first_turn))
            stream = safety.guard(text, decision.domain,  # urgent-symptom notice, health disclaimer
                                  engine.stream_chat(window.messages, settings, state), state)
            try:
                for piece in stream:
                    pieces.append(piece)
                    emit(TokenEvent(piece))
            except Cancelled:  # a listener stopped the turn (a barge-in): keep what was streamed
                state.cancel()
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
            stats = engine.last_stats
        reply = "".join(pieces).strip()
        cancelled = state.cancelled or stats.stop_reason == "cancelled"
        finish = finish_reason(stats.stop_reason, cancelled)

        # 5. store the reply; report where both sides went
        meta: dict[str, Any] = {
            "domain": decision.domain,
            "confidence": round(decision.confidence, 4),
            "reason": decision.reason,
            "degraded": decision.degraded,
            "model": model_path.name,
            "adapter": adapter_path.name if adapter_path else None,
            "voice": voice,
            "emotion": emotion,
            "emotion_confidence": emotion_conf,
            "ttft_s": round(stats.ttft_s, 4),
            "tokens": stats.tokens,
            "tokens_per_s": round(stats.tokens_per_s, 2),
            "prompt_tokens": window.prompt_tokens,
            "stop_reason": stats.stop_reason,
            "finish_reason": finish,
            "cancelled": cancelled,
        }
        mid = conversation.append("assistant", reply, meta)
        emit(StoredEvent(conversation.id if keep else None, user_mid, mid, created))
        if created and conversation.id is not None:
            self.conversations.changed("created", conversation.id)
        elif conversation.id is not None and keep:
            self.conversations.changed("updated", conversation.id)
        log.info(
            "turn: domain=%s model=%s tokens=%d ttft=%.3fs %s",
            decision.domain, model_path.name, stats.tokens, stats.ttft_s, "cancelled" if cancelled else "",
        )
        return TurnResult(
            conversation_id=conversation.id if keep else None,
            message_id=mid,
            reply=reply,
            domain=decision.domain,
            confidence=decision.confidence,
            reason=decision.reason,
            model=model_path.name,
            adapter=adapter_path.name if adapter_path else None,
            emotion=emotion,
            emotion_confidence=emotion_conf,
            ttft_s=stats.ttft_s,
            tokens_per_s=stats.tokens_per_s,
            total_s=time.perf_counter() - started,
            cancelled=cancelled,
            meta=meta,
            user_message_id=user_mid,
            voice=voice,
            prompt_tokens=window.prompt_tokens,
            completion_tokens=stats.tokens,
            finish_reason=finish,
            created=created,
        )


def _title_for(text: str) -> str:  # kept for callers of the old helper
    from tara_desktop.conversation import title_for

    return title_for(text)


__all__ = [
    "Assistant", "Cancelled", "GenerationOverrides", "RouteEvent", "StoredEvent", "TokenEvent", "TurnEvent",
    "TurnRequest", "TurnResult", "WindowEvent", "finish_reason", "merge_mapping", "resolve_adapter_file",
]
