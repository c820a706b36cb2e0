"""The ledger: what the profile must contain, signed, so removals, old copies and rollbacks are detected.

Signed (HMAC under the data key), not encrypted: it holds counts and hashes, never content.

* Each conversation row carries a signed ``ledger``: how many messages it has, the sum (mod 2**256) of one
  SHA-256 per message over its row binding and plaintext, and the highest message id it ever got. A
  removed message, an added one, or an older copy of a message or of the whole messages table changes it.
  It is written by the same UPDATE that already stamps the conversation's ``updated_at`` on each append.
* The profile-wide ledger (meta ``chains``) counts the conversations (and sums their ids), keeps the
  highest message id of deleted conversations, a version raised by every conversation created or
  deleted and by every audit entry, and the audit trail's count and newest hash like its own head.

Every store method that writes messages or conversations keeps both in its own transaction, so legitimate
deletes stay verifiable. An older copy of the *whole* database would still agree with itself: that is
what the **anchor** is for. After commits (at once for audit entries and conversations, at most every
two seconds for messages, and on close) the version and the highest message id are written,
authenticated, to ``anchors/<profile id>.json`` in the user's state folder — outside the database and
outside its folder. A database below its anchor was replaced by an older copy (a rollback). A profile
copied to another machine has no anchor there yet: reported as "not checked", never as tampering.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tara_desktop.files import atomic_write
from tara_desktop.profile.errors import ProfileError, RecordDamaged
from tara_desktop.profile.vault import Vault

log = logging.getLogger(__name__)

LEDGER_META = "chains"
_MOD = 1 << 256
ANCHOR_INTERVAL_S = 2.0
_state: dict[int, dict[str, Any]] = {}  # per vault: the last profile ledger seen, anchor timing


def message_item(mid: int, cid: int, payload: bytes) -> int:
    digest = hashlib.sha256(f"tara/ledger/messages/{mid}/{cid}\n".encode("ascii") + payload).digest()
    return int.from_bytes(digest, "big")


def conversation_item(cid: int) -> int:
    return int.from_bytes(hashlib.sha256(f"tara/ledger/conversations/{cid}".encode("ascii")).digest(), "big")


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Add the ``ledger`` column to conversations of a profile made before it existed (idempotent)."""
    columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(conversations)")}
    if "ledger" not in columns:
        conn.execute("ALTER TABLE conversations ADD COLUMN ledger TEXT")


def _sign(vault: Vault, gen: int, what: str, body: str) -> str:
    data = f"ledger/{vault.profile_id}/{what}\n".encode("ascii") + body.encode("ascii")
    return vault.keys_for(gen).mac(data).hex()


def _pack(vault: Vault, what: str, value: dict[str, Any]) -> str:
    body = json.dumps(value, sort_keys=True, separators=(",", ":"))
    gen = vault.active_gen
    return json.dumps({"gen": gen, "body": body, "mac": _sign(vault, gen, what, body)})


def _unpack(vault: Vault, what: str, raw: str) -> dict[str, Any]:
    try:
        outer = json.loads(raw)
        gen, body, mac = int(outer["gen"]), str(outer["body"]), str(outer["mac"])
        ok = hmac.compare_digest(_sign(vault, gen, what, body), mac)
        value = json.loads(body)
    except (ValueError, KeyError, TypeError, ProfileError) as exc:
        raise RecordDamaged(f"the ledger of {what} was changed outside TARA", table="ledger", record_id=what) from exc
    if not ok or not isinstance(value, dict):
        raise RecordDamaged(f"the ledger of {what} was changed outside TARA (its signature does not match)",
                            table="ledger", record_id=what)
    return value


def resign(vault: Vault, what: str, raw: str | None) -> str | None:
    """The same ledger signed under the current key (a key rotation)."""
    return None if raw is None else _pack(vault, what, _unpack(vault, what, raw))


# -- per conversation -----------------------------------------------------------------------------
def empty_conversation() -> dict[str, Any]:
    return {"n": 0, "sum": "0", "top": 0}


def conversation_ledger(vault: Vault, cid: int, raw: Any) -> dict[str, Any]:
    if raw is None:
        raise RecordDamaged(f"the ledger of conversation {cid} is missing", table="ledger", record_id=f"conversation {cid}")
    return _unpack(vault, f"conversation {cid}", str(raw))


def pack_conversation(vault: Vault, cid: int, value: dict[str, Any]) -> str:
    return _pack(vault, f"conversation {cid}", value)


