"""One turn as one pipeline: route → conversation window → engine → encrypted profile.

Every face (the GUI, the ``tara`` command, the voice loop, the local API server) drives a turn through
:meth:`tara_desktop.assistant.Assistant.turn`, which runs :func:`run_turn` here over the assistant's
services. A reader can follow a turn top to bottom in :func:`run_turn`.

The public API of a turn (stable; the API server builds on it)
--------------------------------------------------------------
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
- ``Assistant.run_turn(request, state, on_token)`` is the same turn with only the tokens.

A turn holds ``Assistant.turn_lock`` while it reads the settings, the mapping and the router (routing,
model resolution, sampling settings) and releases it before it generates; generations run one at a time
(:meth:`~tara_desktop.assistant.Assistant.generation_slot`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tara_desktop.errors import TaraError
from tara_desktop.jobs import Cancelled, JobState

if TYPE_CHECKING:
    from tara_desktop.assistant import Assistant
    from tara_desktop.conversation import Conversation
    from tara_desktop.routing.router import RouteDecision

log = logging.getLogger("tara_desktop.assistant")  # the turn's log lines keep the name they always had

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


def finish_reason(stop_reason: str, cancelled: bool) -> FinishReason:
    """The engine's stop reason in the API's words."""
    if cancelled or stop_reason in ("cancelled", "preempted", "closed"):
        return "cancelled"
    return "length" if stop_reason == "length" else "stop"


# -- the steps of a turn ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Answerer:
    """What answers a message: the model file, the adapter and its scale, and the voice that speaks it."""

    model_path: Path
    adapter_path: Path | None
    adapter_scale: float
    voice: str | None

    @property
    def adapter(self) -> str | None:
        return self.adapter_path.name if self.adapter_path else None


def _history(conversation: Conversation, request: TurnRequest) -> tuple[list[dict[str, str]], str | None]:
    """The turns before this message (a client's own, or the stored conversation's) and their domain."""
    if request.messages is not None:
        history = [{"role": str(m["role"]), "content": str(m["content"])} for m in request.messages
                   if m.get("role") in ("user", "assistant") and m.get("content")]
        return history, None
    before = request.replace_from
    return conversation.history(before), conversation.previous_domain(before)


def _emotion(request: TurnRequest, text: str) -> tuple[str | None, float | None]:
    """The voice's emotion when it heard one, else the words' own."""
    from tara_desktop.routing.emotion_text import detect_text_emotion, normalize_emotion

    if request.emotion:
        return normalize_emotion(request.emotion) or request.emotion, request.emotion_confidence
    return detect_text_emotion(text)


def _answerer(assistant: Assistant, request: TurnRequest, decision: RouteDecision, emotion: str | None) -> _Answerer:
    """The model and adapter files for the decision (or the request's own), checked, and the voice."""
    model_path = request.model_path or assistant.model_for(decision.model)
    adapter_path: Path | None
    if request.adapter_path is not None:
        adapter_path = request.adapter_path
    elif request.model_path is None and decision.adapter:
        adapter_path = assistant.adapter_for(decision.adapter)
    else:
        adapter_path = None
    scale = decision.adapter_scale if request.adapter_path is None else 1.0
    assistant.check_model(model_path)
    if adapter_path is not None and not adapter_path.is_file():
        raise TaraError(f"adapter file {adapter_path} does not exist; check the path")
    try:
        voice: str | None = str(assistant.router.voice_for(decision.domain, emotion))
    except (TaraError, KeyError):
        voice = None
    return _Answerer(model_path, adapter_path, scale, voice)


def run_turn(
    assistant: Assistant, request: TurnRequest, state: JobState, on_event: Callable[[TurnEvent], None] | None = None
) -> TurnResult:
    """Route, build the context window, stream the reply, store both sides of the turn; each step
    reports an event to ``on_event`` (see the module docstring)."""
    from tara_desktop import safety
    from tara_desktop.llm.context_window import window_for
    from tara_desktop.llm.presets import generation_settings

    def emit(event: TurnEvent) -> None:
        if on_event is not None:
            on_event(event)

    started = time.perf_counter()
    text = request.text.strip() if isinstance(request.text, str) else ""
    if not text:
        raise TaraError("the message is empty; type or say something first")
    if request.model_path is not None:
        assistant.check_model(Path(request.model_path))  # a broken --model fails before routing and storing
    with assistant.turn_lock:
        # 1. the conversation so far
        keep = request.store is not False and bool(assistant.profile.consent.get("store_history"))
        conversation = assistant.conversations.open(request.conversation_id, keep=keep)
        if request.replace_from is not None:
            conversation.message(request.replace_from)  # an edit of a message since deleted: say so
        history, previous_domain = _history(conversation, request)
        pinned = request.pinned_domain or conversation.pinned_domain

        # 2. emotion and the one routing decision (domain → model, adapter, voice)
        emotion, emotion_conf = _emotion(request, text)
        decision = assistant.router.route(text, previous_domain=previous_domain, pinned=pinned)
        answerer = _answerer(assistant, request, decision, emotion)
        model_path = answerer.model_path
        emit(RouteEvent(decision.domain, decision.confidence, decision.reason, bool(decision.degraded),
                        model_path.name, answerer.adapter, answerer.voice, emotion, emotion_conf))

        # 3. store the user's message (an edit or regenerate replaces the tail now, when it is sent)
        created = conversation.id is None
        if request.pinned_domain is not None and created:
            conversation.pinned_domain = request.pinned_domain
        if request.replace_from is not None:
            conversation.replace_from(request.replace_from)
        user_meta: dict[str, Any] = {"emotion": emotion, "emotion_confidence": emotion_conf,
                                     "source": request.source, **(request.meta or {})}
        user_mid = conversation.append("user", text, user_meta)
        created = created and conversation.id is not None
        history.append({"role": "user", "content": text})

        # the sampling settings and the system prompt (read under the turn lock, like the mapping)
        llm = assistant.configs.app.llm
        overrides = request.generation.as_dict() if request.generation is not None else {}
        settings = generation_settings(model_path, llm, assistant.profile.store, overrides)  # + the model's preset
        system = request.system_prompt if request.system_prompt is not None else \
            assistant.router.system_prompt(decision.domain, emotion)

    # 4. the window, then the reply streamed from the engine (one generation at a time)
    summaries = assistant.summaries
    summary_key: object = conversation.id if conversation.id is not None else object()
    pieces: list[str] = []
    with assistant.generation_slot(state), assistant.pool.lease(model_path, state) as engine:
        engine.set_adapter(answerer.adapter_path, answerer.adapter_scale)
        summary = summaries.latest(summary_key) if conversation.id is not None else None
        if summary is None or summary.covers > len(history):
            summary = conversation.summary(len(history))
        window = window_for(engine, settings.max_tokens).build(system, history, summary)
        if window.needs_summary and conversation.id is not None:
            summaries.request(summary_key, engine, history, summary, window.first_turn)
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
        "adapter": answerer.adapter,
        "voice": answerer.voice,
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
        assistant.conversations.changed("created", conversation.id)
    elif conversation.id is not None and keep:
        assistant.conversations.changed("updated", conversation.id)
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
        adapter=answerer.adapter,
        emotion=emotion,
        emotion_confidence=emotion_conf,
        ttft_s=stats.ttft_s,
        tokens_per_s=stats.tokens_per_s,
        total_s=time.perf_counter() - started,
        cancelled=cancelled,
        meta=meta,
        user_message_id=user_mid,
        voice=answerer.voice,
        prompt_tokens=window.prompt_tokens,
        completion_tokens=stats.tokens,
        finish_reason=finish,
        created=created,
    )


__all__ = [
    "FinishReason", "GenerationOverrides", "RouteEvent", "StoredEvent", "TokenEvent", "TurnEvent", "TurnRequest",
    "TurnResult", "WindowEvent", "finish_reason", "run_turn",
]
