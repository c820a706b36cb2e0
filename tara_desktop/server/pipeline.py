"""One API chat turn through the app's own pipeline, :meth:`tara_desktop.assistant.Assistant.turn`
(:mod:`tara_desktop.turn`).

The request becomes a :class:`~tara_desktop.turn.TurnRequest` with what an API turn needs: the last
user message is the new message and the earlier ones the history (OpenAI clients send the whole
conversation each time); the client's system message, if any, replaces the domain's system prompt; the
client's sampling settings (temperature, top_p, max_tokens, stop, seed) override the app's; and
``store`` is False unless the client asked for the exchange to be kept (then it is kept only with the
profile's ``store_history`` consent, which the pipeline checks).

Model names: ``tara`` routes every message as the app does; ``tara:<domain>`` pins a domain (its mapped
model and adapter); any other name from :meth:`ChatPipeline.model_names` uses that model file with no
adapter (the message is still routed, for the domain's system prompt).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.server.errors import ApiError, model_not_found
from tara_desktop.server.schema import ChatRequest

if TYPE_CHECKING:
    from tara_desktop.assistant import Assistant
    from tara_desktop.turn import TurnEvent, TurnRequest, TurnResult

log = logging.getLogger(__name__)

STORE_HEADER = "x-tara-store"  # "1"/"true": keep this exchange in the profile (with store_history consent)


class ChatPipeline:
    """API turns over one :class:`~tara_desktop.assistant.Assistant`'s services (shared with the app)."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant

    # -- names ------------------------------------------------------------------------------------
    def domains(self) -> list[str]:
        return list(self.assistant.configs.domains)

    def model_names(self) -> dict[str, str]:
        """Installed models a client may name: the user's registered models, the bundled ones present,
        and the models the domain mapping uses (by file name when mapped by path). Name → reference."""
        from tara_desktop import paths
        from tara_desktop.llm.catalog import load_catalog
        from tara_desktop.llm.library import ModelLibrary

        names: dict[str, str] = {}
        try:
            for m in ModelLibrary(self.assistant.profile).models():
                if Path(m.path).is_file():
                    names[m.name] = m.name
        except TaraError:
            pass
        try:
            catalog = load_catalog()
        except TaraError:
            catalog = None
        if catalog is not None:
            bundled = paths.bundled_models_dir()
            for entry in catalog:
                if entry.bundled and (bundled / entry.file).is_file():
                    names.setdefault(entry.id, entry.id)
        mapping = self.assistant.configs.mapping
        for choice in [mapping.default, *mapping.domains.values()]:
            ref = choice.model
            as_path = Path(ref).expanduser()
            if as_path.suffix.lower() == ".gguf" or "/" in ref or "\\" in ref:
                if as_path.is_file():
                    names.setdefault(as_path.name, str(as_path))
            else:
                names.setdefault(ref, ref)
        return names

    def resolve_model(self, name: str) -> tuple[str | None, Path | None]:
        """``(pinned domain, model file)`` for a request's ``model``; 404 for a name that is not served."""
        if name == "tara":
            return None, None
        if name.startswith("tara:"):
            domain = name[len("tara:"):]
            if domain not in self.assistant.configs.domains:
                raise model_not_found(name)
            return domain, None
        ref = self.model_names().get(name)
        if ref is None:
            raise model_not_found(name)
        try:
            return None, self.assistant.model_for(ref)
        except TaraError as exc:
            raise ApiError(404, f"the model {name!r} is not available: {exc}", param="model",
                           code="model_not_found") from None

    # -- one turn ---------------------------------------------------------------------------------
    def turn_request(
        self, request: ChatRequest, pinned: str | None, model_path: Path | None, *, store: bool
    ) -> TurnRequest:
        """The pipeline's request for a checked API request."""
        from tara_desktop.turn import GenerationOverrides, TurnRequest

        systems = [m["content"].strip() for m in request.messages if m["role"] == "system" and m["content"].strip()]
        earlier = [m for m in request.messages[:-1] if m["role"] in ("user", "assistant")]
        o = request.overrides
        return TurnRequest(
            text=request.last_user_text,
            pinned_domain=pinned,
            model_path=model_path,
            source="api",
            generation=GenerationOverrides(
                temperature=o.get("temperature"),
                top_p=o.get("top_p"),
                max_tokens=o.get("max_tokens"),
                stop=o.get("stop"),
                seed=o.get("seed"),
            ),
            messages=earlier,
            system_prompt="\n\n".join(systems) if systems else None,
            store=True if store else False,
        )

    def run(self, turn: TurnRequest, state: JobState, on_event: Callable[[TurnEvent], None]) -> TurnResult:
        """Run one turn; bad input and unavailable models become :class:`ApiError` (4xx/503)."""
        try:
            return self.assistant.turn(turn, state, on_event)
        except ApiError:
            raise
        except TaraError as exc:
            name = exc.__class__.__name__
            if name in ("BudgetError", "ModelLoadError"):
                raise ApiError(503, str(exc), type="server_error", code="model_unavailable") from None
            raise ApiError(400, str(exc)) from None
