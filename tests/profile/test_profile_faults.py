"""Faults of the environment give one `error:` line saying what they are: text that is not UTF-8, symbolic
link loops, unwritable folders, a full disk, read-only and unreadable profiles. Never a traceback, and a
full disk leaves no half-made conversation behind."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import pytest

from tara_desktop.cli import main
from tara_desktop.profile import Profile, ProfileError
from tara_desktop.profile import export as export_module
from tara_desktop.profile.errors import ProfileDiskFull, ProfileReadOnly
from tara_desktop.profile.profile import identify
from tara_desktop.profile.vault import db_error


def tara(*argv: str) -> int:
    try:
        return main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one `error:` line (progress lines of a long command may come before it)."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    assert sum(line.startswith("error:") for line in lines) == 1, err
    return lines[-1] + "\n"


@pytest.mark.parametrize("argv", [
    ("chat", "caf\udce9"),
    ("route", "\udcff"),
    ("voice", "say", "\udcff\udcfe", "--out", "x.wav"),
    ("export", "job", "--gguf", "x.gguf", "--name", "n\udcff"),
])
def test_text_that_is_not_utf8_is_one_error_line(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert tara(*argv) == 2
    err = _one_error_line(capsys)
    assert "is not valid UTF-8 text" in err and ("\\xff" in err or "\\xe9" in err)


def test_symlink_loop_profile_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    monkeypatch.setenv("TARA_HOME", str(loop))
    for argv in (("profile", "status"), ("profile", "delete", "--yes"), ("profile", "consent")):
        assert tara(*argv) == 2, argv
        assert "symbolic link loop" in _one_error_line(capsys)
    with pytest.raises(ProfileError, match=r"symbolic link loop"):
        Profile.open(loop)


def test_symlink_loop_export_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Profile.open().close()
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert tara("profile", "export", str(loop / "out")) == 2
    _one_error_line(capsys)


def test_unwritable_export_folder_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    Profile.open().close()

    def denied(path: Path, **_: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(export_module, "make_private_dir", denied)
    assert tara("profile", "export", str(tmp_path / "out")) == 2
    err = _one_error_line(capsys)
    assert "permission denied" in err and str(tmp_path) in err


def test_full_disk_during_export_is_said_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    with Profile.open() as p:
        p.store.create_conversation("t")
    real = export_module.write_private

    def full(path: Path, data: bytes) -> None:
        if path.name == "conversations.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(export_module, "write_private", full)
    assert tara("profile", "export", str(tmp_path / "out")) == 2
    assert "the disk is full" in _one_error_line(capsys)
    assert [p.name for p in tmp_path.iterdir() if "out" in p.name] == []  # no partial, no half export


@pytest.mark.parametrize("errno_", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.ELOOP])
def test_any_command_reports_os_errors_as_one_line(errno_: int, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The central handler in `tara`'s main(): an OSError from any command is one line, by errno."""
    from tara_desktop import cli

    def boom(_args: object) -> int:
        raise OSError(errno_, os.strerror(errno_), "/some/where")

    parser = cli.build_parser()
    args = parser.parse_args(["profile", "status"])
    args.handler = boom
    monkeypatch.setattr(cli, "build_parser", lambda: _Fixed(parser, args))
    assert tara("profile", "status") == 2
    err = _one_error_line(capsys)
    assert "/some/where" in err
    expected = {errno.ENOSPC: "disk is full", errno.EROFS: "read-only", errno.EACCES: "permission denied",
                errno.ELOOP: "symbolic link loop"}[errno_]
    assert expected in err


class _Fixed:
    def __init__(self, parser: object, args: object) -> None:
        self._parser, self._args = parser, args

    def parse_args(self, _argv: object) -> object:
        return self._args

    def print_help(self) -> None:  # pragma: no cover
        pass


def _fill_disk(p: Profile) -> None:
    """Make the database unable to grow: SQLite then fails exactly as on a full disk (SQLITE_FULL)."""
    conn = p._vault.conn
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")


def test_full_disk_in_a_chat_turn_leaves_no_empty_conversation(profile: Profile) -> None:
    profile.store.create_conversation("before")
    _fill_disk(profile)
    big = "words " * 20000
    with pytest.raises(ProfileDiskFull, match=r"disk holding the profile .* is full; free some space"):
        profile.store.start_conversation("new chat", "user", big)
    assert [c.title for c in profile.store.list_conversations()] == ["before"]
    with pytest.raises(ProfileDiskFull):
        profile.store.append_message(profile.store.list_conversations()[0].id, "user", big)
    assert profile.store.counts()["messages"] == 0
    assert profile.audit.verify().ok


def test_read_only_profile_is_reported_as_read_only(profile_dir: Path) -> None:
    Profile.open(profile_dir).close()
    conn = sqlite3.connect(f"{(profile_dir / 'profile.db').as_uri()}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as info:
        conn.execute("CREATE TABLE x (y)")
    conn.close()
    err = db_error(info.value, profile_dir / "profile.db")
    assert isinstance(err, ProfileReadOnly) and "is read-only; TARA needs to write to it" in str(err)


def test_unreadable_profile_is_reported_as_unreadable(profile_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Profile.open(profile_dir).close()
    import builtins

    real_open = builtins.open

    def guarded(file: object, *a: object, **k: object) -> object:
        if str(file).endswith("profile.db"):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *a, **k)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", guarded)
    with pytest.raises(ProfileError, match="cannot be read: permission denied") as info:
        identify(profile_dir / "profile.db")
    assert "damaged" not in str(info.value)
