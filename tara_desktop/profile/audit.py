"""The audit trail: an append-only, hash-chained, authenticated log of what happened to the profile.

Entry ``i`` is sealed like every record; its plaintext body holds its id, time, event, details and the
SHA-256 of entry ``i-1``'s body (the chain). Its ``mac`` column is an HMAC, under a key derived (HKDF)
from the data key of its generation, over the id and the body's hash. The newest id, hash and count sit
sealed in the ``audit_head`` meta value, so removing the newest entries is detected too. A key rotation
re-seals and re-MACs each entry under the new key; the chain (hashes of plaintext bodies) is unchanged.
"""

from __future__ import annotations

import base64
import hmac
import json
from dataclasses import dataclass
from typing import Any

from tara_desktop.profile import crypto, ledger
from tara_desktop.profile.errors import ProfileError, RecordDamaged
from tara_desktop.profile.vault import Vault, as_bytes, dumps, loads, now

GENESIS = bytes(32)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    created_at: float
    event: str
    details: dict[str, Any]


@dataclass(frozen=True)
class AuditReport:
    ok: bool
    entries: int
    first_bad_id: int | None = None
    problem: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"audit trail intact: {self.entries} entries, chain and signatures verified"
        return f"audit trail broken: {self.problem}"

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "first_bad_id": self.first_bad_id, "problem": self.problem}


def mac_input(entry_id: int, body_hash: bytes) -> bytes:
    return f"audit/{entry_id}\n".encode("ascii") + body_hash


def seal_head(vault: Vault, head: dict[str, Any]) -> str:
    gen, sealed = vault.seal("meta/audit_head", dumps(head))
    return json.dumps({"gen": gen, "sealed": base64.b64encode(sealed).decode("ascii")})


