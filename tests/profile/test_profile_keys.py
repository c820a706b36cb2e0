"""Unlocking: the OS keyring (a real Secret Service backend), passphrases, wrong passphrases."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tara_desktop.profile import Profile, ProfileError, ProfileLocked, WrongPassphrase
from tara_desktop.profile.keys import KEYRING_SERVICE, keyring_backend
from tara_desktop.profile.vault import DB_NAME


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_passphrase_profile_reopens_with_the_same_passphrase(profile_dir: Path) -> None:
    with Profile.open(profile_dir, passphrase="correct horse") as p:
        assert p.key_source == "passphrase"
        cid = p.store.create_conversation("secret plans")
        p.store.append_message(cid, "user", "meet at noon")
        assert p.status()["key_source"] == "passphrase"
    with Profile.open(profile_dir, passphrase="correct horse") as p:
        assert p.store.messages(cid)[0].content == "meet at noon"


def test_tara_passphrase_unlocks_and_names_the_source(profile_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARA_PASSPHRASE", "from the environment")
    with Profile.open(profile_dir) as p:
        p.store.set_setting("k", 1)
    with Profile.open(profile_dir, passphrase="from the environment") as p:
        assert p.store.get_setting("k") == 1
        assert "scrypt" in p.status()["key_source_detail"]


def test_passphrase_is_unicode_normalised(profile_dir: Path) -> None:
    with Profile.open(profile_dir, passphrase="caf\u00e9") as p:  # composed é
        p.store.set_setting("k", "v")
    with Profile.open(profile_dir, passphrase="cafe\u0301") as p:  # e + combining accent
        assert p.store.get_setting("k") == "v"


def test_wrong_passphrase_is_clear_and_changes_nothing(profile_dir: Path) -> None:
    with Profile.open(profile_dir, passphrase="right") as p:
        cid = p.store.create_conversation("t")
        p.store.append_message(cid, "user", "still here")
    db = profile_dir / DB_NAME
    before = _digest(db)
    with pytest.raises(WrongPassphrase, match="wrong passphrase") as info:
        Profile.open(profile_dir, passphrase="wrong")
    assert "nothing was changed" in str(info.value)
    assert _digest(db) == before
    assert not (profile_dir / f"{DB_NAME}-wal").exists() or (profile_dir / f"{DB_NAME}-wal").stat().st_size == 0
    with Profile.open(profile_dir, passphrase="right") as p:
        assert p.store.messages(cid)[0].content == "still here"


def test_missing_passphrase_is_a_clear_error(profile_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Profile.open(profile_dir, passphrase="pw"):
        pass
    monkeypatch.delenv("TARA_PASSPHRASE")
    with pytest.raises(ProfileLocked, match="locked with a passphrase; set TARA_PASSPHRASE"):
        Profile.open(profile_dir)


def test_key_source_choice_is_validated(profile_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARA_KEY_SOURCE", "usb-stick")
    with pytest.raises(ProfileError, match="unknown key source 'usb-stick'"):
        Profile.open(profile_dir)
    assert not profile_dir.exists()  # a failed creation leaves nothing behind


def test_opening_a_non_profile_file_is_a_clear_error(profile_dir: Path) -> None:
    profile_dir.mkdir()
    (profile_dir / DB_NAME).write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(ProfileError, match="damaged or not a TARA profile"):
        Profile.open(profile_dir)


# -- the real OS keyring ------------------------------------------------------------------------------

def _require_keyring() -> None:
    if keyring_backend() is None:
        pytest.skip("no OS keyring backend here (keyring.backends.fail); scripts/test runs the tests inside "
                    "dbus-run-session with gnome-keyring to exercise this path")


def test_keyring_profile_round_trip_rotation_and_deletion(profile_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _require_keyring()
    import keyring

    monkeypatch.delenv("TARA_PASSPHRASE")
    with Profile.open(profile_dir) as p:
        assert p.key_source == "keyring"
        assert p.status()["key_source_detail"].startswith("keyring (")
        pid = p.profile_id
        cid = p.store.create_conversation("kept by the keyring")
        p.store.append_message(cid, "user", "hello keyring")
    stored = keyring.get_password(KEYRING_SERVICE, pid)
    assert stored and '"keks"' in stored

    with Profile.open(profile_dir) as p:  # no passphrase needed
        assert p.store.messages(cid)[0].content == "hello keyring"
        p.rotate_key()
        after = keyring.get_password(KEYRING_SERVICE, pid)
        assert after is not None
        old_keks, new_keks = json.loads(stored)["keks"], json.loads(after)["keks"]
        assert len(new_keks) == 1 and not set(new_keks) & set(old_keks)  # a new KEK, the old one gone
        assert p.store.messages(cid)[0].content == "hello keyring"
        assert p.audit.verify().ok

    # Without the keyring entry the profile cannot be unlocked: the key lives only there.
    keyring.set_password(KEYRING_SERVICE, pid + "-backup", after)
    keyring.delete_password(KEYRING_SERVICE, pid)
    with pytest.raises(ProfileError, match="not in the OS keyring"):
        Profile.open(profile_dir)
    keyring.set_password(KEYRING_SERVICE, pid, after)
    keyring.delete_password(KEYRING_SERVICE, pid + "-backup")

    with Profile.open(profile_dir) as p:
        p.delete_everything()
    assert keyring.get_password(KEYRING_SERVICE, pid) is None
    assert not profile_dir.exists()


def test_keyring_can_be_required_and_passphrase_can_be_preferred(
    profile_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _require_keyring()
    monkeypatch.setenv("TARA_KEY_SOURCE", "keyring")
    with Profile.open(profile_dir) as p:  # TARA_PASSPHRASE is set, but keyring was asked for
        assert p.key_source == "keyring"
        p.delete_everything()
    monkeypatch.setenv("TARA_KEY_SOURCE", "passphrase")
    with Profile.open(tmp_path / "other") as p:
        assert p.key_source == "passphrase"


# -- changing the passphrase / moving the key -----------------------------------------------------------

def test_changing_the_passphrase(profile_dir: Path) -> None:
    with Profile.open(profile_dir, passphrase="old secret") as p:
        cid = p.store.create_conversation("c")
        p.store.append_message(cid, "user", "survives the change")
        p.rotate_key(new_passphrase="new secret")
        assert p.store.messages(cid)[0].content == "survives the change"
        p.store.append_message(cid, "user", "written after the change")
    with pytest.raises(WrongPassphrase):
        Profile.open(profile_dir, passphrase="old secret")
    with Profile.open(profile_dir, passphrase="new secret") as p:
        assert [m.content for m in p.store.messages(cid)] == ["survives the change", "written after the change"]
        assert p.audit.verify().ok
        rotated = [e for e in p.audit.entries() if e.event == "key.rotated"][-1]
        assert rotated.details["source"] == "passphrase"


def test_moving_the_key_to_a_passphrase_needs_one(profile: Profile) -> None:
    with pytest.raises(ProfileError, match="unknown key source"):
        profile.rotate_key(key_source="floppy")
    assert profile.rotate_key(key_source="passphrase") == 2  # already a passphrase: a plain rotation


def test_keyring_and_passphrase_can_be_swapped(profile_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _require_keyring()
    import keyring

    with Profile.open(profile_dir, passphrase="start") as p:
        cid = p.store.create_conversation("moving")
        p.store.append_message(cid, "user", "follows the key")
        p.rotate_key(key_source="keyring")
        pid = p.profile_id
        assert p.key_source == "keyring" and keyring.get_password(KEYRING_SERVICE, pid)
    monkeypatch.delenv("TARA_PASSPHRASE")
    with Profile.open(profile_dir) as p:  # the keyring now unlocks it, no passphrase
        assert p.store.messages(cid)[0].content == "follows the key"
        p.rotate_key(new_passphrase="back to a passphrase")
        assert p.key_source == "passphrase"
    assert keyring.get_password(KEYRING_SERVICE, pid) is None  # the keyring entry is gone
    with Profile.open(profile_dir, passphrase="back to a passphrase") as p:
        assert p.store.messages(cid)[0].content == "follows the key"
        assert p.audit.verify().ok


# -- key rotation while other processes have the profile open ------------------------------------------

def test_open_reads_the_keys_from_one_snapshot_while_a_rotation_commits(
    profile_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rotation that commits (and drops the old key) while another open is reading the keys: the open
    sees the keys before or after it, never half of each, so it never says "wrong passphrase"."""
    from tara_desktop.profile import keys

    Profile.open(profile_dir).close()
    rotator = Profile.open(profile_dir)
    real = keys.PassphraseSource.kek
    fired = []

    def kek_then_rotate(self: keys.PassphraseSource, kek_id: str, params: dict[str, object]) -> bytes:
        out = real(self, kek_id, params)
        if not fired:
            fired.append(True)
            rotator.rotate_key()  # commits a new generation and deletes the old one, right now
        return out

    monkeypatch.setattr(keys.PassphraseSource, "kek", kek_then_rotate)
    with Profile.open(profile_dir) as p:
        assert fired
        cid = p.store.create_conversation("after the rotation")  # picks up the new generation
        assert p.store.conversation(cid).title == "after the rotation"
    rotator.close()


