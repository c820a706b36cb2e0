"""Tampering: a changed byte damages one record only; audit edits, removals and reorders are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from tara_desktop.profile import Profile, RecordDamaged

from .profile_helpers import raw


def _flip_in_file(profile_dir: Path, needle: bytes) -> None:
    """Flip one byte in the middle of ``needle`` where it sits in the database file."""
    db = profile_dir / "profile.db"
    data = bytearray(db.read_bytes())
    at = data.find(needle)
    assert at >= 0 and data.find(needle, at + 1) < 0
    data[at + len(needle) // 2] ^= 0x01
    db.write_bytes(bytes(data))


def test_flipped_byte_damages_that_record_only(profile_dir: Path) -> None:
    with Profile.open(profile_dir) as p:
        cid = p.store.create_conversation("c")
        ids = [p.store.append_message(cid, "user", f"message {i}") for i in range(3)]
        other = p.store.create_conversation("other")
        p.store.append_message(other, "user", "unrelated")
    with raw(profile_dir) as conn:
        sealed = conn.execute("SELECT data FROM messages WHERE id = ?", (ids[1],)).fetchone()[0]
    _flip_in_file(profile_dir, sealed)

    with Profile.open(profile_dir) as p:
        with pytest.raises(RecordDamaged, match=f"message {ids[1]} of conversation {cid} failed its integrity check") as info:
            p.store.message(ids[1])
        assert (info.value.table, info.value.record_id) == ("messages", ids[1])
        assert p.store.message(ids[0]).content == "message 0"
        assert p.store.message(ids[2]).content == "message 2"
        with pytest.raises(RecordDamaged, match=f"message {ids[1]}"):
            p.store.messages(cid)
        damaged: list[str] = []
        assert [m.id for m in p.store.messages(cid, on_damaged="skip", damaged=damaged)] == [ids[0], ids[2]]
        assert len(damaged) == 1 and f"message {ids[1]}" in damaged[0]
        assert p.store.messages(other)[0].content == "unrelated"
        assert len(p.verify_records()) == 1
        assert p.audit.verify().ok


def test_swapped_ciphertexts_are_detected(profile_dir: Path) -> None:
    with Profile.open(profile_dir) as p:
        cid = p.store.create_conversation("c")
        a = p.store.append_message(cid, "user", "pay Alice 10")
        b = p.store.append_message(cid, "user", "pay Bob 1000")
        p.store.set_setting("limit", 5)
    with raw(profile_dir) as conn:
        da, db = (conn.execute("SELECT data FROM messages WHERE id = ?", (i,)).fetchone()[0] for i in (a, b))
        conn.execute("UPDATE messages SET data = ? WHERE id = ?", (db, a))
        conn.execute("UPDATE messages SET data = ? WHERE id = ?", (da, b))
        conn.execute("UPDATE conversations SET data = (SELECT data FROM settings LIMIT 1)")
    with Profile.open(profile_dir) as p:
        for mid in (a, b):
            with pytest.raises(RecordDamaged, match="holds the encrypted content of another record"):
                p.store.message(mid)
        info = p.store.list_conversations()[0]
        assert info.damaged and info.title == ""
        assert p.store.get_setting("limit") == 5


def _audit_profile(profile_dir: Path) -> None:
    with Profile.open(profile_dir) as p:  # entry 1: profile.created
        for i in range(2, 7):
            p.audit.append("model.import", {"n": i})
        assert p.audit.verify().ok and p.audit.verify().entries == 6


def _verify(profile_dir: Path) -> tuple[int | None, str]:
    with Profile.open(profile_dir) as p:
        report = p.audit.verify()
    assert not report.ok
    return report.first_bad_id, report.problem


def test_edited_audit_entry_is_named(profile_dir: Path) -> None:
    _audit_profile(profile_dir)
    with raw(profile_dir) as conn:
        sealed = conn.execute("SELECT data FROM audit WHERE id = 3").fetchone()[0]
    _flip_in_file(profile_dir, sealed)
    bad, problem = _verify(profile_dir)
    assert bad == 3 and "entry #3: was edited" in problem


def test_edited_audit_mac_or_time_is_named(profile_dir: Path) -> None:
    _audit_profile(profile_dir)
    with raw(profile_dir) as conn:
        conn.execute("UPDATE audit SET mac = zeroblob(32) WHERE id = 4")
    assert _verify(profile_dir) == (4, "entry #4: was edited: its signature (HMAC) does not match")
    _audit_profile(profile_dir.with_name("second"))
    with raw(profile_dir.with_name("second")) as conn:
        conn.execute("UPDATE audit SET created_at = created_at - 3600 WHERE id = 2")
    bad, problem = _verify(profile_dir.with_name("second"))
    assert bad == 2 and "id or time" in problem


def test_removed_audit_entry_is_named(profile_dir: Path) -> None:
    _audit_profile(profile_dir)
    with raw(profile_dir) as conn:
        conn.execute("DELETE FROM audit WHERE id = 3")
    bad, problem = _verify(profile_dir)
    assert bad == 4 and "entry #4: does not follow" in problem and "after entry #2 was removed" in problem


def test_removed_newest_audit_entries_are_detected(profile_dir: Path) -> None:
    _audit_profile(profile_dir)
    with raw(profile_dir) as conn:
        conn.execute("DELETE FROM audit WHERE id >= 5")
    bad, problem = _verify(profile_dir)
    assert bad == 6 and "2 newest entries missing after entry #4" in problem


def test_reordered_audit_entries_are_named(profile_dir: Path) -> None:
    _audit_profile(profile_dir)
    with raw(profile_dir) as conn:
        rows = {r[0]: r[1:] for r in conn.execute("SELECT id, created_at, gen, data, mac FROM audit WHERE id IN (3, 4)")}
        for target, source in ((3, 4), (4, 3)):
            conn.execute("UPDATE audit SET created_at = ?, gen = ?, data = ?, mac = ? WHERE id = ?", (*rows[source], target))
    bad, problem = _verify(profile_dir)
    assert bad == 3 and "reordered" in problem


def test_renumbered_audit_entries_are_named(profile_dir: Path) -> None:
    """Moving whole rows (ids included) breaks the chain at the first moved entry."""
    _audit_profile(profile_dir)
    with raw(profile_dir) as conn:
        conn.execute("UPDATE audit SET id = 100 WHERE id = 2")
    bad, problem = _verify(profile_dir)
    assert bad == 3 and "does not follow" in problem


def test_emptied_audit_trail_is_detected(profile_dir: Path) -> None:
    _audit_profile(profile_dir)
    with raw(profile_dir) as conn:
        conn.execute("DELETE FROM audit")
        conn.execute("DELETE FROM meta WHERE key = 'audit_head'")
    assert _verify(profile_dir) == (1, "entry #1: was removed (the audit trail is empty)")


def test_damaged_records_do_not_block_export(profile_dir: Path, tmp_path: Path) -> None:
    with Profile.open(profile_dir) as p:
        cid = p.store.create_conversation("c")
        keep = p.store.append_message(cid, "user", "readable")
        bad = p.store.append_message(cid, "user", "to be damaged")
    with raw(profile_dir) as conn:
        conn.execute("UPDATE messages SET data = substr(data, 1, length(data) - 1) || x'00' WHERE id = ?", (bad,))
    with Profile.open(profile_dir) as p:
        summary = p.export(tmp_path / "rescue")
    assert summary["messages"] == 1 and len(summary["damaged_records"]) == 1
    assert f"message {bad}" in summary["damaged_records"][0] and keep


@pytest.mark.parametrize("gen", [99, "'x'", "x'00ff'"])
def test_changed_key_generation_damages_that_record_only(profile_dir: Path, gen: object) -> None:
    with Profile.open(profile_dir) as p:
        cid = p.store.create_conversation("c")
        a = p.store.append_message(cid, "user", "a")
        b = p.store.append_message(cid, "user", "b")
    with raw(profile_dir) as conn:
        conn.execute(f"UPDATE messages SET gen = {gen} WHERE id = ?", (a,))
        conn.execute(f"UPDATE audit SET gen = {gen} WHERE id = 1")
    with Profile.open(profile_dir) as p:
        with pytest.raises(RecordDamaged, match=f"message {a} of conversation {cid}.*key generation was changed"):
            p.store.message(a)
        assert p.store.message(b).content == "b"
        report = p.audit.verify()
        assert report.first_bad_id == 1 and "key generation" in report.problem