def changed_conversation(vault: Vault, cid: int, *, add: Sequence[tuple[int, int]] = (),
                         remove: Sequence[int] = (), recount: bool = False) -> str | None:
    """Inside a write: conversation ``cid``'s ledger after adding (message id, item) pairs and removing
    items; ``recount`` counts its messages again instead (after a change whose old items are unknown).
    None when the conversation has no ledger yet (an old profile before its first open finished)."""
    row = vault.conn.execute("SELECT ledger FROM conversations WHERE id = ?", (cid,)).fetchone()
    if row is None or row[0] is None:
        return None
    try:
        led = conversation_ledger(vault, cid, row[0])
    except RecordDamaged:
        log.warning("the ledger of conversation %s is damaged; counted again", cid)
        recount = True
        led = empty_conversation()
    top = max([int(led.get("top", 0)), *(mid for mid, _ in add)])
    if recount:
        n, total, _, _ = count_messages(vault, cid)
    else:
        n = int(led["n"]) + len(add) - len(remove)
        total = (int(led["sum"], 16) + sum(i for _, i in add) - sum(remove)) % _MOD
    return pack_conversation(vault, cid, {"n": n, "sum": format(total, "x"), "top": top})


def count_messages(vault: Vault, cid: int | None = None) -> tuple[int, int, int, list[str]]:
    """(count, sum, highest id, damaged descriptions) of the messages as they are now (decrypts each)."""
    query = "SELECT id, conversation_id, gen, data FROM messages"
    rows = vault.conn.execute(query + (" WHERE conversation_id = ?" if cid is not None else "") + " ORDER BY id",
                              (() if cid is None else (cid,))).fetchall()
    total, damaged = 0, []
    for mid, rcid, gen, data in rows:
        try:
            payload = vault.open(f"messages/{mid}/{rcid}", gen, data, f"message {mid} of conversation {rcid}")
        except RecordDamaged as exc:
            damaged.append(str(exc))
            continue
        total = (total + message_item(int(mid), int(rcid), payload)) % _MOD
    return len(rows), total, max((int(r[0]) for r in rows), default=0), damaged


# -- the profile-wide ledger ------------------------------------------------------------------------
def _vault_state(vault: Vault) -> dict[str, Any]:
    return _state.setdefault(id(vault), {"raw": None, "value": None, "anchored_at": 0.0, "pending": None})


def empty() -> dict[str, Any]:
    return {"version": 0, "conversations": {"n": 0, "sum": "0"}, "top": 0, "audit": {"count": 0, "last_hash": ""}}


def load(vault: Vault) -> dict[str, Any] | None:
    """The profile-wide ledger (None when the profile has none yet); RecordDamaged when it was changed."""
    raw = vault.get_meta(LEDGER_META)
    if raw is None:
        return None
    st = _vault_state(vault)
    if raw == st["raw"]:
        return json.loads(st["value"])  # a fresh copy of what this process last signed or checked
    value = _unpack(vault, "the profile", raw)
    st["raw"], st["value"] = raw, json.dumps(value)
    return value


def _store(vault: Vault, led: dict[str, Any]) -> None:
    led["version"] = int(led.get("version", 0)) + 1
    raw = _pack(vault, "the profile", led)
    vault.set_meta(LEDGER_META, raw)
    st = _vault_state(vault)
    st["raw"], st["value"] = raw, json.dumps(led)
    anchor_soon(vault, now=True)


def anchor_soon(vault: Vault, *, now: bool = False) -> None:
    """Inside a write: have the anchor follow after the commit (at once, or throttled for messages)."""
    st = _vault_state(vault)
    if now or time.monotonic() - st["anchored_at"] >= ANCHOR_INTERVAL_S:
        vault.after_commit(lambda: _anchor(vault), key=LEDGER_META)
    else:
        vault.after_commit(lambda: st.update(pending=True), key=LEDGER_META)


def _change(vault: Vault, **changes: Any) -> None:
    led = load(vault)
    if led is None:
        return  # not initialised yet: Profile.open starts it
    for key, fn in changes.items():
        led[key] = fn(led[key])
    _store(vault, led)


def conversation_created(vault: Vault, cid: int) -> None:
    _change(vault, conversations=lambda c: {
        "n": int(c["n"]) + 1, "sum": format((int(c["sum"], 16) + conversation_item(cid)) % _MOD, "x")})


def conversations_deleted(vault: Vault, cids: Sequence[int], top: int) -> None:
    _change(
        vault,
        conversations=lambda c: {
            "n": int(c["n"]) - len(cids),
            "sum": format((int(c["sum"], 16) - sum(conversation_item(i) for i in cids)) % _MOD, "x"),
        },
        top=lambda t: max(int(t), top),
    )


def note_audit(vault: Vault, count: int, last_hash: str) -> None:
    """Inside a write: the audit trail grew (called by the audit trail itself)."""
    _change(vault, audit=lambda _a: {"count": count, "last_hash": last_hash})


def resign_all(vault: Vault, gen: int) -> None:
    """Inside a write, at the end of a key rotation: every ledger still signed by an older key is signed
    again by generation ``gen``, and the version is raised (so the anchor is signed again too)."""
    for cid, raw in vault.conn.execute("SELECT id, ledger FROM conversations WHERE ledger IS NOT NULL").fetchall():
        try:
            if int(json.loads(raw)["gen"]) != gen:
                vault.conn.execute("UPDATE conversations SET ledger = ? WHERE id = ?",
                                   (resign(vault, f"conversation {cid}", raw), cid))
        except (RecordDamaged, ValueError, KeyError, TypeError):
            log.warning("the ledger of conversation %s is damaged; left for audit-verify to report", cid)
    _change(vault)


