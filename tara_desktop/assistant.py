"""The assistant: the services of one profile, built once, and the turn that ties them together.

:class:`Assistant` is the composition root: :meth:`Assistant.open` unlocks the user's profile and builds
every service from the configs and the user's settings once (the router, the model pool, the
conversations and their background summaries), and every face (the GUI, the ``tara`` command, the voice
loop, the local API server) drives turns through :meth:`Assistant.turn`. The turn itself, its request,
events and result, is :mod:`tara_desktop.turn`; the stored model mapping is
:mod:`tara_desktop.model_mapping`.

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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tara_desktop import paths
from tara_desktop.config import Configs, ModelChoice, ModelMapping, load_configs
from tara_desktop.conversation import Conversations
from tara_desktop.errors import TaraError
from tara_desktop.jobs import Cancelled, JobState
from tara_desktop.model_mapping import MAPPING_KEY, merge_mapping, resolve_adapter_file, stored_choices
from tara_desktop.turn import (
    GenerationOverrides,
    RouteEvent,
    StoredEvent,
    TokenEvent,
    TurnEvent,
    TurnRequest,
    TurnResult,
    WindowEvent,
    finish_reason,
    run_turn,
)

if TYPE_CHECKING:
    from tara_desktop.llm.context_window import Summary
    from tara_desktop.llm.pool import ModelPool
    from tara_desktop.profile import Profile
    from tara_desktop.routing.router import DomainRouter

log = logging.getLogger(__name__)

SETTINGS_KEY = "config.overrides"  # the user's own settings, merged over configs/config.yaml


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
        check_new_passphrase: bool = False,
    ) -> Assistant:
        """Unlock the profile and build every service from the configs and the user's settings.

        ``check_new_passphrase``: ``passphrase`` was typed by a person; if it creates the profile, a weak one
        is refused (:class:`~tara_desktop.profile.errors.WeakPassphrase`)."""
        from tara_desktop.llm.pool import ModelPool
        from tara_desktop.profile import Profile
        from tara_desktop.routing.router import DomainRouter

        profile = Profile.open(paths.profile_dir(profile_dir), passphrase=passphrase,
                               check_new_passphrase=check_new_passphrase)
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
        return stored_choices(self.profile.store)

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

    def adapter_for(self, name: str) -> Path:
        """The file for a mapped LoRA adapter (:func:`tara_desktop.model_mapping.resolve_adapter_file`)."""
        return resolve_adapter_file(name, self.profile_dir)

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

    def check_model(self, path: Path) -> None:
        """A missing or broken model file is bad input: say so before anything of the turn is stored."""
        if self.pool.is_loaded(path):
            return
        from tara_desktop.llm.model_check import validate_gguf

        if not path.is_file():
            raise TaraError(f"model file {path} does not exist; check the path or run `tara models list`")
        validate_gguf(path)

    @contextlib.contextmanager
    def generation_slot(self, state: JobState) -> Iterator[None]:
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
        reports an event to ``on_event`` (:func:`tara_desktop.turn.run_turn`)."""
        return run_turn(self, request, state, on_event)


# The turn's names, where callers have always found them (they live in tara_desktop.turn).
__all__ = [
    "MAPPING_KEY", "SETTINGS_KEY", "Assistant", "Cancelled", "GenerationOverrides", "RouteEvent", "StoredEvent",
    "TokenEvent", "TurnEvent", "TurnRequest", "TurnResult", "WindowEvent", "finish_reason", "merge_mapping",
    "resolve_adapter_file",
]
