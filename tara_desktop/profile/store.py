"""``profile.store``: conversations, messages, settings and blobs, each value sealed on its row."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from tara_desktop.profile import ledger
from tara_desktop.profile.audit import AuditTrail
from tara_desktop.profile.errors import ProfileError, RecordDamaged
from tara_desktop.profile.vault import Vault, dumps, loads, now

log = logging.getLogger(__name__)

KIND_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
DOMAIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MISSING = object()
T = TypeVar("T")


@dataclass(frozen=True)
class ConversationInfo:
    id: int
    title: str
    created_at: float
    updated_at: float
    pinned_domain: str | None
    damaged: bool = False  # the title failed its integrity check; the title reads as ""


@dataclass(frozen=True)
class Message:
    id: int
    conversation_id: int
    role: str
    content: str
    meta: dict[str, Any]
    created_at: float


@dataclass(frozen=True)
class BlobInfo:
    id: int
    kind: str
    name: str
    size: int
    created_at: float


def _ts(value: Any) -> float:
    """A clear timestamp column; 0.0 if it was retyped outside TARA (it is not what protects data)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _json(value: Any, what: str) -> bytes:
    try:
        return dumps(value)
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"{what} must be JSON values (str, number, bool, None, list, dict with str keys)") from exc


def _check_text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ProfileError(f"{what} must be text, not {type(value).__name__}")
    return value


def _tolerant(
    rows: list[Any], read: Callable[[tuple[Any, ...]], T], on_damaged: str, damaged: list[str] | None
) -> list[T]:
    """Read each row; a damaged one raises, or is skipped (and described in ``damaged``)."""
    out: list[T] = []
    for row in rows:
        try:
            out.append(read(tuple(row)))
        except RecordDamaged as exc:
            if on_damaged == "raise":
                raise
            log.warning("%s.%s failed its integrity check; skipped", exc.table, exc.record_id)
            if damaged is not None:
                damaged.append(str(exc))
    return out


# A conversation's summary of its older turns (user content: sealed like a message). The foreign key
# deletes it with its conversation on every delete path (``PRAGMA foreign_keys`` is on).
SUMMARIES_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS summaries ("
    "conversation_id INTEGER PRIMARY KEY REFERENCES conversations(id) ON DELETE CASCADE, "
    "updated_at REAL NOT NULL, gen INTEGER NOT NULL, data BLOB NOT NULL)"
)


def ensure_summaries_table(vault: Vault) -> None:
    """Create the summaries table in a profile made before it existed (idempotent)."""
    with vault.lock:
        present = vault.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'summaries'").fetchone()
    if present is None:
        with vault.write() as conn:
            conn.execute(SUMMARIES_SCHEMA)


@dataclass(frozen=True)
class StoredSummary:
    conversation_id: int
    text: str
    covers: int  # how many turns of the history (oldest first) the summary covers
    updated_at: float