def test_a_passphrase_changed_elsewhere_says_so_and_takes_the_new_one(profile_dir: Path) -> None:
    from tara_desktop.profile.errors import PassphraseChanged

    gui = Profile.open(profile_dir)
    cid = gui.store.create_conversation("open in a window")
    with Profile.open(profile_dir) as cli:
        cli.rotate_key(new_passphrase="a brand new passphrase 42")
    with pytest.raises(PassphraseChanged, match=r"passphrase was changed .* type the new passphrase"):
        gui.store.append_message(cid, "user", "hello")
    with pytest.raises(WrongPassphrase):
        gui.unlock_again("not it")
    gui.unlock_again("a brand new passphrase 42")
    gui.store.append_message(cid, "user", "hello")
    assert [m.content for m in gui.store.messages(cid)] == ["hello"]
    gui.close()


# -- passphrase cost, strength and backoff -------------------------------------------------------------

def _kek_costs(profile_dir: Path) -> list[int]:
    import sqlite3

    conn = sqlite3.connect(profile_dir / DB_NAME)
    try:
        return [json.loads(p)["n"] for (p,) in conn.execute("SELECT params FROM keks WHERE source = 'passphrase'")]
    finally:
        conn.close()


def test_new_passphrase_keys_use_scrypt_2_17_and_old_ones_are_upgraded_on_unlock(
    profile_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TARA_SCRYPT_N", str(2**15))  # a profile made by a TARA that used 2**15
    with Profile.open(profile_dir) as p:
        cid = p.store.create_conversation("kept")
    assert _kek_costs(profile_dir) == [2**15]
    monkeypatch.delenv("TARA_SCRYPT_N")  # today's cost
    with Profile.open(profile_dir) as p:
        assert p.store.conversation(cid).title == "kept"
        assert p.audit.entries()[-1].event == "key.kdf.upgraded"
        assert p.verify_integrity().ok
    assert _kek_costs(profile_dir) == [2**17]
    with Profile.open(profile_dir) as p:  # opens with the upgraded key; nothing more to do
        assert p.store.conversation(cid).title == "kept"
        assert p.audit.entries()[-1].event == "key.kdf.upgraded"
    with pytest.raises(WrongPassphrase):
        Profile.open(profile_dir, passphrase="not the passphrase")


@pytest.mark.parametrize("weak", ["a", "short", "aaaaaaaaaaaa", "password", "12345678",
                                  "abababababab", "0123456789"])
def test_weak_new_passphrases_are_refused_with_advice(weak: str, profile: Profile) -> None:
    from tara_desktop.profile.keys import check_new_passphrase

    with pytest.raises(ProfileError, match=r"passphrase .*choose a few unrelated words"):
        check_new_passphrase(weak)
    with pytest.raises(ProfileError, match="choose a few unrelated words"):
        profile.rotate_key(new_passphrase=weak)
    assert profile.verify_integrity().ok  # refused before anything changed


def test_good_passphrases_pass() -> None:
    from tara_desktop.profile.keys import check_new_passphrase

    for good in ("copper kettle river", "test passphrase", "Zw9!k2#Lq", "brand new"):
        check_new_passphrase(good)


def test_a_typed_passphrase_must_be_strong_to_create_a_profile(profile_dir: Path) -> None:
    from tara_desktop.profile import WeakPassphrase

    with pytest.raises(WeakPassphrase, match=r"^the passphrase is too short \(5 characters\); use at least 8: "
                                             r"choose a few unrelated words"):
        Profile.open(profile_dir, passphrase="short", check_new_passphrase=True)
    assert not (profile_dir / DB_NAME).exists()  # nothing was created
    with pytest.raises(WeakPassphrase, match="one of the most common passwords"):
        Profile.open(profile_dir, passphrase="Password123", check_new_passphrase=True)
    with Profile.open(profile_dir, passphrase="copper kettle river", check_new_passphrase=True) as p:
        assert p.key_source == "passphrase"


def test_an_existing_profile_opens_with_the_passphrase_it_has(profile_dir: Path) -> None:
    Profile.open(profile_dir, passphrase="pw").close()  # made by a program: taken as given
    with Profile.open(profile_dir, passphrase="pw", check_new_passphrase=True) as p:  # typed again: still opens
        assert p.key_source == "passphrase"


def test_the_cli_prompt_refuses_a_weak_passphrase_for_a_new_profile(
    profile_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import getpass
    import sys

    from tara_desktop.cli import main

    monkeypatch.setenv("TARA_HOME", str(profile_dir))
    monkeypatch.delenv("TARA_PASSPHRASE")
    monkeypatch.setenv("TARA_KEY_SOURCE", "passphrase")
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    typed = iter(["12345678", "12345678"])
    monkeypatch.setattr(getpass, "getpass", lambda _prompt="": next(typed))
    assert main(["conversations", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the passphrase is one of the most common passwords;") and err.count("\n") == 1
    assert not (profile_dir / DB_NAME).exists()


def test_cli_refuses_a_weak_new_passphrase(profile_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from tara_desktop.cli import main

    Profile.open(profile_dir).close()
    monkeypatch.setenv("TARA_HOME", str(profile_dir))
    monkeypatch.setenv("TARA_NEW_PASSPHRASE", "a")
    assert main(["profile", "rotate-key", "--new-passphrase"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the passphrase is too short (1 characters)") and err.count("\n") == 1


def test_wrong_attempts_back_off() -> None:
    from tara_desktop.profile.keys import backoff_seconds

    assert [backoff_seconds(n) for n in range(8)] == [0, 1, 2, 4, 8, 16, 30, 30]
