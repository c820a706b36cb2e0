"""Key rotation: re-seal every record under a fresh data key (and a fresh key-encryption key).

Crash-safe at every moment: the new key is wrapped and stored *before* any record uses it, the old one is
dropped only after no record uses it any more, and every row names the generation that sealed it. So a
kill leaves each record readable with the old or the new key; the next ``Profile.open`` (or another
``rotate_key``) finishes the interrupted rotation. In the OS keyring, the old and new KEK sit side by side
until the end.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from tara_desktop.jobs import JobState
from tara_desktop.profile import crypto, ledger
from tara_desktop.profile.audit import AuditTrail, mac_input
from tara_desktop.profile.errors import ProfileError, RecordDamaged
from tara_desktop.profile.keys import KeyringSource, KeySource, UnavailableSource
from tara_desktop.profile.vault import SEALED_META, SEALED_TABLES, Vault, loads, now

log = logging.getLogger(__name__)

BATCH = 200


def _begin(vault: Vault, target: KeySource) -> None:
    """Make and store the new generation; mark the rotation as in progress.

    When the key source changes (a new passphrase, keyring <-> passphrase), every generation is wrapped
    under both the old and the new KEK until the rotation ends, so either secret unlocks the profile
    after a kill at any moment.
    """
    kek_id, params, kek = target.new_kek()  # durable (keyring written) before the profile names it
    with vault.write() as conn:
        if vault.get_meta("rotation") is not None:
            return  # another process started one meanwhile: finish that one
        old = vault.active_gen
        new = int(conn.execute("SELECT MAX(gen) FROM data_keys").fetchone()[0]) + 1
        secret = crypto.new_secret()
        at = now()
        conn.execute("INSERT INTO keks (id, source, params, created_at) VALUES (?, ?, ?, ?)",
                     (kek_id, target.kind, json.dumps(params), at))
        wraps = [(new, kek_id, crypto.wrap_secret(kek, f"data_keys/{new}", secret))]
        if target is not vault.source:
            old_keks = conn.execute("SELECT id, params FROM keks WHERE id != ? AND source = ?",
                                    (kek_id, vault.source.kind)).fetchall()
            for old_id, old_params in old_keks:
                try:
                    old_kek = vault.source.kek(str(old_id), json.loads(old_params))
                except ProfileError:
                    continue
                wraps.append((new, str(old_id), crypto.wrap_secret(old_kek, f"data_keys/{new}", secret)))
            for gen, keys in vault.keys.items():
                wraps.append((gen, kek_id, crypto.wrap_secret(kek, f"data_keys/{gen}", keys.secret)))
        conn.executemany("INSERT OR REPLACE INTO data_keys (gen, kek_id, wrapped, created_at) VALUES (?, ?, ?, ?)",
                         [(*w, at) for w in wraps])
        vault.set_meta("rotation", json.dumps({
            "to": new, "kek": kek_id, "from": old, "source": target.kind, "started_at": at,
        }))
        AuditTrail(vault).append_in_transaction(
            "key.rotation.started", {"from": old, "to": new, "source": vault.source.kind, "new_source": target.kind}
        )
        vault.set_meta("active_gen", str(new))
        vault.keys[new] = crypto.RecordKeys(new, secret)
    vault.pending_source = target


Resealer = Callable[[Vault, crypto.RecordKeys, tuple[Any, ...]], None]


def _reseal_conversation(v: Vault, k: crypto.RecordKeys, row: tuple[Any, ...]) -> None:
    rid, gen, data, signed = row
    b = f"conversations/{rid}"
    plain = v.open(b, gen, data, f"the title of conversation {rid}")
    try:  # its ledger is signed by the new key too (active_gen is the new generation by now)
        signed = ledger.resign(v, f"conversation {rid}", signed)
    except RecordDamaged:
        log.warning("the ledger of conversation %s was damaged; left for audit-verify to report", rid)
    v.conn.execute("UPDATE conversations SET gen = ?, data = ?, ledger = ? WHERE id = ?",
                   (k.gen, k.seal(b, plain), signed, rid))


def _reseal_message(v: Vault, k: crypto.RecordKeys, row: tuple[Any, ...]) -> None:
    rid, cid, gen, data = row
    b = f"messages/{rid}/{cid}"
    plain = v.open(b, gen, data, f"message {rid} of conversation {cid}")
    v.conn.execute("UPDATE messages SET gen = ?, data = ? WHERE id = ?", (k.gen, k.seal(b, plain), rid))


def _reseal_setting(v: Vault, k: crypto.RecordKeys, row: tuple[Any, ...]) -> None:
    rid, gen, data = row
    b = f"settings/{rid}"
    plain = v.open(b, gen, data, f"setting {rid}")
    lookup = k.lookup(str(loads(plain)["key"]))
    v.conn.execute("UPDATE settings SET gen = ?, data = ?, lookup = ? WHERE id = ?",
                   (k.gen, k.seal(b, plain), lookup, rid))


def _reseal_consent(v: Vault, k: crypto.RecordKeys, row: tuple[Any, ...]) -> None:
    rid, kind, gen, data = row
    b = f"consent/{rid}/{kind}"
    plain = v.open(b, gen, data, f"consent record {rid} ({kind})")
    v.conn.execute("UPDATE consent SET gen = ?, data = ? WHERE id = ?", (k.gen, k.seal(b, plain), rid))


def _reseal_blob(v: Vault, k: crypto.RecordKeys, row: tuple[Any, ...]) -> None:
    rid, kind, gen, info, data = row
    bi, bd = f"blobs/{rid}/{kind}/info", f"blobs/{rid}/{kind}/data"
    what = f"blob {rid} ({kind})"
    info_plain = v.open(bi, gen, info, what)
    data_plain = v.open(bd, gen, data, what)
    v.conn.execute("UPDATE blobs SET gen = ?, info = ?, data = ? WHERE id = ?",
                   (k.gen, k.seal(bi, info_plain), k.seal(bd, data_plain), rid))


def _reseal_audit(v: Vault, k: crypto.RecordKeys, row: tuple[Any, ...]) -> None:
    rid, gen, data = row
    b = f"audit/{rid}"
    body = v.open(b, gen, data, f"audit entry #{rid}")
    mac = k.mac(mac_input(int(rid), crypto.sha256(body)))
    v.conn.execute("UPDATE audit SET gen = ?, data = ?, mac = ? WHERE id = ?", (k.gen, k.seal(b, body), mac, rid))


STEPS: dict[str, tuple[str, Resealer]] = {
    "conversations": ("id, gen, data, ledger", _reseal_conversation),
    "messages": ("id, conversation_id, gen, data", _reseal_message),
    "settings": ("id, gen, data", _reseal_setting),
    "consent": ("id, kind, gen, data", _reseal_consent),
    "blobs": ("id, kind, gen, info, data", _reseal_blob),
    "audit": ("id, gen, data", _reseal_audit),
}
assert set(STEPS) == set(SEALED_TABLES)


def _reseal_summary(v: Vault, k: crypto.RecordKeys, row: tuple[Any, ...]) -> None:
    rid, gen, data = row
    b = f"summaries/{rid}"
    plain = v.open(b, gen, data, f"the summary of conversation {rid}")
    v.conn.execute("UPDATE summaries SET gen = ?, data = ? WHERE conversation_id = ?", (k.gen, k.seal(b, plain), rid))


# Sealed tables added after the vault's schema (created by the store when it opens): table -> step.
# Their id column is named in the step's first column.
EXTRA_STEPS: dict[str, tuple[str, Resealer]] = {
    "summaries": ("conversation_id, gen, data", _reseal_summary),
}


def _steps(vault: Vault) -> dict[str, tuple[str, Resealer]]:
    """Every table to re-seal in this profile (extra tables only where they exist)."""
    present = {str(r[0]) for r in vault.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return {**STEPS, **{t: s for t, s in EXTRA_STEPS.items() if t in present}}


def _remaining(vault: Vault, to: int) -> int:
    return sum(
        int(vault.conn.execute(f"SELECT COUNT(*) FROM {t} WHERE gen != ?", (to,)).fetchone()[0])
        for t in _steps(vault)
    )


def resume(vault: Vault, state: JobState | None = None) -> int | None:
    """Finish a rotation in progress; returns the new generation, or None when none was in progress."""
    with vault.lock:
        raw = vault.get_meta("rotation")
        if raw is None:
            return None
        plan = json.loads(raw)
        to, kek_id = int(plan["to"]), str(plan["kek"])
        total = max(1, _remaining(vault, to))
    done = 0
    for table, (columns, reseal) in _steps(vault).items():
        order = columns.split(",")[0]
        while True:
            if state is not None:
                state.check()
            with vault.write() as conn:
                keys = vault.keys_for(to)
                rows = conn.execute(
                    f"SELECT {columns} FROM {table} WHERE gen != ? ORDER BY {order} LIMIT ?", (to, BATCH)
                ).fetchall()
                for row in rows:
                    try:
                        reseal(vault, keys, tuple(row))
                    except RecordDamaged as exc:
                        raise RecordDamaged(
                            f"the key rotation cannot finish: {exc}; both keys are kept meanwhile",
                            table=exc.table, record_id=exc.record_id,
                        ) from exc
            done += len(rows)
            if state is not None:
                state.report(min(done / total, 0.99), f"re-encrypting {table}")
            if len(rows) < BATCH:
                break
    old_source = vault.source
    new_kind = str(plan.get("source", old_source.kind))
    with vault.write() as conn:
        if vault.get_meta("rotation") is None:
            return to  # another process finished it
        if _remaining(vault, to):
            raise ProfileError("records were added with the old key during the rotation; run rotate-key again")
        for key in SEALED_META:
            gen = vault.sealed_meta_gen(key)
            if gen is not None and gen != to:
                vault.set_sealed_meta(key, vault.sealed_meta(key))
        conn.execute("DELETE FROM data_keys WHERE gen != ? OR kek_id != ?", (to, kek_id))
        conn.execute("DELETE FROM keks WHERE id != ?", (kek_id,))
        vault.set_meta("rotation", None)
        vault.set_meta("key_source", new_kind)
        ledger.resign_all(vault, to)  # ledgers (and the anchor) signed again under the new key
        AuditTrail(vault).append_in_transaction(
            "key.rotated", {"generation": to, "source": new_kind, "previous_source": old_source.kind}
        )
    vault.keys = {to: vault.keys_for(to)}
    vault.source = _final_source(vault, new_kind, to, kek_id)
    vault.pending_source = None
    # The keyring keeps only the KEK in use; switching away from the keyring removes its entry.
    if old_source.kind == "keyring" and new_kind != "keyring":
        old_source.destroy()
    elif vault.source.kind == "keyring":
        vault.source.keep_only({kek_id})
    vault.checkpoint()  # old ciphertexts (now zeroed by secure_delete) leave the -wal file too
    if state is not None:
        state.report(1.0, "key rotated")
    log.info("profile key rotated to generation %s", to)
    return to


def _final_source(vault: Vault, kind: str, gen: int, kek_id: str) -> KeySource:
    """The source the profile uses once the rotation is done: the one this process started it with, or
    the current one if it unlocks the new key (a rotation another process started may have changed the
    passphrase, which this process does not know)."""
    pending = vault.pending_source
    if pending is not None and pending.kind == kind:
        return pending
    candidate = vault.source if vault.source.kind == kind else None
    if candidate is None and kind == "keyring":
        candidate = KeyringSource(vault.profile_id)
    if candidate is not None:
        with vault.lock:
            row = vault.conn.execute(
                "SELECT k.params, d.wrapped FROM keks k JOIN data_keys d ON d.kek_id = k.id WHERE k.id = ? AND d.gen = ?",
                (kek_id, gen),
            ).fetchone()
        try:
            if row is not None:
                crypto.unwrap_secret(candidate.kek(kek_id, json.loads(row[0])), f"data_keys/{gen}", bytes(row[1]))
                return candidate
        except (ProfileError, crypto.IntegrityFailure):
            pass
    return UnavailableSource(kind)


def rotate_key(vault: Vault, state: JobState | None = None, target: KeySource | None = None) -> int:
    """Rotate the profile key (or finish an interrupted rotation); returns the new generation.

    ``target`` is the key source to use from now on (a new passphrase, or the keyring instead of a
    passphrase); by default the current one, with a fresh KEK.
    """
    with vault.lock:
        in_progress = vault.get_meta("rotation") is not None
    if in_progress and target is not None:
        raise ProfileError("an interrupted key rotation must finish first; run rotate-key once without options")
    if not in_progress:
        if state is not None:
            state.report(0.0, "making a new key")
        _begin(vault, target or vault.source)
    gen = resume(vault, state)
    assert gen is not None
    return gen