def open_head(vault: Vault) -> dict[str, Any] | None:
    raw = vault.get_meta("audit_head")
    if raw is None:
        return None
    try:
        outer = json.loads(raw)
        sealed = base64.b64decode(outer["sealed"])
        gen = int(outer["gen"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RecordDamaged(
            "the audit trail head failed its integrity check: it was changed outside TARA",
            table="meta",
            record_id="audit_head",
        ) from exc
    head: dict[str, Any] = loads(vault.open("meta/audit_head", gen, sealed, "the audit trail head"))
    return head


class AuditTrail:
    """``profile.audit``: append events, list them, verify the chain."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault

    def append(self, event: str, details: dict[str, Any] | None = None) -> int:
        """Record an event (e.g. "export", "model.import") with JSON details; returns the entry id."""
        with self._vault.write():
            return self.append_in_transaction(event, details or {})

    def append_in_transaction(self, event: str, details: dict[str, Any]) -> int:
        if not isinstance(event, str) or not event:
            raise ProfileError("an audit event needs a non-empty name such as 'model.import'")
        if not isinstance(details, dict):
            raise ProfileError("audit details must be a dict of JSON values")
        vault = self._vault
        head = open_head(vault)
        prev = bytes.fromhex(head["last_hash"]) if head else GENESIS
        count = int(head["count"]) if head else 0
        entry_id = vault.next_id("audit")
        at = now()
        try:
            body = dumps({"id": entry_id, "at": at, "event": event, "details": details, "prev": prev.hex()})
        except (TypeError, ValueError) as exc:
            raise ProfileError(f"audit details for '{event}' must be JSON values (str, number, list, dict)") from exc
        digest = crypto.sha256(body)
        gen, sealed = vault.seal(f"audit/{entry_id}", body)
        mac = vault.current.mac(mac_input(entry_id, digest))
        vault.conn.execute(
            "INSERT INTO audit (id, created_at, gen, data, mac) VALUES (?, ?, ?, ?, ?)",
            (entry_id, at, gen, sealed, mac),
        )
        vault.set_meta(
            "audit_head", seal_head(vault, {"last_id": entry_id, "last_hash": digest.hex(), "count": count + 1})
        )
        ledger.note_audit(vault, count + 1, digest.hex())
        return entry_id

    def entries(self, *, on_damaged: str = "raise", damaged: list[str] | None = None) -> list[AuditEntry]:
        """Every entry, oldest first. A damaged entry raises RecordDamaged naming it, or with
        ``on_damaged="skip"`` is left out (and named in ``damaged``)."""
        out = []
        with self._vault.read() as conn:
            rows = conn.execute("SELECT id, created_at, gen, data FROM audit ORDER BY id").fetchall()
        for rid, _at, gen, data in rows:
            try:
                body = loads(self._vault.open(f"audit/{rid}", gen, data, f"audit entry #{rid}"))
            except RecordDamaged as exc:
                if on_damaged == "raise":
                    raise
                if damaged is not None:
                    damaged.append(str(exc))
                continue
            out.append(AuditEntry(int(rid), float(body["at"]), str(body["event"]), dict(body["details"])))
        return out

    def verify(self) -> AuditReport:
        """Check every entry's seal, MAC and chain link, and the head; name the first bad entry."""
        vault = self._vault
        with vault.read() as conn:
            rows = conn.execute("SELECT id, created_at, gen, data, mac FROM audit ORDER BY id").fetchall()
            try:
                head = open_head(vault)
            except RecordDamaged as exc:
                return AuditReport(False, len(rows), None, str(exc))
        prev = GENESIS
        prev_id: int | None = None
        for row_id, at, gen, data, mac in rows:
            rid = int(row_id)
            after = f"after entry #{prev_id}" if prev_id is not None else "at the start"

            def bad(problem: str, rid: int = rid) -> AuditReport:
                return AuditReport(False, len(rows), rid, f"entry #{rid}: {problem}")

            try:
                body_bytes = vault.keys_for(int(gen)).open(f"audit/{rid}", as_bytes(data))
            except crypto.IntegrityFailure as exc:
                if "another record" in str(exc):
                    return bad("was moved: it holds another entry's content (entries were reordered or replaced)")
                return bad("was edited: its sealed content fails its integrity check")
            except (ProfileError, ValueError, TypeError):
                return bad("was edited: it names a key generation the profile does not have")
            try:
                body = loads(body_bytes)
                digest = crypto.sha256(body_bytes)
                body_id, body_prev, body_at = int(body["id"]), str(body["prev"]), float(body["at"])
            except (ValueError, KeyError, TypeError):
                return bad("was edited: its content is not a valid audit entry")
            if not hmac.compare_digest(vault.keys_for(int(gen)).mac(mac_input(rid, digest)), as_bytes(mac)):
                return bad("was edited: its signature (HMAC) does not match")
            try:
                same_time = body_at == float(at)
            except (TypeError, ValueError):
                same_time = False
            if body_id != rid or not same_time:
                return bad("was edited or reordered: its id or time differ from the signed content")
            if body_prev != prev.hex():
                return bad(f"does not follow the entry before it: an entry {after} was removed or the order changed")
            prev, prev_id = digest, rid
        if head is None:
            if rows:
                return AuditReport(False, len(rows), rows[0][0], "the audit trail head is missing: it was removed")
            # Every profile starts its trail with "profile.created": an empty trail was emptied.
            return AuditReport(False, 0, 1, "entry #1: was removed (the audit trail is empty)")
        if int(head["count"]) != len(rows) or int(head["last_id"]) != (prev_id or 0) or head["last_hash"] != prev.hex():
            missing = int(head["count"]) - len(rows)
            last = int(head["last_id"])
            if missing > 0 and (prev_id or 0) < last:
                return AuditReport(
                    False, len(rows), last,
                    f"entry #{last}: was removed ({missing} newest entr{'y' if missing == 1 else 'ies'} missing "
                    + (f"after entry #{prev_id})" if prev_id is not None else "— the whole trail)"),
                )
            return AuditReport(
                False, len(rows), last, f"entry #{last}: the newest entries do not match the signed head (removed or replaced)"
            )
        return AuditReport(True, len(rows))
