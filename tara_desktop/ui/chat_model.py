"""The evented chat model: the one truth the chat views show (the napari habit in shared/STYLE.md).

:class:`ChatModel` holds the open conversation (id, title, pinned domain, the messages shown), the
conversation list (or the search results), the edit in progress and the running turn. The chat pane,
the conversation list and the voice controller subscribe to its signals and call its public methods;
none of them reads the store or calls another view. Turns, conversation loads, list refreshes and
searches run off the GUI thread on the window's :class:`~tara_desktop.ui.workers.JobHost`; a result
that arrives after a newer request (another conversation opened, the search text changed) is dropped.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from PySide6.QtCore import QObject, Signal

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.ui.workers import Emit, JobHost, JobThread

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from tara_desktop.assistant import Assistant
    from tara_desktop.conversation import Conversation, Conversations, ConversationSummary, EditDraft
    from tara_desktop.turn import StoredEvent, TurnRequest, TurnResult

log = logging.getLogger(__name__)


@dataclass
class ShownMessage:
    """A message as the chat shows it (``id`` None until the store gives it one)."""

    role: str
    content: str
    meta: dict[str, object] = field(default_factory=dict)
    id: int | None = None


EMOTION_FROM_TEXT = "text"  # the emotion engine of a typed turn: the pipeline reads the feeling from the words


def result_meta(result: TurnResult, emotion_engine: str | None = None) -> dict[str, object]:
    """The meta line of a reply from a ``TurnResult``; ``emotion_engine`` names what detected its emotion
    (a voice engine such as "speechbrain", or :data:`EMOTION_FROM_TEXT`; None when not known)."""
    return {"domain": result.domain, "confidence": result.confidence, "model": result.model, "adapter": result.adapter,
            "emotion": result.emotion, "ttft_s": result.ttft_s, "tokens_per_s": result.tokens_per_s,
            "cancelled": result.cancelled, "emotion_engine": emotion_engine}


def emotion_engine_of(user_meta: Mapping[str, object]) -> str | None:
    """What detected the emotion of a stored turn, from its user message: the engine the voice recorded
    there, else the words for a typed message (None: not known)."""
    engine = user_meta.get("emotion_engine")
    if isinstance(engine, str) and engine:
        return engine
    return EMOTION_FROM_TEXT if user_meta.get("source") == "typed" else None


class ChatModel(QObject):
    """What the chat shows, and the actions on it.

    Signals:
        list_changed(object): the conversations to list (``ConversationSummary``; search results while
            a search is on).
        conversation_shown(object): the open conversation changed or was reloaded: redraw from
            :attr:`messages` (the id, title and pin are attributes too).
        message_added(object): a ``ShownMessage`` appended (the user's, or the empty reply to stream into).
        reply_token(str): a piece of the reply being streamed into the last message.
        reply_finished(object): the last message is complete (its ``ShownMessage``).
        ids_assigned(): the messages of the turn got their ids from the store.
        route_decided(object): the turn's ``RouteEvent`` (domain, model, voice...).
        turn_finished(object): the ``TurnResult`` of a completed (or stopped) turn.
        turn_failed(str): why a turn failed, in one sentence.
        busy_changed(bool): a reply is being generated.
        conversation_created(int): the first message of a new chat created this conversation.
        pin_changed(object): the pinned domain (or None).
        title_changed(str): the open conversation's title.
        editing_changed(object): the user message id being edited, or None.
        draft_ready(str): text to put back in the composer (an edit).
        error(str): something the user should see.
    """

    list_changed = Signal(object)
    conversation_shown = Signal(object)
    message_added = Signal(object)
    reply_token = Signal(str)
    reply_finished = Signal(object)
    ids_assigned = Signal()
    route_decided = Signal(object)
    turn_finished = Signal(object)
    turn_failed = Signal(str)
    busy_changed = Signal(bool)
    conversation_created = Signal(int)
    pin_changed = Signal(object)
    title_changed = Signal(str)
    editing_changed = Signal(object)
    draft_ready = Signal(str)
    error = Signal(str)
    _store_changed = Signal(str, object)  # from any thread, delivered queued on the GUI thread

    def __init__(self, jobs: JobHost, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.assistant: Assistant | None = None
        self.conversation_id: int | None = None
        self.title = ""
        self.pinned_domain: str | None = None
        self.messages: list[ShownMessage] = []
        self.conversations: list[ConversationSummary] = []
        self.query = ""
        self.editing: int | None = None
        self.model_override: Path | None = None  # a model file that replaces the mapping's (smoke, tests)
        self.loading = False
        self._job: JobThread | None = None
        self._view = 0  # bumps when another conversation is shown: late results for the old one are dropped
        self._list_seq = 0
        self._unsubscribe: Callable[[], None] | None = None
        self._list_job: JobThread | None = None
        self._closed = False
        self._store_changed.connect(self._on_store_changed)

    def shutdown(self) -> None:
        """The window is closing: stop listening and start no more reads (the running turn is stopped
        and waited for by the job host)."""
        self._closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # ---- wiring --------------------------------------------------------------------------------------
    def set_assistant(self, assistant: Assistant | None) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.assistant = assistant
        if assistant is not None:
            self._unsubscribe = assistant.conversations.subscribe(self._store_changed.emit)
        self.refresh_list()

    @property
    def service(self) -> Conversations | None:
        return None if self.assistant is None else self.assistant.conversations

    @property
    def busy(self) -> bool:
        return self._job is not None

    # ---- the list (and search) -----------------------------------------------------------------------
    def search(self, query: str) -> None:
        """Show the conversations mentioning ``query`` ("" shows them all); runs off the GUI thread."""
        self.query = query.strip()
        self.refresh_list()

    def refresh_list(self) -> None:
        """Reload the list (or the search results) off the GUI thread; only the newest request is applied."""
        self._list_seq += 1
        seq = self._list_seq
        if self._closed:
            return
        service = self.service
        if service is None:
            self.conversations = []
            self.list_changed.emit([])
            return
        query = self.query

        def run(state: JobState, _emit: Emit) -> list[ConversationSummary]:
            return service.search(query, state) if query else service.list()

        if self._list_job is not None:
            self._list_job.cancel()  # its result would be dropped anyway: stop decrypting for it
        job = self._list_job = self.jobs.start(run, "search" if query else "list-conversations")
        job.done.connect(functools.partial(self._list_done, job))
        job.succeeded.connect(functools.partial(self._apply_list, seq))
        job.failed.connect(self.error)

    def _list_done(self, job: JobThread) -> None:
        if self._list_job is job:
            self._list_job = None

    def _apply_list(self, seq: int, found: list[ConversationSummary]) -> None:
        if seq != self._list_seq:  # a newer search or refresh was asked for meanwhile
            return
        self.conversations = list(found)
        self.list_changed.emit(self.conversations)

    def _on_store_changed(self, kind: str, cid: object) -> None:
        if self._closed:
            return
        if kind in ("deleted", "deleted_all") and (kind == "deleted_all" or cid == self.conversation_id):
            if not self.busy:
                self.open(None)
        self.refresh_list()

    # ---- showing a conversation ----------------------------------------------------------------------
    def open(self, conversation_id: int | None) -> None:
        """Show a conversation (None: a new, empty chat). Its messages are read and decrypted off the
        GUI thread; the view redraws when they arrive."""
        if self.busy and conversation_id != self.conversation_id:
            self.stop()
        self._view += 1
        view = self._view
        self.conversation_id = conversation_id
        self.messages = []
        self.title = ""
        self.pinned_domain = None
        self._set_editing(None)
        self.loading = conversation_id is not None and self.service is not None and not self._closed
        self.conversation_shown.emit(self)
        self.pin_changed.emit(None)
        if not self.loading:
            self.title_changed.emit("New chat")
            return
        service = self.service
        assert service is not None and conversation_id is not None  # what ``loading`` means

        def run(state: JobState, _emit: Emit) -> Conversation:
            return service.open(conversation_id)

        job = self.jobs.start(run, "open-conversation")
        job.succeeded.connect(functools.partial(self._apply_conversation, view))
        job.failed.connect(functools.partial(self._load_failed, view))

    def reload(self) -> None:
        self.open(self.conversation_id)

    def _apply_conversation(self, view: int, conv: Conversation) -> None:
        if view != self._view:  # another conversation was opened meanwhile
            return
        self.loading = False
        self.title = conv.title or "Untitled"
        self.pinned_domain = conv.pinned_domain
        self.messages = []
        engine: str | None = None
        for m in conv.messages:
            if m.role not in ("user", "assistant"):
                continue
            meta: dict[str, object] = dict(m.meta)
            if m.role == "user":
                engine = emotion_engine_of(meta)
            elif engine is not None:
                meta.setdefault("emotion_engine", engine)  # the reply says what its turn's emotion came from
            self.messages.append(ShownMessage(m.role, m.content, meta, m.id))
        self.conversation_shown.emit(self)
        self.title_changed.emit(self.title)
        self.pin_changed.emit(self.pinned_domain)

    def _load_failed(self, view: int, message: str) -> None:
        if view == self._view:
            self.loading = False
            self.error.emit(message)

    # ---- pin, rename, delete ---------------------------------------------------------------------------
    def pin(self, domain: str | None) -> None:
        """Pin the open conversation (a new chat keeps the pin for its first message)."""
        self.pinned_domain = domain
        if self.conversation_id is not None and self.service is not None:
            try:
                self.service.pin(self.conversation_id, domain)
            except TaraError as exc:
                self.error.emit(str(exc))
        self.pin_changed.emit(domain)

    def rename(self, cid: int, title: str) -> None:
        if self.service is None:
            return
        try:
            self.service.rename(cid, title)
        except TaraError as exc:
            self.error.emit(str(exc))
            return
        self.conversations = [_retitled(c, title) if c.id == cid else c for c in self.conversations]
        self.list_changed.emit(self.conversations)
        if cid == self.conversation_id:
            self.title = title
            self.title_changed.emit(title)

    def delete(self, cid: int) -> None:
        """Delete a conversation (messages, summary, recordings); a new chat is shown if it was open."""
        if self.service is None:
            return
        if cid == self.conversation_id and self.busy:
            self.stop()
            if self._job is not None:
                self._job.wait()
        try:
            self.service.delete(cid)
        except TaraError as exc:
            self.error.emit(str(exc))
            return
        self.conversations = [c for c in self.conversations if c.id != cid]
        self.list_changed.emit(self.conversations)
        if cid == self.conversation_id:
            self.open(None)

    # ---- a turn -----------------------------------------------------------------------------------------
    def request(self, text: str, *, emotion: str | None = None, emotion_confidence: float | None = None,
                source: Literal["typed", "voice"] = "typed", model_path: Path | None = None) -> TurnRequest:
        """The ``TurnRequest`` for ``text`` in the open conversation (with the pin and an edit in progress)."""
        from tara_desktop.turn import TurnRequest

        return TurnRequest(text=text, conversation_id=self.conversation_id, emotion=emotion,
                           emotion_confidence=emotion_confidence, pinned_domain=self.pinned_domain,
                           source=source, model_path=model_path or self.model_override,
                           replace_from=self.editing)

    def send(self, text: str, *, emotion: str | None = None, emotion_confidence: float | None = None,
             source: Literal["typed", "voice"] = "typed", model_path: Path | None = None,
             emotion_engine: str | None = None) -> bool:
        """Show ``text`` as the user's message and stream the reply below it; False when not sent. Without
        an ``emotion`` the pipeline reads it from the words; with one, ``emotion_engine`` says what heard it."""
        text = text.strip()
        if not text or self.busy or self.assistant is None:
            return False
        request = self.request(text, emotion=emotion, emotion_confidence=emotion_confidence, source=source,
                               model_path=model_path)
        assistant = self.assistant

        def run(state: JobState, emit: Emit) -> TurnResult:
            return assistant.turn(request, state, emit)

        job = self.jobs.start(run, "chat-turn")
        self.begin_external_turn(job, text)
        job.partial.connect(self.apply_event)
        engine = emotion_engine if emotion else EMOTION_FROM_TEXT
        job.succeeded.connect(functools.partial(self._on_turn_succeeded, engine))
        job.failed.connect(self.fail_turn)
        job.cancelled.connect(self._on_cancelled)
        return True

    def begin_external_turn(self, job: JobThread, text: str | None = None) -> None:
        """A turn runs on ``job`` (typed here, or a voice turn): Stop and busy follow it. With ``text``,
        the user's message is shown now (a voice turn shows it when the transcript arrives)."""
        self._job = job
        job.done.connect(self._on_job_done)
        if self.editing is not None:  # the edited message and what follows are replaced by this turn
            cut = next((i for i, m in enumerate(self.messages) if m.id == self.editing), len(self.messages))
            self.messages = self.messages[:cut]
            self._set_editing(None)
            self.conversation_shown.emit(self)
        if text is not None:
            self.show_user_message(text)
        self.busy_changed.emit(True)

    def show_user_message(self, text: str) -> None:
        """Show what the person said and an empty reply to stream into."""
        for m in (ShownMessage("user", text), ShownMessage("assistant", "")):
            self.messages.append(m)
            self.message_added.emit(m)

    def _reply(self) -> ShownMessage | None:
        last = self.messages[-1] if self.messages else None
        return last if last is not None and last.role == "assistant" and last.id is None else None

    def apply_event(self, event: object) -> None:
        """One event of the turn pipeline (a ``TurnEvent``: route, window, token, stored), on the GUI thread."""
        from tara_desktop.turn import RouteEvent, StoredEvent, TokenEvent

        if isinstance(event, TokenEvent):
            self.apply_token(event.text)
        elif isinstance(event, RouteEvent):
            reply = self._reply()
            if reply is not None:
                reply.meta.update(domain=event.domain, model=event.model)
            self.route_decided.emit(event)
        elif isinstance(event, StoredEvent):
            self._apply_ids(event)

    def apply_token(self, token: str) -> None:
        reply = self._reply()
        if reply is not None:
            reply.content += token
        self.reply_token.emit(token)

    def _apply_ids(self, event: StoredEvent) -> None:
        cid = event.conversation_id
        if len(self.messages) >= 2 and self.messages[-1].role == "assistant":
            self.messages[-2].id, self.messages[-1].id = event.user_message_id, event.message_id
        created = event.created and cid is not None and self.conversation_id is None
        if cid is not None:
            self.conversation_id = int(cid)
        self.ids_assigned.emit()
        if created and cid is not None:
            import time

            from tara_desktop.conversation import ConversationSummary, title_for

            first = next((m.content for m in self.messages if m.role == "user"), "")
            self.title = title_for(first)
            self.title_changed.emit(self.title)
            if not self.query:  # listed at once; the refresh the store's change notice starts confirms it
                at = time.time()
                self.conversations = [ConversationSummary(int(cid), self.title, at, at, self.pinned_domain),
                                      *[c for c in self.conversations if c.id != cid]]
                self.list_changed.emit(self.conversations)
            self.conversation_created.emit(int(cid))

    def _on_turn_succeeded(self, emotion_engine: str | None, result: TurnResult) -> None:
        self.finish_turn(result, emotion_engine=emotion_engine)

    def finish_turn(self, result: TurnResult, *, emotion_engine: str | None = None) -> None:
        """The turn's ``TurnResult`` arrived: complete the reply and tell the views. ``emotion_engine``:
        what detected the turn's emotion (a voice turn passes its ``VoiceTurnResult.emotion_engine``)."""
        last = self.messages[-1] if self.messages and self.messages[-1].role == "assistant" else None
        if last is not None:
            last.content = result.reply or last.content
            last.meta = result_meta(result, emotion_engine)
            if result.message_id is not None:
                last.id = result.message_id
            self.reply_finished.emit(last)
        if result.conversation_id is not None and self.conversation_id is None:
            self.conversation_id = result.conversation_id
        self.turn_finished.emit(result)

    def fail_turn(self, message: str) -> None:
        reply = self._reply()
        if reply is not None and not reply.content:
            reply.content = "*(no reply)*"
            self.reply_finished.emit(reply)
        self.turn_failed.emit(message)

    def _on_cancelled(self) -> None:
        reply = self._reply()
        if reply is not None:
            reply.meta["cancelled"] = True
            self.reply_finished.emit(reply)

    def _on_job_done(self) -> None:
        self._job = None
        self.busy_changed.emit(False)

    def stop(self) -> None:
        if self._job is not None:
            self._job.cancel()

    # ---- regenerate and edit ------------------------------------------------------------------------
    def _conversation(self) -> Conversation:
        """The open conversation as the service sees it, built from what is shown (no store read)."""
        from tara_desktop.conversation import Conversation
        from tara_desktop.profile.store import Message

        assert self.assistant is not None, "regenerate and edit need an open profile"
        conv = Conversation(self.assistant.profile.store, None)
        conv.id = self.conversation_id
        conv.messages = [Message(m.id, self.conversation_id or 0, m.role, m.content, dict(m.meta), 0.0)
                         for m in self.messages if m.id is not None]
        return conv

    def _draft(self, kind: Literal["edit", "regenerate"], message_id: int) -> EditDraft | None:
        """The draft that edits (or regenerates) a shown message, now marked as being edited; None when
        there is none to make (a reply runs, no conversation is open, or the service said why: an error)."""
        if self.busy or self.assistant is None or self.conversation_id is None:
            return None
        try:
            conversation = self._conversation()
            if kind == "edit":
                draft = conversation.edit_draft(message_id)
            else:
                draft = conversation.regenerate_draft(message_id)
        except TaraError as exc:
            self.error.emit(str(exc))
            return None
        self._set_editing(draft.replaces)
        return draft

    def regenerate(self, reply_message_id: int) -> None:
        """Answer the user message before this reply again, in place of the reply."""
        draft = self._draft("regenerate", reply_message_id)
        if draft is not None and not self.send(draft.text):
            self._set_editing(None)

    def begin_edit(self, user_message_id: int) -> None:
        """Put a user message back in the composer. Nothing is deleted: sending replaces it and what
        follows; :meth:`cancel_edit` (or opening another conversation) keeps everything."""
        draft = self._draft("edit", user_message_id)
        if draft is not None:
            self.draft_ready.emit(draft.text)

    def cancel_edit(self) -> None:
        self._set_editing(None)

    def _set_editing(self, mid: int | None) -> None:
        if mid != self.editing:
            self.editing = mid
            self.editing_changed.emit(mid)


def _retitled(c: ConversationSummary, title: str) -> ConversationSummary:
    from dataclasses import replace

    return replace(c, title=title)
