"""Tampering the audit trail alone cannot see: removed consent and message rows, old copies of the
messages table, the trail cut back with its head, and a whole older profile.db (rollback). Legitimate
deletes keep verifying as intact."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tara_desktop.cli import main
from tara_desktop.profile import Profile

from .profile_helpers import raw


def tara(*argv: str) -> int:
    try:
        return main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)


def _problems(profile_dir: Path) -> list[str]:
    with Profile.open(profile_dir) as p:
        report = p.verify_integrity()
        assert report.ok == (not report.problems and report.audit.ok)
        return report.problems + ([str(report.audit)] if not report.audit.ok else [])


def _seed(profile_dir: Path) -> tuple[int, list[int]]:
    with Profile.open(profile_dir) as p:
        cid = p.store.create_conversation("trip")
        mids = [p.store.append_message(cid, "user" if i % 2 == 0 else "assistant", f"message {i}") for i in range(4)]
        p.consent.set("record_voice", True)
    return cid, mids


def test_an_untouched_profile_verifies(profile_dir: Path) -> None:
    _seed(profile_dir)
    assert _problems(profile_dir) == []


def test_deleting_the_newest_consent_row_does_not_revive_a_withdrawn_consent(
    profile_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(profile_dir)
    with Profile.open(profile_dir) as p:
        p.consent.withdraw("record_voice")
        assert not p.consent.allows("record_voice")
    with raw(profile_dir) as conn:
        conn.execute("DELETE FROM consent WHERE id = (SELECT MAX(id) FROM consent WHERE kind = 'record_voice')")
    with Profile.open(profile_dir) as p:
        assert not p.consent.allows("record_voice")  # the signed trail says no
        assert p.consent.state("record_voice").chosen
    problems = _problems(profile_dir)
    assert any("consent record_voice" in x and "says 'no'" in x for x in problems), problems
    os.environ["TARA_HOME"] = str(profile_dir)  # restored by the autouse fixture's monkeypatch
    assert tara("profile", "audit-verify") == 2
    assert "consent record_voice: the consent records were changed outside TARA" in capsys.readouterr().err


def test_a_broken_trail_stops_collection(profile_dir: Path) -> None:
    _seed(profile_dir)
    with raw(profile_dir) as conn:
        conn.execute("DELETE FROM audit WHERE id = (SELECT MAX(id) FROM audit)")  # the consent entry
    with Profile.open(profile_dir) as p:
        assert not p.consent.allows("record_voice")  # cannot be proven any more: nothing is recorded


def test_a_deleted_message_row_is_found(profile_dir: Path) -> None:
    cid, mids = _seed(profile_dir)
    with raw(profile_dir) as conn:
        conn.execute("DELETE FROM messages WHERE id = ?", (mids[1],))
    problems = _problems(profile_dir)
    assert problems == [f"conversation {cid}: 1 message(s) were removed outside TARA (4 signed, 3 found)"]


def test_an_older_copy_of_the_messages_table_is_found(profile_dir: Path) -> None:
    cid, mids = _seed(profile_dir)
    with raw(profile_dir) as conn:
        old = conn.execute("SELECT * FROM messages").fetchall()
    with Profile.open(profile_dir) as p:
        p.store.update_message(mids[3], "an edited answer")
    with raw(profile_dir) as conn:  # the same rows, one of them from before the edit
        conn.execute("DELETE FROM messages")
        conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?)", old)
    assert _problems(profile_dir) == [
        f"conversation {cid}: messages were replaced outside TARA (by older copies or other rows)"]
    with Profile.open(profile_dir) as p:
        p.store.append_message(cid, "user", "one more")
    with raw(profile_dir) as conn:  # an older table with fewer rows
        conn.execute("DELETE FROM messages")
        conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?)", old)
    assert any("message(s) were removed outside TARA" in x for x in _problems(profile_dir))


def test_cutting_the_trail_back_with_its_head_is_found(profile_dir: Path) -> None:
    _seed(profile_dir)
    with raw(profile_dir) as conn:
        head = conn.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()[0]
        top = conn.execute("SELECT MAX(id) FROM audit").fetchone()[0]
    with Profile.open(profile_dir) as p:
        p.consent.withdraw("record_voice")
    with raw(profile_dir) as conn:
        conn.execute("DELETE FROM audit WHERE id > ?", (top,))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (head,))
    with Profile.open(profile_dir) as p:
        assert p.audit.verify().ok  # the trail alone agrees with its (old) head ...
    problems = _problems(profile_dir)  # ... but not with the ledger
    assert any("audit trail: its head was replaced outside TARA" in x for x in problems), problems


def test_cutting_the_trail_head_and_ledger_back_is_a_rollback(profile_dir: Path) -> None:
    _seed(profile_dir)
    with raw(profile_dir) as conn:
        saved = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('audit_head', 'chains')").fetchall())
        top = conn.execute("SELECT MAX(id) FROM audit").fetchone()[0]
    with Profile.open(profile_dir) as p:
        p.consent.withdraw("record_voice")
    with raw(profile_dir) as conn:
        conn.execute("DELETE FROM audit WHERE id > ?", (top,))
        conn.execute("DELETE FROM consent WHERE id = (SELECT MAX(id) FROM consent)")
        for key, value in saved.items():
            conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
    problems = _problems(profile_dir)
    assert any(x.startswith("rollback: the profile database is older than its anchor") for x in problems), problems


def test_replacing_the_whole_database_with_an_older_copy_is_a_rollback(profile_dir: Path, tmp_path: Path) -> None:
    cid, _ = _seed(profile_dir)
    backup = tmp_path / "old-profile.db"
    shutil.copy(profile_dir / "profile.db", backup)
    with Profile.open(profile_dir) as p:
        p.store.append_message(cid, "user", "said after the copy was taken")
    for suffix in ("", "-wal", "-shm"):
        (profile_dir / f"profile.db{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, profile_dir / "profile.db")
    problems = _problems(profile_dir)
    assert len(problems) == 1 and problems[0].startswith("rollback:"), problems


def test_legitimate_deletes_keep_verifying(profile_dir: Path) -> None:
    cid, mids = _seed(profile_dir)
    with Profile.open(profile_dir) as p:
        other = p.store.create_conversation("other")
        p.store.append_message(other, "user", "keep me")
        p.store.update_message(mids[0], "edited")
        assert p.store.delete_messages_after(cid, mids[1]) == 2
        p.store.put_blob("voice", "a.wav", b"RIFF")
        p.rotate_key()
        p.store.delete_conversation(cid)
        p.store.start_conversation("third", "user", "hi")
        assert p.verify_integrity().ok, p.verify_integrity()
        p.consent.withdraw("record_voice", delete_collected=True)
        p.consent.withdraw("store_history", delete_collected=True)
        report = p.verify_integrity()
        assert report.ok, report
        assert p.store.counts()["conversations"] == 0
    assert _problems(profile_dir) == []


def test_a_profile_from_before_the_ledger_is_trusted_on_first_open(profile_dir: Path, _anchors: Path) -> None:
    _seed(profile_dir)
    shutil.rmtree(_anchors)  # made by a TARA without ledgers: no anchor either
    with raw(profile_dir) as conn:
        conn.execute("DELETE FROM meta WHERE key = 'chains'")
        conn.execute("UPDATE conversations SET ledger = NULL")
    assert _problems(profile_dir) == []
    with raw(profile_dir) as conn:
        assert conn.execute("SELECT COUNT(*) FROM conversations WHERE ledger IS NULL").fetchone()[0] == 0


def test_removing_the_ledger_where_an_anchor_exists_is_found(profile_dir: Path) -> None:
    _seed(profile_dir)
    with raw(profile_dir) as conn:
        conn.execute("DELETE FROM meta WHERE key = 'chains'")
    assert any(x.startswith("rollback:") for x in _problems(profile_dir))


def test_a_profile_moved_to_another_machine_is_not_called_tampered(profile_dir: Path, _anchors: Path) -> None:
    _seed(profile_dir)
    shutil.rmtree(_anchors)  # the new machine has no anchor of this profile
    with Profile.open(profile_dir) as p:
        report = p.verify_integrity()
    assert report.ok and any("rollback not checked" in c for c in report.checked), report
