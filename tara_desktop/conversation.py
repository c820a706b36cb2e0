"""A conversation: its history, summaries, title and pinned domain, and rewind / regenerate / edit.

Plain Python over the encrypted profile store (no Qt). The turn pipeline (:mod:`tara_desktop.turn`)
reads a :class:`Conversation` for the window and writes each side of a turn through it; the GUI, the
``tara conversations`` command and the API use :class:`Conversations` for everything across a profile
(list, search, delete, delete all).

Edits never destroy anything until the edited message is sent: :meth:`Conversation.edit_draft` only
returns the text to put back in the box and the message it would replace; the pipeline calls
:meth:`Conversation.replace_from` when the new message is stored. Regenerate is the same thing with the
user message's own text.

Summaries of older turns live in their own sealed table keyed by conversation
(``ProfileStore.get_summary`` / ``set_summary``), so deleting a conversation (or all of them) deletes its
summary too. Earlier versions kept them as ``summary.<id>`` settings; :meth:`Conversations.migrate`
moves them (and deletes those left behind by deleted conversations).
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tara_desktop.errors import TaraError
from tara_desktop.llm.context_window import Summary

if TYPE_CHECKING:
    from tara_desktop.jobs import JobState
    from tara_desktop.profile import Profile
    from tara_desktop.profile.store import Message, ProfileStore

log = logging.getLogger(__name__)

LEGACY_SUMMARY_PREFIX = "summary."
RECORDING_META = "recording_blob"  # a user message's meta key naming the voice recording it came from
TITLE_CHARS = 48


def title_for(text: str) -> str:
    """A conversation's title from its first message: the first words, on one line."""
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


@dataclass(frozen=True)
class EditDraft:
    """What clicking Edit gives back: the text for the box and the message it will replace when sent."""

    text: str
    replaces: int  # the user message id; it and everything after it go when the new text is sent


