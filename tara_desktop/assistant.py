"""One turn end to end: router → conversation window → engine → encrypted profile.

:class:`Assistant` is the composition root: it builds every service from the configs and the user's
profile once, and both faces (the GUI and the ``tara`` command) drive turns through it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tara_desktop import paths
from tara_desktop.config import Configs, ModelChoice, ModelMapping, load_configs
from tara_desktop.errors import TaraError
from tara_desktop.jobs import Cancelled, JobState

log = logging.getLogger(__name__)

SETTINGS_KEY = "config.overrides"  # the user's own settings, merged over configs/config.yaml
MAPPING_KEY = "model_mapping.overrides"  # domain -> {"model", "adapter", "adapter_scale"}


@dataclass(frozen=True)
class TurnRequest:
    """What the person said, and how they want it answered."""

    text: str
    conversation_id: int | None = None
    emotion: str | None = None
    emotion_confidence: float | None = None
    pinned_domain: str | None = None
    model_path: Path | None = None
    adapter_path: Path | None = None
    source: Literal["typed", "voice"] = "typed"


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


class Assistant:
    """The services for one profile, and the turn that ties them together.

    Build it with :meth:`open`; close it when done (it unloads models and stops the summariser).
    """

    def __init__(self, configs: Configs, profile: Any, router: Any, pool: Any) -> None:
        from tara_desktop.llm.context_window import SummaryWorker

        self.configs = configs
        self.profile = profile
        self.router = router
        self.pool = pool
        self.summaries = SummaryWorker()
        self._lock = threading.Lock()
        self._mapping_seen: Any = profile.store.get_setting(MAPPING_KEY)

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
        except BaseException:
            profile.close()
            raise
        return cls(configs, profile, router, pool)

    @staticmethod
    def _load_configs(profile: Any, folder: Path | None) -> Configs:
        overrides = profile.store.get_setting(SETTINGS_KEY) or {}
        configs = load_configs(folder, overrides)
        configs.mapping = merge_mapping(configs.mapping, profile.store.get_setting(MAPPING_KEY))
        return configs

    def _refresh_mapping(self) -> None:
        """Pick up mapping changes made since the last turn (an export registered for a domain, the Models
        page, another process) so the next message uses them with no restart."""
        current = self.profile.store.get_setting(MAPPING_KEY)
        if current != self._mapping_seen:
            self._mapping_seen = current
            shipped = load_configs(self.configs.folder).mapping
            self.configs.mapping = merge_mapping(shipped, current)
            self.router.mapping = self.configs.mapping

    def reload_settings(self) -> None:
        """Apply changed settings or mappings (Settings/Models pages, a new export) with no restart."""
        from tara_desktop.routing.router import DomainRouter

        configs = self._load_configs(self.profile, self.configs.folder)
        self.configs = configs
        self.router = DomainRouter.from_configs(configs)
        self._mapping_seen = self.profile.store.get_setting(MAPPING_KEY)
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

    # -- one turn ---------------------------------------------------------------------------------
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

    def run_turn(
        self, request: TurnRequest, state: JobState, on_token: Callable[[str], None] | None = None
    ) -> TurnResult:
        """Route, build the context window, stream the reply, store both sides of the turn.

        ``on_token`` receives each piece of the reply as it is generated. Cancelling ``state`` stops the
        reply within a token; the partial reply is kept (marked cancelled). Raises :class:`TaraError` for
        an empty message, an unknown domain, or a model that is missing, broken or too big.
        """
        from tara_desktop.llm.context_window import Summary, window_for
        from tara_desktop.llm.engine import GenerationSettings
        from tara_desktop.routing.emotion_text import detect_text_emotion, normalize_emotion

        started = time.perf_counter()
        text = request.text.strip() if isinstance(request.text, str) else ""
        if not text:
            raise TaraError("the message is empty; type or say something first")
        store = self.profile.store
        keep_history = bool(self.profile.consent.get("store_history"))
        self._refresh_mapping()

        cid = request.conversation_id
        history: list[dict[str, str]] = []
        previous_domain: str | None = None
        pinned = request.pinned_domain
        if cid is not None:
            info = store.conversation(cid)
            pinned = pinned or info.pinned_domain
            for message in store.messages(cid):
                if message.role in ("user", "assistant") and message.content:
                    history.append({"role": message.role, "content": message.content})
                    if message.role == "assistant" and (message.meta or {}).get("domain"):
                        previous_domain = message.meta["domain"]

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

        if keep_history and cid is None:
            cid = store.create_conversation(_title_for(text))
        user_meta = {"emotion": emotion, "emotion_confidence": emotion_conf, "source": request.source}
        if keep_history and cid is not None:
            store.append_message(cid, "user", text, user_meta)
        history.append({"role": "user", "content": text})

        llm = self.configs.app.llm
        settings = GenerationSettings.from_llm_settings(llm)
        system = self.router.system_prompt(decision.domain, emotion)
        pieces: list[str] = []
        with self._lock, self.pool.lease(model_path, state) as engine:
            engine.set_adapter(adapter_path, scale)
            summary_key = cid if cid is not None else id(request)
            saved = store.get_setting(f"summary.{cid}") if cid is not None else None
            summary = self.summaries.latest(summary_key) or (
                Summary(saved["text"], int(saved["covers"])) if isinstance(saved, dict) else None
            )
            window = window_for(engine, settings.max_tokens).build(system, history, summary)
            if window.needs_summary and cid is not None:
                self.summaries.request(summary_key, engine, history, summary, window.first_turn)
            for piece in engine.stream_chat(window.messages, settings, state):
                pieces.append(piece)
                if on_token is not None:
                    on_token(piece)
            stats = engine.last_stats
        reply = "".join(pieces).strip()
        cancelled = state.cancelled or stats.stop_reason == "cancelled"
        latest = self.summaries.latest(summary_key)
        if latest is not None and cid is not None and latest != summary:
            store.set_setting(f"summary.{cid}", {"text": latest.text, "covers": latest.covers})

        meta: dict[str, Any] = {
            "domain": decision.domain,
            "confidence": round(decision.confidence, 4),
            "reason": decision.reason,
            "degraded": decision.degraded,
            "model": model_path.name,
            "adapter": adapter_path.name if adapter_path else None,
            "emotion": emotion,
            "emotion_confidence": emotion_conf,
            "ttft_s": round(stats.ttft_s, 4),
            "tokens": stats.tokens,
            "tokens_per_s": round(stats.tokens_per_s, 2),
            "prompt_tokens": window.prompt_tokens,
            "stop_reason": stats.stop_reason,
            "cancelled": cancelled,
        }
        mid: int | None = None
        if keep_history and cid is not None:
            mid = store.append_message(cid, "assistant", reply, meta)
        log.info(
            "turn: domain=%s model=%s tokens=%d ttft=%.3fs %s",
            decision.domain, model_path.name, stats.tokens, stats.ttft_s, "cancelled" if cancelled else "",
        )
        return TurnResult(
            conversation_id=cid,
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
        )


def _title_for(text: str) -> str:
    first_line = " ".join(text.split())
    return first_line if len(first_line) <= 48 else first_line[:47].rstrip() + "…"


__all__ = ["Assistant", "Cancelled", "TurnRequest", "TurnResult", "merge_mapping", "resolve_adapter_file"]