class ProfileStore:
    """The encrypted store. All methods are thread-safe; several processes may share a profile."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault
        ensure_summaries_table(vault)

    # -- conversations ------------------------------------------------------------------------
    def create_conversation(self, title: str = "") -> int:
        title = _check_text(title, "a conversation title")
        v = self._vault
        with v.write() as conn:
            cid = v.next_id("conversations")
            gen, sealed = v.seal(f"conversations/{cid}", dumps({"title": title}))
            at = now()
            conn.execute(
                "INSERT INTO conversations (id, created_at, updated_at, pinned_domain, gen, data, ledger) "
                "VALUES (?, ?, ?, NULL, ?, ?, ?)",
                (cid, at, at, gen, sealed, ledger.pack_conversation(v, cid, ledger.empty_conversation())),
            )
            ledger.conversation_created(v, cid)
        return cid

    def start_conversation(
        self, title: str, role: str, content: str, meta: dict[str, Any] | None = None, *,
        pinned_domain: str | None = None,
    ) -> tuple[int, int]:
        """Create a conversation together with its first message, in one transaction: a failure (a full
        disk) leaves neither behind. Returns (conversation id, message id)."""
        with self._vault.write():
            cid = self.create_conversation(title)
            if pinned_domain is not None:
                self.set_pinned_domain(cid, pinned_domain)
            mid = self.append_message(cid, role, content, meta)
        return cid, mid

    def _conversation_info(self, row: tuple[Any, ...], *, tolerate_damage: bool) -> ConversationInfo:
        cid, created, updated, pinned, gen, data = row
        try:
            title = str(loads(self._vault.open(f"conversations/{cid}", gen, data, f"the title of conversation {cid}"))["title"])
            damaged = False
        except RecordDamaged:
            if not tolerate_damage:
                raise
            log.warning("conversation %s: title failed its integrity check", cid)
            title, damaged = "", True
        return ConversationInfo(int(cid), title, _ts(created), _ts(updated), pinned if isinstance(pinned, str) else None, damaged)

    def list_conversations(self) -> list[ConversationInfo]:
        """Newest activity first. A damaged title reads as "" with ``damaged=True`` (others unaffected)."""
        with self._vault.read() as conn:
            rows = conn.execute(
                "SELECT id, created_at, updated_at, pinned_domain, gen, data FROM conversations "
                "ORDER BY updated_at DESC, id DESC"
            ).fetchall()
        return [self._conversation_info(r, tolerate_damage=True) for r in rows]

    def conversation(self, cid: int) -> ConversationInfo:
        with self._vault.read() as conn:
            row = conn.execute(
                "SELECT id, created_at, updated_at, pinned_domain, gen, data FROM conversations WHERE id = ?", (cid,)
            ).fetchone()
        if row is None:
            raise ProfileError(f"conversation {cid} does not exist; list them with the conversation list")
        return self._conversation_info(row, tolerate_damage=False)

    def _require_conversation(self, cid: int) -> None:
        if self._vault.conn.execute("SELECT 1 FROM conversations WHERE id = ?", (cid,)).fetchone() is None:
            raise ProfileError(f"conversation {cid} does not exist; it may have been deleted")

    def rename_conversation(self, cid: int, title: str) -> None:
        title = _check_text(title, "a conversation title")
        v = self._vault
        with v.write() as conn:
            self._require_conversation(cid)
            gen, sealed = v.seal(f"conversations/{cid}", dumps({"title": title}))
            conn.execute("UPDATE conversations SET gen = ?, data = ?, updated_at = ? WHERE id = ?",
                         (gen, sealed, now(), cid))

    def set_pinned_domain(self, cid: int, domain: str | None) -> None:
        if domain is not None and not (isinstance(domain, str) and DOMAIN_RE.match(domain)):
            raise ProfileError(f"'{domain}' is not a domain name; use a name such as 'healthcare' or None")
        with self._vault.write() as conn:
            self._require_conversation(cid)
            conn.execute("UPDATE conversations SET pinned_domain = ? WHERE id = ?", (domain, cid))

    def delete_conversation(self, cid: int) -> None:
        v = self._vault
        with v.write() as conn:
            self._require_conversation(cid)
            n, top = conn.execute("SELECT COUNT(*), MAX(id) FROM messages WHERE conversation_id = ?", (cid,)).fetchone()
            top = max(int(top or 0), ledger.high_water_of(v, cid))
            conn.execute("DELETE FROM messages WHERE conversation_id = ?", (cid,))
            conn.execute("DELETE FROM conversations WHERE id = ?", (cid,))
            ledger.conversations_deleted(v, [cid], top)
            AuditTrail(v).append_in_transaction("delete", {"what": "conversation", "id": cid, "messages": n})
        v.checkpoint()

    def delete_all_conversations(self) -> int:
        """Delete every conversation and message (consent withdrawal); returns how many conversations."""
        v = self._vault
        with v.write() as conn:
            n = conn.execute("SELECT COUNT(*) FROM conversations").fetchone()[0]
            m = conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
            cids = [int(c) for (c,) in conn.execute("SELECT id FROM conversations")]
            top = ledger.high_water(v)
            conn.execute("DELETE FROM messages")
            conn.execute("DELETE FROM conversations")
            ledger.conversations_deleted(v, cids, top)
            AuditTrail(v).append_in_transaction(
                "delete", {"what": "all conversations", "conversations": n, "messages": m}
            )
        v.checkpoint()
        return int(n)

    # -- messages -----------------------------------------------------------------------------
    def append_message(self, cid: int, role: str, content: str, meta: dict[str, Any] | None = None) -> int:
        role = _check_text(role, "a message role")
        content = _check_text(content, "message content")
        if meta is not None and not isinstance(meta, dict):
            raise ProfileError("message meta must be a dict of JSON values or None")
        payload = _json({"role": role, "content": content, "meta": meta or {}}, "message meta")
        v = self._vault
        with v.write() as conn:
            self._require_conversation(cid)
            mid = v.next_id("messages")
            gen, sealed = v.seal(f"messages/{mid}/{cid}", payload)
            at = now()
            conn.execute(
                "INSERT INTO messages (id, conversation_id, created_at, gen, data) VALUES (?, ?, ?, ?, ?)",
                (mid, cid, at, gen, sealed),
            )
            self._touch(cid, at, ledger.changed_conversation(v, cid, add=[(mid, ledger.message_item(mid, cid, payload))]))
        return mid

    def _message(self, row: tuple[Any, ...]) -> Message:
        mid, cid, at, gen, data = row
        body = loads(self._vault.open(f"messages/{mid}/{cid}", gen, data,
                                      f"message {mid} of conversation {cid}"))
        return Message(int(mid), int(cid), str(body["role"]), str(body["content"]), dict(body["meta"]), _ts(at))

    def message(self, mid: int) -> Message:
        with self._vault.read() as conn:
            row = conn.execute(
                "SELECT id, conversation_id, created_at, gen, data FROM messages WHERE id = ?", (mid,)
            ).fetchone()
        if row is None:
            raise ProfileError(f"message {mid} does not exist; it may have been deleted")
        return self._message(row)

    def messages(
        self, cid: int, *, on_damaged: Literal["raise", "skip"] = "raise", damaged: list[str] | None = None
    ) -> list[Message]:
        """The conversation's messages, oldest first. A damaged message raises RecordDamaged naming it,
        or with ``on_damaged="skip"`` is left out (named in ``damaged`` when given); the others are returned."""
        with self._vault.read() as conn:
            rows = conn.execute(
                "SELECT id, conversation_id, created_at, gen, data FROM messages WHERE conversation_id = ? "
                "ORDER BY id",
                (cid,),
            ).fetchall()
        return _tolerant(rows, self._message, on_damaged, damaged)

    def update_message(self, mid: int, content: str, meta: Any = _MISSING) -> None:
        """Replace a message's content; ``meta`` too when given (omit it, or pass None, to keep it)."""
        content = _check_text(content, "message content")
        v = self._vault
        with v.write() as conn:
            row = conn.execute(
                "SELECT id, conversation_id, created_at, gen, data FROM messages WHERE id = ?", (mid,)
            ).fetchone()
            if row is None:
                raise ProfileError(f"message {mid} does not exist; it may have been deleted")
            old = self._message(row)
            old_payload = v.open(f"messages/{mid}/{old.conversation_id}", row[3], row[4], f"message {mid}")
            new_meta = old.meta if meta is _MISSING or meta is None else meta
            if not isinstance(new_meta, dict):
                raise ProfileError("message meta must be a dict of JSON values or None")
            payload = _json({"role": old.role, "content": content, "meta": new_meta}, "message meta")
            gen, sealed = v.seal(f"messages/{mid}/{old.conversation_id}", payload)
            conn.execute("UPDATE messages SET gen = ?, data = ? WHERE id = ?", (gen, sealed, mid))
            ocid = old.conversation_id
            self._touch(ocid, now(), ledger.changed_conversation(
                v, ocid, add=[(mid, ledger.message_item(mid, ocid, payload))],
                remove=[ledger.message_item(mid, ocid, old_payload)]))

    def delete_messages_after(self, cid: int, mid: int) -> int:
        """Delete the conversation's messages newer than message ``mid``; returns how many."""
        with self._vault.write():
            self._require_conversation(cid)
            return self._forget_messages("conversation_id = ? AND id > ?", (cid, mid))

    def _forget_messages(self, where: str, params: tuple[Any, ...]) -> int:
        """Delete the messages matching ``where`` and take them out of their conversations' ledgers."""
        v = self._vault
        rows = v.conn.execute(f"SELECT id, conversation_id, gen, data FROM messages WHERE {where}", params).fetchall()
        items: dict[int, list[int]] = {}
        unknown: set[int] = set()
        for rid, rcid, gen, data in rows:
            try:
                payload = v.open(f"messages/{rid}/{rcid}", gen, data, f"message {rid} of conversation {rcid}")
            except RecordDamaged:
                unknown.add(int(rcid))  # its share of the sum is unknown: count that conversation again
                continue
            items.setdefault(int(rcid), []).append(ledger.message_item(int(rid), int(rcid), payload))
        v.conn.execute(f"DELETE FROM messages WHERE {where}", params)
        for rcid in set(items) | unknown:
            self._touch(rcid, now(), ledger.changed_conversation(
                v, rcid, remove=items.get(rcid, []), recount=rcid in unknown))
        return len(rows)

    def _touch(self, cid: int, at: float, conversation_ledger: str | None) -> None:
        """Stamp the conversation's activity time and its new ledger (one UPDATE, inside a write)."""
        if conversation_ledger is None:
            self._vault.conn.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (at, cid))
        else:
            self._vault.conn.execute("UPDATE conversations SET updated_at = ?, ledger = ? WHERE id = ?",
                                     (at, conversation_ledger, cid))
        ledger.anchor_soon(self._vault)

    def search(self, query: str, *, limit: int | None = None) -> list[Message]:
        """Messages whose content contains ``query`` (case-insensitive), newest first.

        There is no plaintext index on disk: every message is decrypted in memory and matched."""
        needle = _check_text(query, "a search query").casefold()
        if not needle:
            return []
        with self._vault.read() as conn:
            rows = conn.execute(
                "SELECT id, conversation_id, created_at, gen, data FROM messages ORDER BY id DESC"
            ).fetchall()
        out: list[Message] = []
        for row in rows:
            try:
                msg = self._message(row)
            except RecordDamaged:
                log.warning("message %s failed its integrity check; not searched", row[0])
                continue
            if needle in msg.content.casefold():
                out.append(msg)
                if limit is not None and len(out) >= limit:
                    break
        return out

    # -- settings -----------------------------------------------------------------------------
    def _setting_rows(self, key: str) -> list[tuple[Any, ...]]:
        v = self._vault
        gens = [int(g) for (g,) in v.conn.execute("SELECT DISTINCT gen FROM data_keys")]
        lookups = [v.keys_for(g).lookup(key) for g in gens]
        marks = ",".join("?" * len(lookups))
        return self._vault.conn.execute(
            f"SELECT id, gen, data FROM settings WHERE lookup IN ({marks}) ORDER BY id", lookups
        ).fetchall()

    def get_setting(self, key: str, default: Any = None) -> Any:
        key = _check_text(key, "a setting name")
        with self._vault.read():
            rows = self._setting_rows(key)
        for sid, gen, data in rows:
            body = loads(self._vault.open(f"settings/{sid}", gen, data, f"setting {sid}"))
            if body["key"] == key:
                return body["value"]
        return default

    def set_setting(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key``."""
        key = _check_text(key, "a setting name")
        v = self._vault
        with v.write() as conn:
            for sid, _, _ in self._setting_rows(key):
                conn.execute("DELETE FROM settings WHERE id = ?", (sid,))
            sid = v.next_id("settings")
            gen, sealed = v.seal(f"settings/{sid}", _json({"key": key, "value": value}, f"setting '{key}'"))
            conn.execute(
                "INSERT INTO settings (id, lookup, updated_at, gen, data) VALUES (?, ?, ?, ?, ?)",
                (sid, v.current.lookup(key), now(), gen, sealed),
            )

    def delete_setting(self, key: str) -> None:
        with self._vault.write() as conn:
            for sid, _, _ in self._setting_rows(key):
                conn.execute("DELETE FROM settings WHERE id = ?", (sid,))

    def settings(
        self, *, on_damaged: Literal["raise", "skip"] = "raise", damaged: list[str] | None = None
    ) -> dict[str, Any]:
        """Every setting (for export)."""
        with self._vault.read() as conn:
            rows = conn.execute("SELECT id, gen, data FROM settings ORDER BY id").fetchall()

        def one(row: tuple[Any, ...]) -> tuple[str, Any]:
            sid, gen, data = row
            body = loads(self._vault.open(f"settings/{sid}", gen, data, f"setting {sid}"))
            return str(body["key"]), body["value"]

        return dict(_tolerant(rows, one, on_damaged, damaged))

    # -- blobs --------------------------------------------------------------------------------
    @staticmethod
    def _check_kind(kind: Any) -> str:
        if not isinstance(kind, str) or not KIND_RE.match(kind):
            raise ProfileError(
                f"'{kind}' is not a blob kind; use a short lower-case name such as 'voice' or 'dataset'"
            )
        return kind

    def put_blob(self, kind: str, name: str, data: bytes) -> int:
        kind = self._check_kind(kind)
        name = _check_text(name, "a blob name")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ProfileError(f"blob data must be bytes, not {type(data).__name__}")
        data = bytes(data)
        v = self._vault
        with v.write() as conn:
            bid = v.next_id("blobs")
            gen, info = v.seal(f"blobs/{bid}/{kind}/info", dumps({"name": name, "size": len(data)}))
            _, sealed = v.seal(f"blobs/{bid}/{kind}/data", data)
            conn.execute(
                "INSERT INTO blobs (id, kind, created_at, gen, info, data) VALUES (?, ?, ?, ?, ?, ?)",
                (bid, kind, now(), gen, info, sealed),
            )
        return bid

    def get_blob(self, bid: int) -> bytes:
        with self._vault.read() as conn:
            row = conn.execute("SELECT kind, gen, data FROM blobs WHERE id = ?", (bid,)).fetchone()
        if row is None:
            raise ProfileError(f"blob {bid} does not exist; it may have been deleted")
        kind, gen, data = row
        return self._vault.open(f"blobs/{bid}/{kind}/data", gen, data, f"blob {bid} ({kind})")

    def _blob_info(self, row: tuple[Any, ...]) -> BlobInfo:
        bid, kind, at, gen, info = row
        body = loads(self._vault.open(f"blobs/{bid}/{kind}/info", gen, info, f"blob {bid} ({kind})"))
        return BlobInfo(int(bid), str(kind), str(body["name"]), int(body["size"]), _ts(at))

    def list_blobs(
        self, kind: str | None = None, *, on_damaged: Literal["raise", "skip"] = "raise",
        damaged: list[str] | None = None,
    ) -> list[BlobInfo]:
        """Blobs of one kind (or all), oldest first."""
        with self._vault.read() as conn:
            if kind is None:
                rows = conn.execute("SELECT id, kind, created_at, gen, info FROM blobs ORDER BY id").fetchall()
            else:
                rows = conn.execute(
                    "SELECT id, kind, created_at, gen, info FROM blobs WHERE kind = ? ORDER BY id",
                    (self._check_kind(kind),),
                ).fetchall()
        return _tolerant(rows, self._blob_info, on_damaged, damaged)

    def delete_blob(self, bid: int) -> None:
        v = self._vault
        with v.write() as conn:
            row = conn.execute("SELECT kind FROM blobs WHERE id = ?", (bid,)).fetchone()
            if row is None:
                raise ProfileError(f"blob {bid} does not exist; it may have been deleted")
            conn.execute("DELETE FROM blobs WHERE id = ?", (bid,))
            AuditTrail(v).append_in_transaction("delete", {"what": "blob", "id": bid, "kind": row[0]})
        v.checkpoint()

    def delete_blobs(self, kind: str) -> int:
        """Delete every blob of a kind (consent withdrawal); returns how many."""
        kind = self._check_kind(kind)
        v = self._vault
        with v.write() as conn:
            n = int(conn.execute("DELETE FROM blobs WHERE kind = ?", (kind,)).rowcount)
            if n:
                AuditTrail(v).append_in_transaction("delete", {"what": f"all blobs of kind {kind}", "count": n})
        v.checkpoint()
        return n

    # -- conversation summaries ---------------------------------------------------------------
    def get_summary(self, cid: int) -> StoredSummary | None:
        """The stored summary of a conversation's older turns, or None."""
        with self._vault.read() as conn:
            row = conn.execute(
                "SELECT conversation_id, updated_at, gen, data FROM summaries WHERE conversation_id = ?", (cid,)
            ).fetchone()
        return None if row is None else self._summary(tuple(row))

    def _summary(self, row: tuple[Any, ...]) -> StoredSummary:
        cid, at, gen, data = row
        body = loads(self._vault.open(f"summaries/{cid}", gen, data, f"the summary of conversation {cid}"))
        return StoredSummary(int(cid), str(body["text"]), int(body["covers"]), _ts(at))

    def set_summary(self, cid: int, text: str, covers: int) -> None:
        """Store (replace) the summary of the first ``covers`` turns of conversation ``cid``."""
        text = _check_text(text, "a summary")
        if not isinstance(covers, int) or covers < 0:
            raise ProfileError("a summary covers a whole number of turns (0 or more)")
        v = self._vault
        with v.write() as conn:
            self._require_conversation(cid)
            gen, sealed = v.seal(f"summaries/{cid}", dumps({"text": text, "covers": covers}))
            conn.execute(
                "INSERT OR REPLACE INTO summaries (conversation_id, updated_at, gen, data) VALUES (?, ?, ?, ?)",
                (cid, now(), gen, sealed),
            )

    def delete_summary(self, cid: int) -> None:
        with self._vault.write() as conn:
            conn.execute("DELETE FROM summaries WHERE conversation_id = ?", (cid,))

    def summaries(
        self, *, on_damaged: Literal["raise", "skip"] = "raise", damaged: list[str] | None = None
    ) -> list[StoredSummary]:
        """Every conversation summary (for export), by conversation id."""
        with self._vault.read() as conn:
            rows = conn.execute(
                "SELECT conversation_id, updated_at, gen, data FROM summaries ORDER BY conversation_id"
            ).fetchall()
        return _tolerant(rows, self._summary, on_damaged, damaged)

    # -- counts -------------------------------------------------------------------------------
    def counts(self) -> dict[str, Any]:
        with self._vault.read() as conn:
            one = conn.execute
            blobs = {str(k): int(n) for k, n in one("SELECT kind, COUNT(*) FROM blobs GROUP BY kind ORDER BY kind")}
            return {
                "conversations": int(one("SELECT COUNT(*) FROM conversations").fetchone()[0]),
                "messages": int(one("SELECT COUNT(*) FROM messages").fetchone()[0]),
                "settings": int(one("SELECT COUNT(*) FROM settings").fetchone()[0]),
                "blobs": blobs,
                "audit_entries": int(one("SELECT COUNT(*) FROM audit").fetchone()[0]),
            }
