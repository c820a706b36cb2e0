"""`tara profile ...`: exit codes, `error:` lines, and what each subcommand does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tara_desktop.cli import main
from tara_desktop.profile import Profile

from .profile_helpers import raw


def tara(*argv: str) -> int:
    """Run `tara ...` in process; usage errors exit through SystemExit like the real command."""
    try:
        return main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.fixture
def home() -> Path:
    return Path(os.environ["TARA_HOME"])


def _seed(home: Path) -> int:
    with Profile.open(home) as p:
        cid = p.store.create_conversation("cli")
        p.store.append_message(cid, "user", "hello from the cli test")
        return cid


def test_status_before_and_after_creation(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tara("profile", "status") == 0
    assert "no profile yet" in capsys.readouterr().out
    assert not home.exists()  # status does not create one
    _seed(home)
    assert tara("profile", "status") == 0
    out = capsys.readouterr().out
    assert "passphrase (scrypt" in out and "1 (1 messages)" in out and "consent record_voice" in out
    assert tara("profile", "status", "--json") == 0
    st = json.loads(capsys.readouterr().out)
    assert st["counts"]["messages"] == 1 and st["key_source"] == "passphrase" and st["dir"] == str(home)


def test_delete_needs_yes(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _seed(home)
    assert tara("profile", "delete") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--yes" in err and err.count("\n") == 1
    assert (home / "profile.db").exists()
    assert tara("profile", "delete", "--yes") == 0
    assert "deleted the profile" in capsys.readouterr().out
    assert not home.exists()
    assert tara("profile", "delete", "--yes") == 0
    assert "nothing to delete" in capsys.readouterr().out


def test_wrong_passphrase_and_missing_profile_are_error_lines(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tara("profile", "audit-verify") == 2
    assert capsys.readouterr().err.startswith("error: there is no TARA profile in")
    _seed(home)
    monkeypatch.setenv("TARA_PASSPHRASE", "not the passphrase")
    assert tara("profile", "status") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: wrong passphrase") and "Traceback" not in err


def test_export_rotate_and_audit_verify(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _seed(home)
    out = tmp_path / "out.zip"
    assert tara("profile", "export", str(out)) == 0
    assert out.exists() and "exported 1 conversations, 1 messages" in capsys.readouterr().out
    assert tara("profile", "export", str(out)) == 2
    assert "already exists" in capsys.readouterr().err
    assert tara("profile", "rotate-key") == 0
    assert "key generation 2" in capsys.readouterr().out
    assert tara("profile", "audit-verify") == 0
    assert "audit trail intact" in capsys.readouterr().out
    with raw(home) as conn:
        conn.execute("DELETE FROM audit WHERE id = 2")
    assert tara("profile", "audit-verify") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: audit trail broken: entry #3") and err.count("\n") == 1


def test_consent_subcommand(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tara("profile", "consent", "record_voice", "yes") == 0
    with Profile.open(home) as p:
        p.store.put_blob("voice", "a.wav", b"x")
    assert tara("profile", "consent", "record_voice", "no") == 0
    assert "1 item(s) collected earlier are kept" in capsys.readouterr().out
    assert tara("profile", "consent", "record_voice", "no", "--delete-collected") == 0
    assert "deleted 1 collected item(s)" in capsys.readouterr().out
    assert tara("profile", "consent") == 0
    assert "record_voice: no" in capsys.readouterr().out
    assert tara("profile", "consent", "telemetry", "yes") == 2
    assert tara("profile", "consent", "record_voice") == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: say yes or no")


def test_real_command_exit_code(home: Path) -> None:
    """The installed entry point path: a subprocess gets exit 2 and one error line, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "tara_desktop.cli", "profile", "delete"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "--yes" in proc.stderr and "Traceback" not in proc.stderr


def test_rotate_key_with_a_new_passphrase(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = _seed(home)
    assert tara("profile", "rotate-key", "--new-passphrase") == 2  # no TARA_NEW_PASSPHRASE, no terminal
    assert "TARA_NEW_PASSPHRASE" in capsys.readouterr().err
    monkeypatch.setenv("TARA_NEW_PASSPHRASE", "brand new")
    assert tara("profile", "rotate-key", "--new-passphrase") == 0
    assert "opens with the new passphrase" in capsys.readouterr().out
    assert tara("profile", "status") == 2  # TARA_PASSPHRASE still holds the old one
    assert capsys.readouterr().err.startswith("error: wrong passphrase")
    with Profile.open(home, passphrase="brand new") as p:
        assert p.store.messages(cid)[0].content == "hello from the cli test"