class Conversation:
    """One conversation of a profile (or a new one, ``id`` None, created by its first stored message).

    ``store`` False keeps it in memory only (history consent off, API requests that ask not to store).
    """

    def __init__(self, store: ProfileStore, cid: int | None = None, *, keep: bool = True) -> None:
        self.store = store
        self.id = cid
        self.keep = keep
        self.title = ""
        self.pinned_domain: str | None = None
        self.messages: list[Message] = []
        self.damaged: list[str] = []
        """Messages that could not be read (a damaged or tampered record): left out, named here."""
        self._summary: Summary | None = None
        if cid is not None:
            self.reload()

    # -- reading ----------------------------------------------------------------------------------
    def reload(self) -> None:
        """Read the conversation from the store (decrypts all its messages)."""
        if self.id is None:
            return
        info = self.store.conversation(self.id)
        self.title = info.title
        self.pinned_domain = info.pinned_domain
        self.damaged = []
        self.messages = list(self.store.messages(self.id, on_damaged="skip", damaged=self.damaged))
        stored = self.store.get_summary(self.id)
        self._summary = None if stored is None else Summary(stored.text, stored.covers)

    def turns(self, before: int | None = None) -> list[Message]:
        """The user and assistant messages with content, oldest first (only those before message
        ``before`` when given)."""
        out = []
        for m in self.messages:
            if before is not None and m.id >= before:
                break
            if m.role in ("user", "assistant") and m.content:
                out.append(m)
        return out

    def history(self, before: int | None = None) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in self.turns(before)]

    def previous_domain(self, before: int | None = None) -> str | None:
        """The domain of the last reply (routing keeps it for a follow-up with no topic of its own)."""
        for m in reversed(self.turns(before)):
            if m.role == "assistant" and (m.meta or {}).get("domain"):
                return str(m.meta["domain"])
        return None

    def summary(self, n_turns: int | None = None) -> Summary | None:
        """The summary of older turns, if it still fits a history of ``n_turns`` turns."""
        s = self._summary
        if s is None or (n_turns is not None and s.covers > n_turns):
            return None
        return s

    def message(self, mid: int) -> Message:
        for m in self.messages:
            if m.id == mid:
                return m
        raise TaraError(f"message {mid} is not in this conversation; it may have been deleted")

    # -- writing ----------------------------------------------------------------------------------
    def append(self, role: str, content: str, meta: dict[str, Any] | None = None) -> int | None:
        """Store a message (creating the conversation on its first one); None when not kept."""
        if not self.keep:
            return None
        if self.id is None:  # the conversation and its first message in one transaction
            title = title_for(content)
            cid, mid = self.store.start_conversation(title, role, content, meta, pinned_domain=self.pinned_domain)
            self.id, self.title = int(cid), title
        else:
            mid = int(self.store.append_message(self.id, role, content, meta))
        self.messages.append(self.store.message(mid))
        return mid

    def save_summary(self, summary: Summary) -> None:
        self._summary = summary
        if self.keep and self.id is not None:
            self.store.set_summary(self.id, summary.text, summary.covers)

    def rename(self, title: str) -> None:
        title = " ".join(str(title).split())
        if not title:
            raise TaraError("a conversation needs a name; type one")
        if self.id is not None:
            self.store.rename_conversation(self.id, title)
        self.title = title

    def pin(self, domain: str | None) -> None:
        """Answer every message of this conversation in ``domain`` (None: let the router choose)."""
        if self.id is not None and self.keep:
            self.store.set_pinned_domain(self.id, domain)
        self.pinned_domain = domain

    # -- rewind, regenerate, edit -------------------------------------------------------------------
    def edit_draft(self, user_message_id: int) -> EditDraft:
        """The text of a user message to edit. Nothing is deleted (cancelling the edit loses nothing)."""
        m = self.message(user_message_id)
        if m.role != "user":
            raise TaraError("only your own messages can be edited")
        return EditDraft(m.content, m.id)

    def regenerate_draft(self, reply_message_id: int) -> EditDraft:
        """The user message a reply answered, to send again in place of it and the reply."""
        before = [m for m in self.messages if m.id < reply_message_id]
        self.message(reply_message_id)
        user = next((m for m in reversed(before) if m.role == "user"), None)
        if user is None:
            raise TaraError("this reply has no message before it to answer again")
        return EditDraft(user.content, user.id)

    def replace_from(self, message_id: int) -> int:
        """Delete message ``message_id`` and everything after it (when an edit or a regenerate is sent);
        returns how many messages went. A summary covering deleted turns goes too."""
        if self.id is None:
            return 0
        self.message(message_id)
        older = [m.id for m in self.messages if m.id < message_id]
        n = int(self.store.delete_messages_after(self.id, older[-1] if older else 0))
        kept = [m for m in self.messages if m.id < message_id]
        gone = [m for m in self.messages if m.id >= message_id]
        self.messages = kept
        _delete_recordings(self.store, gone)
        if self._summary is not None and self._summary.covers > len(self.turns()):
            self._summary = None
            self.store.delete_summary(self.id)
        return n


def _recording_ids(messages: list[Message]) -> list[int]:
    out = []
    for m in messages:
        blob = (m.meta or {}).get(RECORDING_META)
        if isinstance(blob, int):
            out.append(blob)
    return out


def _delete_recordings(store: ProfileStore, messages: list[Message]) -> None:
    """Delete the voice recordings the messages were spoken in (kept only with consent)."""
    for bid in _recording_ids(messages):
        try:
            store.delete_blob(bid)
        except TaraError:
            pass  # already deleted


@dataclass(frozen=True)
class ConversationSummary:
    """A line of the conversation list."""

    id: int
    title: str
    created_at: float
    updated_at: float
    pinned_domain: str | None


