"""A profile folder holding some other program's SQLite database: TARA refuses it and changes nothing."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from tara_desktop.cli import main
from tara_desktop.profile import Profile, ProfileError
from tara_desktop.profile.profile import APPLICATION_ID

from .profile_helpers import raw


def tara(*argv: str) -> int:
    try:
        return main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)


def _foreign(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "profile.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE recipes (name TEXT, steps TEXT)")
    conn.execute("INSERT INTO recipes VALUES ('bread', 'knead')")
    conn.commit()
    conn.close()
    return db


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_status_export_and_delete_leave_a_foreign_database_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = Path(os.environ["TARA_HOME"])
    db = _foreign(home)
    before = _snapshot(home)
    for argv in (("profile", "status"), ("profile", "delete", "--yes"), ("profile", "audit-verify"),
                 ("profile", "export", str(tmp_path / "out")), ("profile", "consent")):
        assert tara(*argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert "not a TARA profile" in err and "untouched" in err, err
        assert _snapshot(home) == before, argv
    assert sqlite3.connect(db).execute("SELECT name FROM recipes").fetchall() == [("bread",)]


def test_open_refuses_a_foreign_database(profile_dir: Path) -> None:
    _foreign(profile_dir)
    before = _snapshot(profile_dir)
    with pytest.raises(ProfileError, match="another program, not a TARA profile"):
        Profile.open(profile_dir)
    assert _snapshot(profile_dir) == before


def test_new_profiles_are_marked_and_old_ones_are_marked_on_open(profile_dir: Path) -> None:
    Profile.open(profile_dir).close()
    with raw(profile_dir) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        conn.execute("PRAGMA application_id = 0")  # as made by a TARA before the mark existed
    with Profile.open(profile_dir) as p:
        assert p.audit.verify().ok
    with raw(profile_dir) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