def high_water_of(vault: Vault, cid: int) -> int:
    row = vault.conn.execute("SELECT ledger FROM conversations WHERE id = ?", (cid,)).fetchone()
    try:
        return 0 if row is None or row[0] is None else int(conversation_ledger(vault, cid, row[0]).get("top", 0))
    except RecordDamaged:
        return 0


def high_water(vault: Vault) -> int:
    """The highest message id the profile ever held, from signed values only."""
    led = load(vault) or {}
    top = int(led.get("top", 0))
    for cid, raw in vault.conn.execute("SELECT id, ledger FROM conversations WHERE ledger IS NOT NULL"):
        try:
            top = max(top, int(conversation_ledger(vault, int(cid), raw).get("top", 0)))
        except RecordDamaged:
            continue
    return top


def initialise(vault: Vault, audit_count: int, audit_hash: str) -> None:
    """Inside a write: start the ledgers from the profile as it is (a new profile, or one made before the
    ledger existed: trusted on first use)."""
    if load(vault) is not None:
        return
    ensure_schema(vault.conn)
    cids = [int(c) for (c,) in vault.conn.execute("SELECT id FROM conversations")]
    top = 0
    for cid in cids:
        n, total, ctop, _ = count_messages(vault, cid)
        top = max(top, ctop)
        vault.conn.execute("UPDATE conversations SET ledger = ? WHERE id = ?",
                           (pack_conversation(vault, cid, {"n": n, "sum": format(total, "x"), "top": ctop}), cid))
    led = empty()
    led["conversations"] = {"n": len(cids), "sum": format(sum(conversation_item(c) for c in cids) % _MOD, "x")}
    led["top"] = top
    led["audit"] = {"count": audit_count, "last_hash": audit_hash}
    _store(vault, led)


# -- the anchor outside the database ----------------------------------------------------------------
def anchor_dir() -> Path:
    """Where anchors live: outside every profile folder, in the user's state folder (``TARA_ANCHOR_DIR``
    overrides it), so replacing a profile folder with an older copy does not replace its anchor."""
    override = os.environ.get("TARA_ANCHOR_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_state_dir("TARA", appauthor=False)) / "anchors"


def anchor_path(vault: Vault | str) -> Path:
    profile_id = vault if isinstance(vault, str) else vault.profile_id
    return anchor_dir() / f"{profile_id}.json"


def _anchor_mac(vault: Vault, gen: int, version: int, top: int) -> str:
    body = f"tara/anchor/{vault.profile_id}/{gen}/{version}/{top}".encode("ascii")
    return vault.keys_for(gen).anchor_mac(body).hex()


def read_anchor(vault: Vault) -> dict[str, Any] | None:
    """{"version", "top"} when the anchor's signature holds (``stale`` when signed by a key a finished
    rotation dropped); None when there is none; {"bad": why} otherwise."""
    try:
        raw = json.loads(anchor_path(vault).read_text(encoding="ascii"))
        version, top, gen, mac = int(raw["version"]), int(raw["top"]), int(raw["gen"]), str(raw["mac"])
        profile_id = str(raw["profile_id"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return {"bad": "it is not a TARA anchor (changed outside TARA)"}
    if profile_id != vault.profile_id:
        return {"bad": "it belongs to another profile"}
    if gen not in vault.keys:
        return {"stale": True, "version": version, "top": top}
    if not hmac.compare_digest(_anchor_mac(vault, gen, version, top), mac):
        return {"bad": "its signature does not match (changed outside TARA)"}
    return {"version": version, "top": top}


def _anchor(vault: Vault) -> None:
    st = _vault_state(vault)
    st["anchored_at"], st["pending"] = time.monotonic(), None
    write_anchor(vault)


def flush(vault: Vault) -> None:
    """Write an anchor still pending (on close)."""
    st = _state.pop(id(vault), None)
    if st is not None and st["pending"]:
        write_anchor(vault)


def write_anchor(vault: Vault) -> None:
    """Record the profile's version and highest message id outside the database (never lowering a newer
    anchor). Best effort: a failure leaves the anchor behind, which is never reported as tampering."""
    try:
        with vault.read():
            led = load(vault)
            if led is None:
                return
            version, top = int(led["version"]), high_water(vault)
        current = read_anchor(vault)
        if current is not None and "version" in current and not current.get("stale") and (
            int(current["version"]) >= version and int(current["top"]) >= top
        ):
            return
        if current is not None and "version" in current:
            version, top = max(version, int(current["version"])), max(top, int(current["top"]))
        gen = vault.active_gen
        body = json.dumps({"v": 1, "profile_id": vault.profile_id, "version": version, "top": top, "gen": gen,
                           "mac": _anchor_mac(vault, gen, version, top)}).encode("ascii")
        path = anchor_path(vault)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, body, private=True)
    except Exception as exc:  # the anchor must never break a write that already committed
        log.info("profile anchor not updated: %s", exc)