class Conversations:
    """Every conversation of a profile: open, list, search, delete. Thread-safe (the store is).

    ``on_change(kind, conversation_id)`` is called after each change made through this object
    (``"created"``, ``"updated"``, ``"deleted"``, ``"deleted_all"``), from the thread that made it; the
    GUI's evented model turns those into signals on the GUI thread.
    """

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.store = profile.store
        self._listeners: list[Callable[[str, int | None], None]] = []
        self._lock = threading.Lock()

    # -- change notification --------------------------------------------------------------------------
    def subscribe(self, listener: Callable[[str, int | None], None]) -> Callable[[], None]:
        """Call ``listener(kind, conversation_id)`` after each change; returns the unsubscribe function."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def changed(self, kind: str, cid: int | None) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(kind, cid)
            except Exception:
                log.exception("a conversation listener failed")

    # -- reading --------------------------------------------------------------------------------------
    def open(self, cid: int | None, *, keep: bool = True) -> Conversation:
        return Conversation(self.store, cid, keep=keep)

    def list(self) -> list[ConversationSummary]:
        return [
            ConversationSummary(c.id, c.title, c.created_at, c.updated_at, c.pinned_domain)
            for c in self.store.list_conversations()
        ]

    def search(self, query: str, state: JobState | None = None) -> builtins.list[ConversationSummary]:
        """Conversations whose title or any message contains ``query`` (case-insensitive), newest first.
        Decrypts every message in memory (no plaintext index on disk): run it off the GUI thread."""
        q = query.strip().casefold()
        conversations = self.list()
        if not q:
            return conversations
        out = []
        for c in conversations:  # one conversation at a time, so a search made stale stops early
            if state is not None:
                state.check()
            time.sleep(0)  # hand the interpreter to the GUI thread between conversations
            if q in (c.title or "").casefold() or any(
                q in m.content.casefold() for m in self.store.messages(c.id, on_damaged="skip")
            ):
                out.append(c)
        return out

    def most_recent(self) -> int | None:
        convs = self.store.list_conversations()
        return max(convs, key=lambda c: c.updated_at).id if convs else None

    # -- changes --------------------------------------------------------------------------------------
    def rename(self, cid: int, title: str) -> None:
        Conversation(self.store, cid).rename(title)
        self.changed("updated", cid)

    def pin(self, cid: int, domain: str | None) -> None:
        self.store.set_pinned_domain(cid, domain)
        self.changed("updated", cid)

    def delete(self, cid: int) -> None:
        """Delete a conversation with its messages, summary and the voice recordings of its messages."""
        messages = self.store.messages(cid, on_damaged="skip")
        _delete_recordings(self.store, messages)
        self.store.delete_summary(cid)
        self.store.delete_conversation(cid)
        self.store.delete_setting(f"{LEGACY_SUMMARY_PREFIX}{cid}")
        self.changed("deleted", cid)

    def delete_all(self) -> int:
        """Delete every conversation (messages, summaries, their recordings); returns how many."""
        for info in self.store.list_conversations():
            _delete_recordings(self.store, self.store.messages(info.id, on_damaged="skip"))
        n = int(self.store.delete_all_conversations())
        self.migrate()  # drops any legacy summary settings left behind
        self.changed("deleted_all", None)
        return n

    def migrate(self) -> int:
        """Move ``summary.<id>`` settings (older versions) into the summaries table; delete the ones
        whose conversation is gone. Returns how many settings were removed."""
        try:
            settings = self.store.settings(on_damaged="skip")
        except TaraError:
            return 0
        legacy = {k: v for k, v in settings.items() if k.startswith(LEGACY_SUMMARY_PREFIX)}
        if not legacy:
            return 0
        existing = {c.id for c in self.store.list_conversations()}
        for key, value in legacy.items():
            try:
                cid = int(key[len(LEGACY_SUMMARY_PREFIX):])
            except ValueError:
                cid = -1
            if cid in existing and isinstance(value, dict) and self.store.get_summary(cid) is None:
                try:
                    self.store.set_summary(cid, str(value["text"]), int(value["covers"]))
                except (KeyError, TypeError, ValueError, TaraError):
                    log.warning("a damaged legacy summary was dropped")
            self.store.delete_setting(key)
        return len(legacy)


__all__ = ["Conversation", "ConversationSummary", "Conversations", "EditDraft", "title_for"]
